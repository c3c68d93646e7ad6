// Typed access to weir's native addon (native/): netns-scoped work on
// dedicated OS threads, libnftables in-process, and the socket options Node
// does not expose. The addon is loaded lazily so commands that never touch a
// netns (rules render, the proxy's pure-JS paths) work without a build.
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

export interface PumpOptions {
  /** Close both sides after this long without a byte moving either way; 0/absent = never. */
  idleTimeoutMs?: number;
  /** Pipe capacity per direction (F_SETPIPE_SZ), default 1 MiB; the kernel's default if refused. */
  pipeSize?: number;
  /** Bytes already read from A before the handoff: written to B before anything else. */
  initialAtoB?: Uint8Array;
  /** Bytes already read from B before the handoff: written to A before anything else. */
  initialBtoA?: Uint8Array;
}

/**
 * How a pump ended. `closed`: both directions ended with FIN. `reset-by-a|b`:
 * that side reset (or failed with EPIPE), the other got RST. `idle`: idle
 * timeout, both closed. `aborted`: pumpAbort. `error`: any other socket error,
 * both sides reset; `error` holds the text.
 */
export type PumpReason = 'closed' | 'reset-by-a' | 'reset-by-b' | 'idle' | 'aborted' | 'error';

export interface PumpResult {
  /** Bytes written to B (including `initialAtoB`). */
  bytesAtoB: number;
  /** Bytes written to A (including `initialBtoA`). */
  bytesBtoA: number;
  reason: PumpReason;
  /** errno text for reset-* and error, e.g. "b: splice read: Connection reset by peer (ECONNRESET)". */
  error?: string;
  durationMs: number;
}

export interface PumpProgress { bytesAtoB: number; bytesBtoA: number }

/** The upstream a pumpConnect pump dials itself (numeric addresses only). */
export interface DialTarget {
  ip: string;
  port: number;
  /** Source address to bind first (same family as ip). */
  localAddress?: string;
  /** Default 5000. */
  connectTimeoutMs?: number;
}

export interface ConnectPumpOptions extends Omit<PumpOptions, 'initialBtoA'> {
  /** Queue without waking the pump thread: the caller calls pumpFlush() soon (one wakeup per burst). */
  deferWake?: boolean;
}

/** What a pumpConnect pump reports, in this order: connect outcomes (a failure waits for pumpRedial/pumpAbort), then done once. */
export type PumpEvent =
  | { event: 'connected'; localAddress?: string; localPort?: number }
  | { event: 'connect-failed'; code: string; message: string }
  | ({ event: 'done' } & PumpResult);

export interface PumpStats {
  /** Pumps moving bytes now. */
  active: number;
  started: number;
  finished: number;
  /** Pump threads in this JS environment (0 until the first pumpStart). */
  threads: number;
  /** Busy-poll window in force (µs after activity; 0 = the thread always sleeps in epoll_wait). */
  busyPollUs: number;
  /** Event batches the thread found while busy-polling (a sleep and wakeup avoided each). */
  polledBatches: number;
  /** Event batches that came after the thread slept. */
  blockedBatches: number;
  /** Time spent busy-polling (CPU the option costs), milliseconds. */
  spinMs: number;
  /** Empty pipes waiting in the pipe pool for the next pump (2 fds each). */
  pipesPooled: number;
  /** Pipes a pump took from the pool / had to create. */
  pipesReused: number;
  pipesCreated: number;
  /** Pipes closed instead of pooled (pool full, bytes left in it, idle too long). */
  pipesClosed: number;
}

