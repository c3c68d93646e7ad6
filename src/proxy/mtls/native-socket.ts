// The TLS side of a mesh connection held by the native relay, as the TCP
// chain sees it before the relay starts: where it is, whether it is gone,
// and how to close it. The bytes are not here (the addon owns the fd);
// relayNative() starts moving them once the plaintext side is connected.
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import type { NativeTlsSession, TlsDone } from '../../native/tls-relay.js';
import type { RelayHandle, RelayResult } from '../relay.js';

export interface Endpoints { remoteAddress?: string; remotePort?: number; localAddress?: string; localPort?: number }

export class NativeTlsSocket extends EventEmitter {
  readonly encrypted = true;
  readonly readableLength = 0;
  readonly bytesRead = 0;
  destroyed = false;
  readonly remoteAddress?: string;
  readonly remotePort?: number;
  readonly localAddress?: string;
  readonly localPort?: number;

  /** `peer`: the verified SPIFFE URI; `alpn`: what the handshake chose. */
  constructor(readonly session: NativeTlsSession, readonly peer: string, readonly alpn: string, at: Endpoints) {
    super();
    ({ remoteAddress: this.remoteAddress, remotePort: this.remotePort, localAddress: this.localAddress, localPort: this.localPort } = at);
    void session.done.then(() => this.gone());
  }

  /** Before relayNative(): end the session (a plain FIN: nothing was relayed, no close_notify owed). */
  destroy(): this { if (!this.destroyed) this.session.abort(false); this.gone(); return this; }
  resetAndDestroy(): this { if (!this.destroyed) this.session.abort(true); this.gone(); return this; }
  // What the chain may call on a socket before relaying: nothing to do here.
  setNoDelay(): this { return this; }
  pause(): this { return this; }
  resume(): this { return this; }

  private gone(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    queueMicrotask(() => this.emit('close', false));
  }
}

/** The native TLS side of `s`, if it is one. */
export function nativeTlsOf(s: unknown): NativeTlsSocket | undefined {
  return s instanceof NativeTlsSocket ? s : undefined;
}

/** The chain's socket type for a native TLS side (the chain only calls the members above before relayNative()). */
export function asSocket(s: NativeTlsSocket): Socket {
  return s as unknown as Socket;
}

/**
 * relay()'s contract for a native TLS side and a plaintext socket: `tlsIsDown`
 * says which end of the chain's (down, up) pair is the TLS one, for the byte
 * directions and the response flags. Falls back to nothing: if the plaintext
 * socket cannot be handed over, both are reset (the handshake already happened).
 */
export function relayNative(tls: NativeTlsSocket, plain: Socket, tlsIsDown: boolean, idleTimeoutMs: number): RelayHandle {
  const s = tls.session;
  const flag = (d: TlsDone): string => {
    switch (d.reason) {
      case 'closed': return '-';
      case 'idle': return 'IT';
      case 'aborted': return 'DC';
      case 'reset-by-plain': return tlsIsDown ? 'UR' : 'DR';
      default: return tlsIsDown ? 'DR' : 'UR'; // the TLS side reset, failed a record, or never got going
    }
  };
  const counts = (p: { plainToTls: number; tlsToPlain: number }) =>
    tlsIsDown ? { sent: p.tlsToPlain, received: p.plainToTls } : { sent: p.plainToTls, received: p.tlsToPlain };
  try {
    s.attach(plain, idleTimeoutMs);
  } catch {
    s.abort(true);
    if (!plain.destroyed) plain.resetAndDestroy();
  }
  return {
    done: s.done.then((d): RelayResult => ({ ...counts(d), flags: flag(d) })),
    progress: () => counts(s.progress()),
    abort: () => s.abort(true),
  };
}
