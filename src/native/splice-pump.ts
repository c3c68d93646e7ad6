// Handing two connected net.Sockets over to the native splice pump: from
// then on the kernel moves the bytes (socket -> pipe -> socket, no copy into
// JavaScript) on the addon's pump thread, and Node keeps nothing of either
// connection but a promise of the result.
//
// The handoff rule (what makes it lossless):
//  - Bytes Node has READ but nobody consumed (the socket's readable buffer,
//    e.g. data that arrived before the handoff, or bytes a protocol sniffer
//    looked at and unshift()ed) are taken out synchronously and given to the
//    pump, which writes them to the other side before anything it splices.
//  - Bytes queued for WRITING cannot be carried over (libuv holds them), so
//    a socket with `writableLength > 0` is refused: wait for 'drain' first.
//    A socket whose write side was already ended (end()) is refused too.
//  - No 'data' listener and no pipe() may be attached: they would see the
//    buffered bytes as well, and forward them twice.
//  - Everything happens in one synchronous step: take the buffered bytes,
//    start the pump on duplicated fds, destroy both Node sockets (which
//    closes Node's fds without FIN or RST; the connection lives on in the
//    pump's duplicates). libuv never gets a chance to read in between.
// After the handoff both sockets are destroyed: their 'close' event fires,
// their bytesRead/bytesWritten stop counting, a net.Server no longer counts
// them in `connections`/maxConnections. The pump's result has the byte
// counts.
import type { Socket } from 'node:net';
import {
  pumpAbort,
  pumpAvailable,
  pumpConnect,
  pumpConnectAvailable,
  pumpFlush,
  pumpRedial,
  pumpProgress,
  pumpStart,
  PUMP_NOT_BUILT,
  type DialTarget,
  type PumpEvent,
  type PumpProgress,
  type PumpResult,
} from './pump.js';
import { socketFd } from './addon.js';

export type { DialTarget, PumpResult, PumpReason, PumpProgress } from './pump.js';

export class SplicePumpError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
    this.name = 'SplicePumpError';
  }
}

export interface SplicePumpOptions {
  /** Close both sides after this long with no byte moving; 0/absent = never. */
  idleTimeoutMs?: number;
  /** Pipe capacity per direction, default 1 MiB (the kernel's default if refused). */
  pipeSize?: number;
}

export interface SplicePump {
  readonly id: number;
  /** Resolves once, when both directions are done (never rejects). */
  readonly done: Promise<PumpResult>;
  /** Bytes delivered so far (final counts once done). */
  progress(): PumpProgress;
  /** End it now (reason `aborted`); `reset` sends RST to both peers. */
  abort(opts?: { reset?: boolean }): void;
}

/** Whether this build can splice; when false, keep the stream relay. */
export function splicePumpAvailable(): boolean {
  return pumpAvailable();
}

/**
 * Hand `a` and `b` to the splice pump (see the rule at the top of this file).
 * Throws SplicePumpError before touching anything if a socket cannot be
 * handed off (code EHANDOFF) or the addon has no pump (code ENOPUMP), and the
 * addon's error (ENOTCONN, EMFILE, ...) if it refuses the fds; in every
 * throwing case both sockets are left exactly as they were, buffered bytes
 * included, so the caller can fall back to the stream relay.
 */
export function startSplicePump(a: Socket, b: Socket, opts: SplicePumpOptions = {}): SplicePump {
  if (!pumpAvailable()) throw new SplicePumpError('ENOPUMP', PUMP_NOT_BUILT);
  if (a === b) throw new SplicePumpError('EHANDOFF', 'cannot splice a socket to itself');
  const fdA = handoffFd(a, 'a');
  const fdB = handoffFd(b, 'b');
  const initialAtoB = takeBuffered(a);
  const initialBtoA = takeBuffered(b);

  let final: PumpResult | undefined;
  let resolveDone!: (r: PumpResult) => void;
  const done = new Promise<PumpResult>((resolve) => { resolveDone = resolve; });
  let id: number;
  try {
    id = pumpStart(fdA, fdB, { ...opts, initialAtoB, initialBtoA }, (r) => {
      final = r;
      resolveDone(r);
    });
  } catch (err) {
    // Nothing was taken: put the bytes back where they were.
    if (initialAtoB.length > 0) a.unshift(initialAtoB);
    if (initialBtoA.length > 0) b.unshift(initialBtoA);
    throw err;
  }
  // Same tick as pumpStart: Node's fds close before libuv polls again.
  a.destroy();
  b.destroy();
  return {
    id,
    done,
    progress: () => pumpProgress(id) ?? (final ? { bytesAtoB: final.bytesAtoB, bytesBtoA: final.bytesBtoA } : { bytesAtoB: 0, bytesBtoA: 0 }),
    abort: (o = {}) => { pumpAbort(id, o); },
  };
}

export type ConnectOutcome =
  | { ok: true; localAddress?: string; localPort?: number }
  | { ok: false; code: string; message: string };