export interface PumpSettings {
  /** Busy-poll window in µs, 0-10000 (0 = off). */
  busyPollUs?: number;
  /** Most empty pipes kept for reuse, 0-4096 (0 = no pool); default 128. */
  pipePoolMax?: number;
  /** A pooled pipe unused this long (ms) is closed; default 5000. */
  pipePoolIdleMs?: number;
}

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
  // Absent in an addon built before the pump existed.
  pumpStart?(fdA: number, fdB: number, opts: PumpOptions | undefined, onDone: (r: PumpResult) => void): number;
  pumpAbort?(id: number, opts?: { reset?: boolean }): boolean;
  // Absent in an addon built before pumps could connect themselves.
  pumpConnect?(fdA: number, target: DialTarget, opts: ConnectPumpOptions | undefined, onEvent: (e: PumpEvent) => void): number;
  pumpRedial?(id: number, target: DialTarget): boolean;
  pumpFlush?(): void;
  pumpProgress?(id: number): PumpProgress | undefined;
  pumpStats?(): PumpStats;
  pumpConfigure?(settings: PumpSettings): Required<PumpSettings>;
  // Absent in an addon built before the DNS fast path existed.
  DnsFast?: new (opts: DnsFastOptions, onMiss: DnsFastMissHandler) => DnsFastHandle;
  dnsLocalAddress?(fd: number): { family: 'IPv4' | 'IPv6'; address: string; port: number };
  // Absent in an addon built before it existed.
  mallocTrim?(): boolean;
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

export const PUMP_NOT_BUILT =
  'weir native addon has no splice pump (built before it existed): run `npm run build:native`';

/** True when the addon loads and has the splice pump. */
export function pumpAvailable(): boolean {
  return nativeAvailable() && typeof load().pumpStart === 'function';
}

function pumpAddon(): Required<Pick<NativeAddon, 'pumpStart' | 'pumpAbort' | 'pumpProgress' | 'pumpStats'>> {
  const a = load();
  if (!a.pumpStart || !a.pumpAbort || !a.pumpProgress || !a.pumpStats) {
    throw Object.assign(new Error(PUMP_NOT_BUILT), { code: 'ENOPUMP' });
  }
  return a as Required<NativeAddon>;
}

/**
 * Start moving bytes both ways between two connected TCP sockets with
 * splice(2), on the addon's pump thread. The addon DUPLICATES both fds and
 * owns the duplicates (closes each exactly once); the caller still owns
 * `fdA`/`fdB` and must close them right away (destroy the net.Socket in the
 * same tick), or libuv keeps polling and may read bytes meant for the pump.
 * Prefer `startSplicePump` (splice-pump.ts), which does exactly that.
 * Throws (code ENOTSOCK, EPROTOTYPE, ENOTCONN, EMFILE, ...) before taking
 * anything; `onDone` runs once, on the JS thread.
 */
export function pumpStart(fdA: number, fdB: number, opts: PumpOptions, onDone: (r: PumpResult) => void): number {
  return pumpAddon().pumpStart(fdA, fdB, opts, onDone);
}

/** True when the addon's pump can dial upstreams itself (pumpConnect). */
export function pumpConnectAvailable(): boolean {
  return pumpAvailable() && typeof load().pumpConnect === 'function';
}

/**
 * A pump whose B side the pump thread connects to `target` itself: no
 * upstream socket in Node at all. `fdA` is duplicated (the caller destroys
 * its socket in the same tick, as for pumpStart). `onEvent` gets the
 * connect's outcome — after 'connect-failed' the pump holds A until
 * pumpRedial (next endpoint) or pumpAbort ({reset: true} resets the client)
 * — and last 'done' with the byte counts. Throws (bad target: EINVAL naming
 * the field; EBADF, EMFILE) before taking anything.
 */
export function pumpConnect(fdA: number, target: DialTarget, opts: ConnectPumpOptions, onEvent: (e: PumpEvent) => void): number {
  const a = load();
  if (!a.pumpConnect) throw Object.assign(new Error(PUMP_NOT_BUILT), { code: 'ENOPUMP' });
  return a.pumpConnect(fdA, target, opts, onEvent);
}

/** Wake the pump thread for pumps started with deferWake. */
export function pumpFlush(): void {
  load().pumpFlush?.();
}

/** Dial the next endpoint for a pump that reported 'connect-failed'; false if it is gone. */
export function pumpRedial(id: number, target: DialTarget): boolean {
  const a = load();
  if (!a.pumpRedial) throw Object.assign(new Error(PUMP_NOT_BUILT), { code: 'ENOPUMP' });
  return a.pumpRedial(id, target);
}

