// Mesh mTLS for opaque TCP in native code (native/src/tls_relay.h): the
// handshake, the peer check and the byte relay run on the addon's thread
// with Node's own OpenSSL, so a long stream costs what HAProxy's does, not a
// trip through node:tls streams per chunk. HTTP over mTLS stays in node:tls
// (HTTP is parsed in JavaScript). The rules are the node:tls path's:
//   outbound: TLS 1.3, ALPN istio-peer-exchange,istio, the server must chain
//     to the mesh roots and be the endpoint's service account (any identity
//     of this trust domain when the registry does not say);
//   inbound: the client certificate is required and verified, its SPIFFE ID
//     must be of this trust domain; the chain's AuthorizationPolicy check
//     runs on it before a single byte reaches the app.
// A rotated certificate gives a new OpenSSL context for new handshakes only;
// open sessions keep a reference to theirs.
import type { Socket } from 'node:net';
import { Counter, type Registry } from 'prom-client';
import { spiffeIdFromUris, type SpiffeId } from '../../mtls/spiffe.js';
import type { WorkloadIdentity } from '../../mtls/workload-identity.js';
import { createTlsContext, NativeTlsSession, tlsRelayAvailable, tlsRelayStats, type TlsContext } from '../../native/tls-relay.js';
import { MESH_ALPN_TCP } from './client-hello.js';
import { NativeTlsSocket } from './native-socket.js';

export type MtlsEngine = 'auto' | 'native' | 'node';

/** Whether a ClientHello's ALPN offer is mesh TCP only (no istio-h2/istio-http: those are for the HTTP chain). */
export function isMeshTcpAlpn(offered: string[]): boolean {
  return offered.length > 0 && offered.every((p) => MESH_ALPN_TCP.includes(p));
}

export class NativeMeshTls {
  private client?: { serial: string; ctx: TlsContext };
  private server?: { serial: string; ctx: TlsContext };
  private readonly sessions: Counter<'role' | 'outcome'>;

  constructor(private readonly trustDomain: string, private readonly handshakeTimeoutMs: number, metrics: Registry) {
    this.sessions = new Counter({
      name: 'weir_mtls_native_sessions_total',
      help: 'Mesh mTLS connections handled by the native TLS relay, by role (client: outbound, server: inbound) and handshake outcome',
      labelNames: ['role', 'outcome'], registers: [metrics],
    });
  }

  private context(wi: WorkloadIdentity, server: boolean): TlsContext {
    const c = wi.credentials();
    const held = server ? this.server : this.client;
    if (held?.serial === c.serial) return held.ctx;
    const ctx = createTlsContext({ server, cert: c.cert, key: c.key, roots: c.ca, alpn: MESH_ALPN_TCP });
    if (server) this.server = { serial: c.serial, ctx }; else this.client = { serial: c.serial, ctx };
    return ctx;
  }

  /** Outbound: mTLS on the connected `up` (taken over). Rejects when the handshake fails or the server is not `expected`. */
  async connect(wi: WorkloadIdentity, up: Socket, expected: string[] | undefined): Promise<NativeTlsSocket> {
    const at = { remoteAddress: up.remoteAddress, remotePort: up.remotePort, localAddress: up.localAddress, localPort: up.localPort };
    const session = new NativeTlsSession(this.context(wi, false), up, { server: false, handshakeTimeoutMs: this.handshakeTimeoutMs });
    const peer = await this.verified(session, 'client', (id) =>
      expected ? (expected.includes(id.uri) ? undefined : `server is ${id.uri}, expected ${expected.join(' or ')}`)
        : id.trustDomain === this.trustDomain ? undefined : `server trust domain ${id.trustDomain} is not ${this.trustDomain}`);
    return new NativeTlsSocket(session, peer.id.uri, peer.alpn, at);
  }

  /** Inbound: the server handshake on `down` (taken over, the peeked ClientHello included). Rejects with the reason it failed. */
  async accept(wi: WorkloadIdentity, down: Socket): Promise<NativeTlsSocket> {
    const at = { remoteAddress: down.remoteAddress, remotePort: down.remotePort, localAddress: down.localAddress, localPort: down.localPort };
    const session = new NativeTlsSession(this.context(wi, true), down, { server: true, handshakeTimeoutMs: this.handshakeTimeoutMs });
    const peer = await this.verified(session, 'server', (id) =>
      id.trustDomain === this.trustDomain ? undefined : `peer trust domain ${id.trustDomain} is not ${this.trustDomain}`);
    return new NativeTlsSocket(session, peer.id.uri, peer.alpn, at);
  }

  private async verified(session: NativeTlsSession, role: 'client' | 'server', check: (id: SpiffeId) => string | undefined): Promise<{ id: SpiffeId; alpn: string }> {
    let h;
    try {
      h = await session.handshake;
    } catch (e) {
      this.sessions.inc({ role, outcome: 'handshake_failed' });
      throw e;
    }
    const id = spiffeIdFromUris(h.peerUris);
    const why = id instanceof Error ? id.message : check(id);
    if (why !== undefined || id instanceof Error) {
      // Nothing was relayed: the session is still waiting for attach().
      session.abort(true);
      this.sessions.inc({ role, outcome: 'bad_peer_identity' });
      throw new Error(why);
    }
    this.sessions.inc({ role, outcome: 'ok' });
    return { id, alpn: h.alpn };
  }

  stats(): Record<string, unknown> | undefined {
    return tlsRelayStats() as Record<string, unknown> | undefined;
  }
}

/** The native relay when the engine setting and the addon allow it (auto: when built); 'native' without it is an error. */
export function nativeMeshTls(engine: MtlsEngine, trustDomain: string, handshakeTimeoutMs: number, metrics: Registry): NativeMeshTls | undefined {
  if (engine === 'node') return undefined;
  if (!tlsRelayAvailable()) {
    if (engine === 'native') throw new Error('--mtls-engine native: the native addon has no TLS relay (build it: npm run build:native)');
    return undefined;
  }
  return new NativeMeshTls(trustDomain, handshakeTimeoutMs, metrics);
}