/** A pump that dials its upstream itself (no upstream net.Socket): see startConnectPump. */
export interface ConnectPump extends SplicePump {
  /** The outcome of the first connect. */
  readonly connected: Promise<ConnectOutcome>;
  /** After a failed connect: dial the next endpoint. */
  redial(target: DialTarget): Promise<ConnectOutcome>;
}

// Pumps queued this event-loop turn wake the pump thread once, after the
// poll phase's callbacks (every connection libuv accepted in one go) ran.
let flushPending = false;
function flushSoon(): void {
  if (flushPending) return;
  flushPending = true;
  setImmediate(() => { flushPending = false; pumpFlush(); });
}

/** Whether this build's pump can dial upstreams itself. */
export function connectPumpAvailable(): boolean {
  return pumpConnectAvailable();
}

/**
 * Hand the client socket `a` to a pump that connects to `target` on the
 * pump thread (the same handoff rule as startSplicePump: buffered bytes go
 * first, the socket is destroyed in the same tick). From here on the pump
 * owns the client: after a failed connect it waits for redial() or abort()
 * (abort({reset: true}) resets the client). Throws like startSplicePump,
 * leaving `a` untouched.
 */
export function startConnectPump(a: Socket, target: DialTarget, opts: SplicePumpOptions = {}): ConnectPump {
  if (!pumpConnectAvailable()) throw new SplicePumpError('ENOPUMP', PUMP_NOT_BUILT);
  const fdA = handoffFd(a, 'a');
  const initialAtoB = takeBuffered(a);
  let final: PumpResult | undefined;
  let resolveDone!: (r: PumpResult) => void;
  const done = new Promise<PumpResult>((resolve) => { resolveDone = resolve; });
  let waiting: ((o: ConnectOutcome) => void) | undefined;
  const next = () => new Promise<ConnectOutcome>((resolve) => { waiting = resolve; });
  const settle = (o: ConnectOutcome) => { const w = waiting; waiting = undefined; w?.(o); };
  const connected = next();
  let id: number;
  try {
    id = pumpConnect(fdA, target, { ...opts, initialAtoB, deferWake: true }, (e: PumpEvent) => {
      if (e.event === 'connected') settle({ ok: true, localAddress: e.localAddress, localPort: e.localPort });
      else if (e.event === 'connect-failed') settle({ ok: false, code: e.code, message: e.message });
      else {
        const { event: _, ...r } = e;
        final = r;
        // Ended before a connect outcome (aborted while dialling): that attempt failed.
        settle({ ok: false, code: 'ECONNABORTED', message: r.error ?? `pump ${r.reason} while connecting` });
        resolveDone(r);
      }
    });
  } catch (err) {
    if (initialAtoB.length > 0) a.unshift(initialAtoB);
    throw err;
  }
  a.destroy();
  flushSoon();
  return {
    id,
    done,
    connected,
    redial(t) {
      const p = next();
      if (!pumpRedial(id, t)) settle({ ok: false, code: 'ECONNABORTED', message: 'the client connection is gone' });
      return p;
    },
    progress: () => pumpProgress(id) ?? (final ? { bytesAtoB: final.bytesAtoB, bytesBtoA: final.bytesBtoA } : { bytesAtoB: 0, bytesBtoA: 0 }),
    abort: (o = {}) => { pumpAbort(id, o); },
  };
}

/** startSplicePump(...).done: the result once both directions are done. */
export function spliceSockets(a: Socket, b: Socket, opts: SplicePumpOptions = {}): Promise<PumpResult> {
  return startSplicePump(a, b, opts).done;
}

/** The fd of a socket that may be handed to native code (the handoff rule above), else SplicePumpError EHANDOFF. */
export function handoffFd(sock: Socket, name: string): number {
  const refuse = (why: string): never => { throw new SplicePumpError('EHANDOFF', `socket ${name} ${why}`); };
  if (sock.destroyed) refuse('is destroyed');
  if (sock.connecting) refuse('is still connecting');
  if (sock.writableEnded) refuse('already ended its write side (end() was called); hand off before ending');
  if (sock.writableLength > 0) refuse(`has ${sock.writableLength} bytes queued for writing; wait for 'drain' before the handoff`);
  if (sock.listenerCount('data') > 0) refuse("has 'data' listeners or is piped; remove them (unpipe) before the handoff");
  try {
    return socketFd(sock);
  } catch (err) {
    return refuse(`has no file descriptor (${(err as Error).message})`);
  }
}

/** Everything in the socket's readable buffer, removed from it. */
export function takeBuffered(sock: Socket): Buffer {
  if (sock.readableLength === 0) return Buffer.alloc(0);
  const chunks: Buffer[] = [];
  for (let chunk: unknown; (chunk = sock.read()) !== null;) {
    chunks.push(typeof chunk === 'string' ? Buffer.from(chunk, sock.readableEncoding ?? 'utf8') : (chunk as Buffer));
  }
  return Buffer.concat(chunks);
}