/** End a running pump (reason `aborted`): RST both peers if `reset`, else close. False if not running. */
export function pumpAbort(id: number, opts: { reset?: boolean } = {}): boolean {
  return pumpAddon().pumpAbort(id, opts);
}

/** Bytes delivered so far by a running pump; undefined once it finished. */
export function pumpProgress(id: number): PumpProgress | undefined {
  return pumpAddon().pumpProgress(id);
}

/** Counters of this JS environment's pump engine. */
export function pumpStats(): PumpStats {
  return pumpAddon().pumpStats();
}

/**
 * Engine-wide settings of this JS environment's pump (now, or for the engine
 * the first pumpStart creates). Returns what is in force. Throws ENOPUMP if
 * the addon was built without pumpConfigure.
 */
export function pumpConfigure(settings: PumpSettings): Required<PumpSettings> {
  const a = load();
  if (!a.pumpConfigure) throw Object.assign(new Error(PUMP_NOT_BUILT), { code: 'ENOPUMP' });
  return a.pumpConfigure(settings);
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

/** Where the DNS fast path's threads count (the SharedQueryStats layout, src/dns/shared-stats.ts). */
export interface DnsFastLayout {
  /** 65536 entries: qtype → label index. */
  qtypeIndex: Uint8Array;
  outcomes: number;
  localOutcome: number;
  cachedOutcome: number;
  malformedOutcome: number;
  latencyBase: number;
  latencyStride: number;
  bounds: readonly number[];
  /** Doubles per thread block. */
  slots: number;
}

export interface DnsFastOptions {
  /** Per thread, its bound UDP sockets. The addon owns (and closes) them from here on. */
  sockets: number[][];
  /** Per thread, its counter block (Float64Array of layout.slots), written by that thread only. */
  stats: Float64Array[];
  layout: DnsFastLayout;
  /** Answers held at most. */
  maxEntries: number;
}

/** A query the fast path did not answer: reply with DnsFastHandle.send(socket, peer, answer). */
export type DnsFastMissHandler = (socket: number, peer: Buffer, packet: Buffer) => void;

export interface DnsFastHandle {
  /** Teach the fast path the answer to questions like `query` for `lifetimeMs`; false if it is not one it can serve. */
  put(query: Uint8Array, response: Uint8Array, lifetimeMs: number, kind: 'local' | 'cached'): boolean;
  /** Forget answers: 1 = local, 2 = cached, 3 = all. */
  clear(mask: number): void;
  send(socket: number, peer: Uint8Array, response: Uint8Array): boolean;
  stats(): { answered: number; missed: number; dropped: number; entries: number; running: boolean };
  /** Joins the threads and closes the sockets. Idempotent. */
  stop(): void;
}

/** True when the addon has the DNS UDP fast path. */
export function dnsFastAvailable(): boolean {
  return nativeAvailable() && typeof load().DnsFast === 'function' && typeof load().dnsLocalAddress === 'function';
}

/**
 * Starts the DNS UDP fast path's threads on already bound sockets (see
 * native/src/dns_fast.h). Misses arrive in `onMiss` on this thread.
 */
export function createDnsFast(opts: DnsFastOptions, onMiss: DnsFastMissHandler): DnsFastHandle {
  const Ctor = load().DnsFast;
  if (!Ctor) throw Object.assign(new Error('weir native addon has no DNS fast path: rebuild it (`npm run build:native`)'), { code: 'ENODNSFAST' });
  return new Ctor(opts, onMiss);
}

/** Where a socket is bound (getsockname). */
export function dnsLocalAddress(fd: number): { family: 'IPv4' | 'IPv6'; address: string; port: number } {
  const f = load().dnsLocalAddress;
  if (!f) throw Object.assign(new Error('weir native addon has no dnsLocalAddress: rebuild it'), { code: 'ENODNSFAST' });
  return f(fd);
}

/**
 * An export of the addon by name, or undefined when the addon is missing or
 * predates it: for modules that type their own part (src/native/tls-relay.ts).
 */
export function addonExport(name: string): unknown {
  if (!nativeAvailable()) return undefined;
  return (load() as unknown as Record<string, unknown>)[name];
}
