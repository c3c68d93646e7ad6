// The DNS UDP fast path's bindings (native/src/dns_fast*.cc): threads that
// answer cached and local questions on the DNS proxy's sockets without
// JavaScript; src/dns/ drives them.
import { addonExports, nativeAvailable } from './addon.js';

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

interface DnsFastAddon {
  DnsFast?: new (opts: DnsFastOptions, onMiss: DnsFastMissHandler) => DnsFastHandle;
  dnsLocalAddress?(fd: number): { family: 'IPv4' | 'IPv6'; address: string; port: number };
}

// Absent in an addon built before the DNS fast path existed: each caller checks.
function load(): DnsFastAddon {
  return addonExports() as DnsFastAddon;
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
