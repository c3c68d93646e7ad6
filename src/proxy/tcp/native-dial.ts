// The TCP chain's short path: the client socket goes to a pump that dials
// the upstream on the addon's pump thread (startConnectPump), so a plain
// TCP connection costs the JavaScript thread the routing decision and two
// small callbacks, and no upstream net.Socket, libuv handle or connect()
// from JS. Retries follow the chain's policy: each failed connect comes
// back here with its errno code, and the next endpoint is dialled by the
// same pump, which holds the client meanwhile. Everything else (labels,
// metrics, the access log) is the chain's, through DialPath.
import { startConnectPump, type ConnectPump } from '../../native/splice-pump.js';
import type { Conn } from '../context.js';
import { canonicalIp, hostPort } from '../addr.js';
import { ConnectError, pumpRelay, type RelayHandle } from '../relay.js';
import type { Upstream } from './chain.js';

export interface DialPath {
  conn: Conn;
  targets: Upstream[];
  cluster: string;
  attempts: number;
  connectTimeoutMs: number;
  idleTimeoutMs: number;
  /** Next endpoint, added to `tried`. */
  pick(tried: Set<string>): Upstream | undefined;
  acquire(t: Upstream): () => void;
  retried(): void;
  failed(t: Upstream, err: ConnectError): void;
  relayed(t: Upstream, handle: RelayHandle, upLocal: string | undefined, release: () => void): Promise<'done'>;
  allFailed(lastErr: ConnectError | undefined, tried: number): 'done';
}

/** undefined = nothing was taken (the client socket refused the handoff): the caller dials with Node. */
export async function dialNative(p: DialPath, localAddress: string | undefined): Promise<'done' | undefined> {
  const tried = new Set<string>();
  let pump: ConnectPump | undefined;
  let lastErr: ConnectError | undefined;
  for (let i = 0; i < p.attempts; i++) {
    const t = p.pick(tried);
    if (!t) break;
    const release = p.acquire(t);
    const target = { ip: t.ip, port: t.port, localAddress, connectTimeoutMs: p.connectTimeoutMs };
    let outcome;
    if (!pump) {
      try {
        pump = startConnectPump(p.conn.down, target, { idleTimeoutMs: p.idleTimeoutMs });
      } catch {
        release();
        return undefined;
      }
      outcome = await pump.connected;
    } else {
      p.retried();
      outcome = await pump.redial(target);
    }
    if (outcome.ok) {
      const upLocal = outcome.localAddress ? hostPort(canonicalIp(outcome.localAddress), outcome.localPort ?? 0) : undefined;
      return p.relayed(t, pumpRelay(pump), upLocal, release);
    }
    release();
    lastErr = new ConnectError(outcome.code, outcome.message);
    p.failed(t, lastErr);
    if (outcome.code === 'ECONNABORTED') break; // the pump (and the client with it) is gone
  }
  // The pump still holds the client: a refused upstream becomes a reset for it, as in the Node path.
  pump?.abort({ reset: true });
  return p.allFailed(lastErr, tried.size);
}
