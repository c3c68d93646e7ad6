// Typed access to weir's native addon (native/): netns-scoped work on
// dedicated OS threads, libnftables in-process, and the socket options Node
// does not expose. The addon is loaded lazily so commands that never touch a
// netns (rules render, the proxy's pure-JS paths) work without a build.
// The loader lives here; the splice pump's bindings are in pump.ts, the DNS
// fast path's in dns-fast.ts, other native parts beside them.
import { createRequire } from 'node:module';
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export interface NftRunOptions {
  /** Ask libnftables for JSON output (list commands). */
  json?: boolean;
  /** Dry run: parse and validate, commit nothing. */
  check?: boolean;
}

export interface SocketAddress { family: 4 | 6; address: string; port: number }

export interface PeerCredentials { pid: number; uid: number; gid: number }

export interface SocketInNetnsOptions {
  kind: 'tcp-listen' | 'tcp-connect' | 'udp-bind';
  family: 4 | 6;
  address: string;
  port: number;
  /** listen(2) backlog, default 511. */
  backlog?: number;
  /** tcp-connect only: give up after this long, default 5000 ms. */
  timeoutMs?: number;
  /** IP_TRANSPARENT / IPV6_TRANSPARENT (TPROXY listeners, spoofed-source connects). */
  transparent?: boolean;
  /** SO_MARK. */
  mark?: number;
  /** IP_FREEBIND / IPV6_FREEBIND: bind an address not (yet) configured. */
  freebind?: boolean;
  /** SO_REUSEPORT: share the port across sockets (one per worker thread). */
  reusePort?: boolean;
  /** tcp-connect only: bind to this source address first (non-local with `transparent`: TPROXY's hand-off). */
  sourceAddress?: string;
  /** With sourceAddress: never this source port (the client's own, so the hand-off's 4-tuple differs from the client's). */
  avoidSourcePort?: number;
}

/**
 * Errors from the addon carry `code`: an errno name (`ENOENT` for a missing
 * netns path), `ENOTNETNS` (path is not a network namespace) or `ENFT`
 * (libnftables rejected the script; the message is its verbatim text).
 */
export interface NativeError extends Error { code: string }

/** The native HTTP/1.1 path's tables (native/src/h1/h1_config.h). */
export interface HttpEngineConfig {
  generation: number;
  /** cluster: the native cluster table's name (outbound|port||fqdn); endpoints: headless services only. */
  routes: { cluster: string; endpoints: [string, number][]; headless?: boolean; meshPeer?: boolean; retries?: number }[];
  /** ["host|port", route index] */
  hosts: [string, number][];
  meshPods: string[];
  peerHeader: string;
  passthroughRetries: number;
  samplingPercent: number;
  idleTimeoutMs: number;
  connectTimeoutMs: number;
  headerTimeoutMs: number;
  inboundSourceV4: string;
  durationBounds: readonly number[];
  sizeBounds: readonly number[];
}

export interface HttpEngineAdopt { inbound: boolean; dstIp: string; dstPort: number; peerIp: string; initial?: Uint8Array; h2?: boolean }

/** One aggregated series since the last take: bucket counts per bound (not cumulative), the last one above every bound. */
export interface HttpEngineSeries {
  key: string;
  count: number;
  duration: number[];
  durationSum: number;
  requestBytes: number[];
  requestBytesSum: number;
  responseBytes: number[];
  responseBytesSum: number;
  /** gRPC messages (the HTTP/2 codec; 0 otherwise). */
  requestMessages?: number;
  responseMessages?: number;
}

export interface HttpEngineStats {
  connections: number; activeConnections: number; requests: number; upstreamConnects: number; upstreamReused: number;
  retries: number; rejected: number; tunnels: number; h2Connections: number;
}

interface NativeAddon {
  // Absent in an addon built before the native HTTP/1.1 path existed.
  httpEngineConfigure?(cfg: HttpEngineConfig): void;
  httpEngineAdopt?(fd: number, spec: HttpEngineAdopt): void;
  httpEngineTakeStats?(): HttpEngineSeries[];
  httpEngineStats?(): HttpEngineStats | null;
  httpEngineDrain?(): void;
  httpEngineNghttp2Header?: string;
  nftRun(netns: string | null, script: string, opts?: NftRunOptions): Promise<string>;
  nftCanonical(script: string, listCommand?: string): Promise<string>;
  socketInNetns(netns: string | null, opts: SocketInNetnsOptions | { kind: 'unix-listen'; address: string; backlog?: number }): Promise<number>;
  originalDst(fd: number): SocketAddress;
  peerCred(fd: number): PeerCredentials;
  // Absent in an addon built before they existed.
  mallocTrim?(): boolean;
  mallocStats?(): MallocStats;
}

export const ADDON_NOT_BUILT =
  'weir native addon not built: run `npm run build:native` (needs cmake, g++, libnftables-dev)';

const ADDON_RELATIVE = path.join('native', 'build', 'Release', 'weir_native.node');

/**
 * Where the .node file is: $WEIR_NATIVE_ADDON, else native/build/Release of
 * the weir package this module belongs to. The module may be
 * src/native/addon.ts (tsx) or the bundle dist/weir.mjs, so walk up to the
 * package.json named "weir" rather than assuming a depth.
 */
export function locateAddon(startDir = path.dirname(fileURLToPath(import.meta.url))): string | undefined {
  const fromEnv = process.env.WEIR_NATIVE_ADDON;
  if (fromEnv) return fromEnv;
  for (let dir = startDir; ; dir = path.dirname(dir)) {
    const pkg = path.join(dir, 'package.json');
    if (existsSync(pkg) && packageName(pkg) === 'weir') {
      const candidate = path.join(dir, ADDON_RELATIVE);
      return existsSync(candidate) ? candidate : undefined;
    }
    if (path.dirname(dir) === dir) return undefined;
  }
}

