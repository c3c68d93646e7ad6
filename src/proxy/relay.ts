// Moving bytes between the accepted (downstream) socket and the upstream
// one with TCP semantics intact: pipe() for backpressure (a slow reader
// pauses the fast writer; nothing buffers without bound), allowHalfOpen on
// both sides so a FIN travels on its own, an RST on one side becomes an RST
// on the other, and one idle timer for the pair.
import { connect, type Socket } from 'node:net';
import { splicePumpAvailable, startSplicePump, type PumpResult, type SplicePump } from '../native/splice-pump.js';

export interface ConnectOptions {
  ip: string;
  port: number;
  timeoutMs: number;
  localAddress?: string;
}

export class ConnectError extends Error {
  constructor(readonly code: string, message: string) { super(message); }
}

/** Connect, or fail with a code: ECONNREFUSED, ETIMEDOUT (our timeout), EHOSTUNREACH, ... */
export function connectUpstream(o: ConnectOptions): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host: o.ip, port: o.port, localAddress: o.localAddress, allowHalfOpen: true, noDelay: true });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new ConnectError('ETIMEDOUT', `connect to ${o.ip}:${o.port} timed out after ${o.timeoutMs} ms`));
    }, o.timeoutMs);
    sock.once('connect', () => {
      clearTimeout(timer);
      sock.removeAllListeners('error');
      resolve(sock);
    });
    sock.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(new ConnectError(err.code ?? 'ECONNFAILED', err.message));
    });
  });
}

export interface RelayResult {
  /** downstream → upstream bytes */
  sent: number;
  /** upstream → downstream bytes */
  received: number;
  /** '-' clean; 'DR' downstream reset; 'UR' upstream reset; 'IT' idle timeout; 'DC' drain closed it */
  flags: string;
}

export interface RelayHandle {
  done: Promise<RelayResult>;
  /** Bytes moved so far (for periodic metrics on long connections). */
  progress(): { sent: number; received: number };
  /** Close abruptly (drain timeout). */
  abort(): void;
}

const RESET_CODES = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED']);

export function relay(down: Socket, up: Socket, idleTimeoutMs: number): RelayHandle {
  let flags = '-';
  let resolveDone!: (r: RelayResult) => void;
  const done = new Promise<RelayResult>((r) => { resolveDone = r; });
  let closed = 0;
  const result = () => ({ sent: down.bytesRead, received: up.bytesRead, flags });
  const onClose = () => { if (++closed === 2) resolveDone(result()); };
  down.once('close', onClose);
  up.once('close', onClose);

  // A reset on one side is passed on as a reset: the peer must not mistake
  // a crashed server (or client) for a clean end of stream.
  const onError = (side: 'D' | 'U', other: Socket) => (err: NodeJS.ErrnoException) => {
    if (flags === '-') flags = `${side}R`;
    if (RESET_CODES.has(err.code ?? '')) other.resetAndDestroy();
    else other.destroy();
  };
  down.on('error', onError('D', up));
  up.on('error', onError('U', down));
  // A side that closed without error after both directions finished: make sure the other goes too.
  down.once('close', () => { if (!up.destroyed && !up.writableFinished) up.end(); });
  up.once('close', () => { if (!down.destroyed && !down.writableFinished) down.end(); });

  down.setNoDelay(true);
  // All bytes of the pair pass through `down` (read one way, written the
  // other), so its inactivity timer is the pair's idle timer.
  down.setTimeout(idleTimeoutMs, () => {
    flags = 'IT';
    down.destroy();
    up.destroy();
  });
  down.pipe(up);
  up.pipe(down);
  return {
    done,
    progress: () => ({ sent: down.bytesRead, received: up.bytesRead }),
    abort() {
      if (flags === '-') flags = 'DC';
      down.resetAndDestroy();
      up.resetAndDestroy();
    },
  };
}

const FLAGS_BY_REASON: Record<PumpResult['reason'], string> = {
  closed: '-', 'reset-by-a': 'DR', 'reset-by-b': 'UR', idle: 'IT', aborted: 'DC', error: 'UR',
};

/** Which byte mover this process uses: the kernel (splice, native addon) when available. */
export function pumpMode(requested: 'auto' | 'splice' | 'stream'): 'splice' | 'stream' {
  if (requested === 'stream') return 'stream';
  if (splicePumpAvailable()) return 'splice';
  if (requested === 'splice') throw new Error('--pump splice: the native addon has no splice pump (build it: npm run build:native)');
  return 'stream';
}

/**
 * The same contract as relay(), with the bytes moved by the addon's splice
 * pump (socket → pipe → socket in the kernel, half-close and RST carried
 * over, idle timeout on the pump thread). Node's sockets are handed off and
 * destroyed; the counts come from the pump. Falls back to the stream relay
 * if the handoff is refused (it leaves both sockets untouched then).
 */
export function spliceRelay(down: Socket, up: Socket, idleTimeoutMs: number): RelayHandle {
  let pump;
  try {
    pump = startSplicePump(down, up, { idleTimeoutMs });
  } catch {
    return relay(down, up, idleTimeoutMs);
  }
  return pumpRelay(pump);
}

/** The RelayHandle of a running splice pump (either kind: startSplicePump or startConnectPump). */
export function pumpRelay(p: SplicePump): RelayHandle {
  return {
    done: p.done.then((r) => ({ sent: r.bytesAtoB, received: r.bytesBtoA, flags: FLAGS_BY_REASON[r.reason] ?? 'UR' })),
    progress: () => { const x = p.progress(); return { sent: x.bytesAtoB, received: x.bytesBtoA }; },
    abort: () => p.abort({ reset: true }),
  };
}
