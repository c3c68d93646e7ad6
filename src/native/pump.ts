// The splice pump's bindings (native/src/pump*.cc, pump_js.cc): typed access
// to the addon's pump* exports. The pump moves bytes between two TCP sockets
// on the addon's own thread; splice-pump.ts is the Node-socket-level API
// built on these.
import { addonExports, nativeAvailable } from './addon.js';

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

interface PumpAddon {
  pumpStart?(fdA: number, fdB: number, opts: PumpOptions | undefined, onDone: (r: PumpResult) => void): number;
  pumpAbort?(id: number, opts?: { reset?: boolean }): boolean;
  // Absent in an addon built before pumps could connect themselves.
  pumpConnect?(fdA: number, target: DialTarget, opts: ConnectPumpOptions | undefined, onEvent: (e: PumpEvent) => void): number;
  pumpRedial?(id: number, target: DialTarget): boolean;
  pumpFlush?(): void;
  pumpProgress?(id: number): PumpProgress | undefined;
  pumpStats?(): PumpStats;
  pumpConfigure?(settings: PumpSettings): Required<PumpSettings>;
}

// Absent in an addon built before the pump existed: each caller checks.
function load(): PumpAddon {
  return addonExports() as PumpAddon;
}

export const PUMP_NOT_BUILT =
  'weir native addon has no splice pump (built before it existed): run `npm run build:native`';

/** True when the addon loads and has the splice pump. */
export function pumpAvailable(): boolean {
  return nativeAvailable() && typeof load().pumpStart === 'function';
}

function pumpAddon(): Required<Pick<PumpAddon, 'pumpStart' | 'pumpAbort' | 'pumpProgress' | 'pumpStats'>> {
  const a = load();
  if (!a.pumpStart || !a.pumpAbort || !a.pumpProgress || !a.pumpStats) {
    throw Object.assign(new Error(PUMP_NOT_BUILT), { code: 'ENOPUMP' });
  }
  return a as Required<PumpAddon>;
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