function packageName(file: string): string | undefined {
  try {
    return (JSON.parse(readFileSync(file, 'utf8')) as { name?: string }).name;
  } catch {
    return undefined;
  }
}

let addon: NativeAddon | undefined;

/** The loaded addon's exports, for the glue modules beside this one (cluster-table.ts); throws when not built. */
export function addonExports(): Record<string, unknown> {
  return load() as unknown as Record<string, unknown>;
}

function load(): NativeAddon {
  if (addon) return addon;
  const file = locateAddon();
  if (!file || !existsSync(file)) {
    throw new Error(file ? `${ADDON_NOT_BUILT} (WEIR_NATIVE_ADDON=${file} does not exist)` : ADDON_NOT_BUILT);
  }
  addon = createRequire(import.meta.url)(file) as NativeAddon;
  return addon;
}

/** The native HTTP/1.1 path's entry points, or undefined when the addon has none (src/proxy/http/native-h1.ts). */
export function httpEngine(): Required<Pick<NativeAddon, 'httpEngineConfigure' | 'httpEngineAdopt' | 'httpEngineTakeStats' | 'httpEngineStats' | 'httpEngineDrain'>> | undefined {
  if (!nativeAvailable()) return undefined;
  const a = load();
  return a.httpEngineConfigure && a.httpEngineAdopt && a.httpEngineTakeStats && a.httpEngineStats && a.httpEngineDrain ? (a as Required<NativeAddon>) : undefined;
}

/** True when the addon can be loaded (for skipping or degrading gracefully). */
export function nativeAvailable(): boolean {
  try {
    load();
    return true;
  } catch {
    return false;
  }
}

/**
 * Run an nft script in `netns` (path, or null for the agent's own netns) as
 * ONE libnftables transaction on a fresh thread; resolves with nft's output.
 * Rejects with libnftables' error text verbatim (code `ENFT`).
 */
export async function nftRun(netns: string | null, script: string, opts: NftRunOptions = {}): Promise<string> {
  return load().nftRun(netns, script, opts);
}

/**
 * Apply `script` in a throw-away netns and return `listCommand`'s output
 * there (default `list ruleset`): the ruleset exactly as the kernel would
 * list it back after applying the script to an empty netns.
 */
export async function nftCanonical(script: string, listCommand = 'list ruleset'): Promise<string> {
  return load().nftCanonical(script, listCommand);
}

/**
 * Create a socket inside `netns` and return its fd (non-blocking,
 * close-on-exec). Listening fds go to `net.createServer().listen({fd})`,
 * connected ones to `new net.Socket({fd})`; the caller owns the fd.
 */
export async function socketInNetns(netns: string | null, opts: SocketInNetnsOptions): Promise<number> {
  return load().socketInNetns(netns, opts);
}

/**
 * A listening unix stream socket named `name` in the ABSTRACT namespace of
 * `netns` (no file; `name` without the leading NUL/'@'). Abstract names are
 * scoped to the network namespace, so only processes inside `netns` can
 * connect: the listener that accepted a connection says which netns the
 * peer is in. Returns the fd (non-blocking, close-on-exec; caller owns it).
 * Rejects with code EADDRINUSE if something in that netns holds the name.
 */
export async function abstractListenerInNetns(netns: string | null, name: string, backlog?: number): Promise<number> {
  return load().socketInNetns(netns, { kind: 'unix-listen', address: name, backlog });
}

/** The pre-DNAT destination of an accepted, redirected TCP connection. */
export function originalDst(fd: number): SocketAddress {
  return load().originalDst(fd);
}

/** The pid/uid/gid of the process at the other end of a unix socket. */
export function peerCred(fd: number): PeerCredentials {
  return load().peerCred(fd);
}


/**
 * Give the free pages of glibc's malloc arenas back to the kernel
 * (malloc_trim(0)); false when nothing was released, or when the addon is
 * missing or predates it (nothing to do then).
 */
export function mallocTrim(): boolean {
  if (!nativeAvailable()) return false;
  const a = load();
  return typeof a.mallocTrim === 'function' ? a.mallocTrim() : false;
}

/** glibc malloc's arenas, summed (mallinfo2), bytes. */
export interface MallocStats { arenaBytes: number; mmappedBytes: number; inUseBytes: number; freeBytes: number; freeChunks: number; topReleasableBytes: number }

/** What glibc's malloc holds, or undefined when the addon is missing or predates mallocStats. */
export function mallocStats(): MallocStats | undefined {
  if (!nativeAvailable()) return undefined;
  return load().mallocStats?.();
}

/**
 * The fd under a net.Socket or net.Server (libuv handle). Node has no public
 * API for it; `_handle.fd` is stable on Unix and is what every addon uses.
 */
export function socketFd(sock: object): number {
  const fd = (sock as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new Error('socket has no file descriptor (not connected, or already closed)');
  return fd;
}

/** Inode of a netns file: equal inodes = the same network namespace. */
export function netnsInode(netnsPath: string): number {
  return statSync(netnsPath).ino;
}


/**
 * An export of the addon by name, or undefined when the addon is missing or
 * predates it: for modules that type their own part (src/native/tls-relay.ts).
 */
export function addonExport(name: string): unknown {
  if (!nativeAvailable()) return undefined;
  return (load() as unknown as Record<string, unknown>)[name];
}
