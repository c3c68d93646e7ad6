// The native mesh TLS relay (native/src/tls_relay.h) from JavaScript: TLS
// contexts from PEM, and sessions that take a connected net.Socket over
// (its fd and whatever Node had already read from it), run the mutual TLS
// handshake on the addon's thread, report the verified peer, and — once
// attach() hands them the plaintext socket — move the bytes both ways in
// native code (OpenSSL from the node binary itself).
//
// The handoff is splice-pump.ts's rule: refuse a socket with bytes queued
// for writing, an ended write side or 'data' listeners; take its readable
// buffer; start the native side on a duplicate fd and destroy the Node
// socket in the same tick, so libuv never reads the fd again.
import type { Socket } from 'node:net';
import { addonExport, socketFd } from './addon.js';

export interface TlsContextOptions {
  server: boolean;
  /** PEM: leaf first, then intermediates. */
  cert: string;
  key: string;
  /** PEM trust anchors the peer must chain to. */
  roots: string;
  /** Client: offered. Server: accepted (first of the client's offer that is here wins; none → refused). */
  alpn: string[];
}

/** An OpenSSL context held by the addon (freed by the GC once no session uses it). */
export interface TlsContext { readonly __nativeTlsContext: true }

export interface TlsHandshake { peerUris: string[]; alpn: string }

export type TlsDoneReason = 'closed' | 'reset-by-plain' | 'reset-by-tls' | 'idle' | 'aborted' | 'error' | 'handshake-failed';

export interface TlsDone {
  reason: TlsDoneReason;
  error?: string;
  /** Plaintext bytes read from the plain side and sent encrypted. */
  plainToTls: number;
  /** Plaintext bytes decrypted and written to the plain side. */
  tlsToPlain: number;
  durationMs: number;
}

export interface TlsRelayStats { active: number; started: number; handshakes: number; handshakeFailures: number; finished: number; openssl: string }

type Event = ({ kind: 'handshake' } & TlsHandshake) | ({ kind: 'done' } & TlsDone);

interface TlsAddon {
  tlsContext(o: TlsContextOptions): TlsContext;
  tlsStart(ctx: TlsContext, fd: number, o: { server: boolean; initial?: Uint8Array; sni?: string; handshakeTimeoutMs?: number }, onEvent: (e: Event) => void): number;
  tlsAttach(id: number, fd: number, o: { initial?: Uint8Array; idleTimeoutMs?: number }): void;
  tlsAbort(id: number, o?: { reset?: boolean }): boolean;
  tlsProgress(id: number): { plainToTls: number; tlsToPlain: number } | undefined;
  tlsStats(): TlsRelayStats;
}

const EXPORTS = ['tlsContext', 'tlsStart', 'tlsAttach', 'tlsAbort', 'tlsProgress', 'tlsStats'] as const;

function addon(): TlsAddon | undefined {
  const fns = EXPORTS.map((n) => addonExport(n));
  if (fns.some((f) => typeof f !== 'function')) return undefined;
  return Object.fromEntries(EXPORTS.map((n, i) => [n, fns[i]])) as unknown as TlsAddon;
}

let cached: TlsAddon | null | undefined;
function relay(): TlsAddon {
  if (cached === undefined) cached = addon() ?? null;
  if (!cached) throw Object.assign(new Error('weir native addon has no TLS relay: rebuild it (`npm run build:native`)'), { code: 'ENOTLSRELAY' });
  return cached;
}

export function tlsRelayAvailable(): boolean {
  try { relay(); return true; } catch { return false; }
}

/** Throws a TypeError/Error naming the bad field (cert, key, roots, alpn) with OpenSSL's reason. */
export function createTlsContext(o: TlsContextOptions): TlsContext {
  return relay().tlsContext(o);
}

export function tlsRelayStats(): TlsRelayStats | undefined {
  return tlsRelayAvailable() ? relay().tlsStats() : undefined;
}

export class TlsHandoffError extends Error {
  constructor(readonly code: string, message: string) { super(message); this.name = 'TlsHandoffError'; }
}

/** The fd and the unread bytes of a socket that can be handed to the addon, or why not (nothing touched then). */
function handoff(sock: Socket, what: string): { fd: number; take(): Buffer } {
  const refuse = (why: string): never => { throw new TlsHandoffError('EHANDOFF', `${what} ${why}`); };
  if (sock.destroyed) refuse('is destroyed');
  if (sock.connecting) refuse('is still connecting');
  if (sock.writableEnded) refuse('already ended its write side');
  if (sock.writableLength > 0) refuse(`has ${sock.writableLength} bytes queued for writing`);
  if (sock.listenerCount('data') > 0) refuse("has 'data' listeners or is piped");
  let fd = -1;
  try { fd = socketFd(sock); } catch (e) { refuse(`has no file descriptor (${(e as Error).message})`); }
  return {
    fd,
    take() {
      const chunks: Buffer[] = [];
      for (let c: unknown; (c = sock.read()) !== null;) chunks.push(typeof c === 'string' ? Buffer.from(c) : (c as Buffer));
      return Buffer.concat(chunks);
    },
  };
}

export interface TlsSessionOptions {
  server: boolean;
  sni?: string;
  handshakeTimeoutMs: number;
}

/** One mesh TLS connection owned by the addon. */
export class NativeTlsSession {
  readonly id: number;
  /** Resolves with the verified peer; rejects (Error with `reason`) if the session ended first. */
  readonly handshake: Promise<TlsHandshake>;
  /** Resolves once, when the session ends (never rejects). */
  readonly done: Promise<TlsDone>;
  private final?: TlsDone;
  private attached = false;

  /** Takes `tls` over (destroyed on return); throws TlsHandoffError or the addon's error with `tls` untouched. */
  constructor(ctx: TlsContext, tls: Socket, o: TlsSessionOptions) {
    const a = relay();
    const h = handoff(tls, 'TLS socket');
    const initial = h.take();
    let onHandshake!: (v: TlsHandshake) => void;
    let onFail!: (e: Error) => void;
    let onDone!: (d: TlsDone) => void;
    this.handshake = new Promise((resolve, reject) => { onHandshake = resolve; onFail = reject; });
    this.handshake.catch(() => undefined); // a caller that never awaits it must not see an unhandled rejection
    this.done = new Promise((resolve) => { onDone = resolve; });
    try {
      this.id = a.tlsStart(ctx, h.fd, { server: o.server, initial: initial.length ? initial : undefined, sni: o.sni, handshakeTimeoutMs: o.handshakeTimeoutMs }, (e) => {
        if (e.kind === 'handshake') { onHandshake({ peerUris: e.peerUris, alpn: e.alpn }); return; }
        const { kind: _k, ...d } = e;
        this.final = d;
        onFail(Object.assign(new Error(d.error ?? d.reason), { reason: d.reason }));
        onDone(d);
      });
    } catch (e) {
      if (initial.length) tls.unshift(initial);
      throw e;
    }
    tls.destroy();
  }

  /** Relay between the session and `plain` (destroyed on return). Throws with `plain` untouched if it cannot. */
  attach(plain: Socket, idleTimeoutMs: number): void {
    if (this.attached) throw new TlsHandoffError('EHANDOFF', 'session already attached');
    const h = handoff(plain, 'plaintext socket');
    const initial = h.take();
    try {
      relay().tlsAttach(this.id, h.fd, { initial: initial.length ? initial : undefined, idleTimeoutMs });
    } catch (e) {
      if (initial.length) plain.unshift(initial);
      throw e;
    }
    this.attached = true;
    plain.destroy();
  }

  /** Ends it (Done reason `aborted`); `reset` sends RST both ways. No-op once done. */
  abort(reset: boolean): void {
    if (!this.final) relay().tlsAbort(this.id, { reset });
  }

  get ended(): boolean { return this.final !== undefined; }

  progress(): { plainToTls: number; tlsToPlain: number } {
    return relay().tlsProgress(this.id) ?? (this.final ? { plainToTls: this.final.plainToTls, tlsToPlain: this.final.tlsToPlain } : { plainToTls: 0, tlsToPlain: 0 });
  }
}
