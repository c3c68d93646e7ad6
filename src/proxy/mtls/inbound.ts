// Inbound (15006) before protocol selection: what the first bytes are
// decides who handles them, per the PeerAuthentication mode of the port.
//   TLS ClientHello offering an istio-* ALPN → mesh mTLS: terminated here
//     with this workload's certificate, client certificate required and
//     verified against the mesh roots; the app then gets plaintext.
//   TLS without mesh ALPN (the app's own TLS) → passed through untouched
//     (PERMISSIVE), refused under STRICT (it is not mesh-authenticated).
//   Anything else (plaintext) → PERMISSIVE/DISABLE: admitted; STRICT: refused.
// DISABLE never terminates: mesh TLS goes to the app as is, like Istio.
import { createServer, type Server, type TLSSocket } from 'node:tls';
import type { Socket } from 'node:net';
import type { WorkloadIdentity } from '../../mtls/workload-identity.js';
import type { Logger } from '../../common/log.js';
import { peerSpiffeId } from '../../mtls/spiffe.js';
import type { Conn } from '../context.js';
import { alpnFromClientHello, isMeshAlpn, MESH_ALPN_SERVER, peekRecord } from './client-hello.js';
import type { MeshIdentity } from './mesh-identity.js';
import type { SecurityState } from './security-state.js';
import { isMeshTcpAlpn, type NativeMeshTls } from './native-tls.js';
import { asSocket } from './native-socket.js';

export interface InboundGateDeps {
  identity: MeshIdentity;
  security: SecurityState;
  namespace(): string;
  trustDomain: string;
  logger: Logger;
  /** How long to wait for a client's first bytes (STRICT waits for a ClientHello this long). */
  peekTimeoutMs: number;
  handshakeTimeoutMs: number;
  /** Opaque TCP over mTLS in native code (native-tls.ts); absent: node:tls for everything. */
  native?: NativeMeshTls;
}

/** The mesh facts of one inbound connection after the gate. */
export interface MeshPeer { peer: string; local: string; alpn: string; /** `down` is held by the native TLS relay: opaque TCP, no sniffing */ native?: boolean }

export async function inboundGate(g: InboundGateDeps, conn: Conn): Promise<Conn | undefined> {
  const mode = g.security.mode(g.namespace(), conn.dst.port);
  const buf = await peekRecord(conn.down, mode === 'STRICT' ? Math.max(g.peekTimeoutMs, 10_000) : g.peekTimeoutMs);
  const refuse = (outcome: string, why: string) => {
    g.security.inbound.inc({ mode, outcome });
    g.logger.info({ downstream: conn.peer, port: conn.dst.port, mode, why }, 'inbound connection refused');
    if (!conn.down.destroyed) conn.down.resetAndDestroy();
    return undefined;
  };
  const tls = buf.length > 0 && buf[0] === 0x16;
  const alpn = tls ? alpnFromClientHello(buf) ?? [] : [];
  if (mode === 'DISABLE' || !tls || !isMeshAlpn(alpn)) {
    if (mode === 'STRICT') return refuse(tls ? 'refused_tls' : 'refused_plaintext', tls ? 'TLS without mesh ALPN under STRICT' : 'plaintext under STRICT');
    g.security.inbound.inc({ mode, outcome: tls ? 'passthrough_tls' : 'plaintext' });
    return conn;
  }
  const wi = g.identity.current();
  if (!wi) return refuse('no_certificate', 'mesh mTLS offered but this proxy has no workload certificate yet');
  const down = conn.down;
  if (g.native && isMeshTcpAlpn(alpn)) {
    // Mesh TCP (istio-peer-exchange/istio): the addon terminates it; the chain authorizes before anything is relayed.
    const t = await g.native.accept(wi, down).catch((e: Error) => e);
    if (t instanceof Error) {
      if (!down.destroyed) down.resetAndDestroy();
      g.security.inbound.inc({ mode, outcome: 'handshake_failed' });
      g.logger.debug({ err: t.message, downstream: conn.peer }, 'inbound mTLS handshake failed (native)');
      return undefined;
    }
    g.security.inbound.inc({ mode, outcome: 'mtls' });
    return { ...conn, down: asSocket(t), mesh: { peer: t.peer, local: g.identity.spiffeId ?? '', alpn: t.alpn, native: true } };
  }
  const sock = await terminator(g, wi).terminate(down);
  if (!sock) {
    if (!down.destroyed) down.resetAndDestroy();
    g.security.inbound.inc({ mode, outcome: 'handshake_failed' });
    return undefined;
  }
  const id = peerSpiffeId(sock.getPeerCertificate());
  if (id instanceof Error || id.trustDomain !== g.trustDomain) {
    sock.destroy();
    return refuse('bad_peer_identity', id instanceof Error ? id.message : `peer trust domain ${id.trustDomain} is not ${g.trustDomain}`);
  }
  sock.on('error', () => { /* the chain that takes it handles errors its own way */ });
  g.security.inbound.inc({ mode, outcome: 'mtls' });
  // The TLS socket is born flowing-capable; the chains expect a paused socket (as accepted with pauseOnConnect).
  sock.pause();
  return { ...conn, down: sock as unknown as Conn['down'], mesh: { peer: id.uri, local: g.identity.spiffeId ?? '', alpn: String(sock.alpnProtocol || '') } };
}

/**
 * Server-side TLS through a (never listening) tls.Server: it owns client
 * certificate verification (the verify result of the handshake, which a bare
 * TLSSocket does not expose) and swaps its context when the workload
 * certificate rotates, for new handshakes only.
 */
class Terminator {
  private serial = '';
  private readonly server: Server;
  private readonly waiting = new Map<string, (s: TLSSocket | undefined) => void>();

  constructor(private readonly wi: WorkloadIdentity, handshakeTimeoutMs: number, private readonly logger: Logger) {
    this.server = createServer({ ...wi.serverOptions(MESH_ALPN_SERVER), handshakeTimeout: handshakeTimeoutMs });
    this.serial = wi.credentials().serial;
    this.server.on('secureConnection', (s: TLSSocket) => this.settle(s, s));
    this.server.on('tlsClientError', (err: Error, s: TLSSocket) => {
      this.logger.debug({ err: err.message, downstream: `${s.remoteAddress}:${s.remotePort}` }, 'inbound mTLS handshake failed');
      this.settle(s, undefined);
    });
  }

  private settle(s: TLSSocket, result: TLSSocket | undefined): void {
    const key = `${s.remoteAddress}|${s.remotePort}`;
    const done = this.waiting.get(key);
    if (!done) { s.destroy(); return; }
    this.waiting.delete(key);
    done(result);
  }

  terminate(raw: Socket): Promise<TLSSocket | undefined> {
    const serial = this.wi.credentials().serial;
    if (serial !== this.serial) {
      this.server.setSecureContext(this.wi.serverOptions(MESH_ALPN_SERVER));
      this.serial = serial;
    }
    const key = `${raw.remoteAddress}|${raw.remotePort}`;
    return new Promise((resolve) => {
      this.waiting.set(key, resolve);
      // The peer left before the handshake finished: no event from the server may follow.
      raw.once('close', () => { if (this.waiting.get(key) === resolve) { this.waiting.delete(key); resolve(undefined); } });
      this.server.emit('connection', raw);
    });
  }
}

const terminators = new WeakMap<WorkloadIdentity, Terminator>();
function terminator(g: InboundGateDeps, wi: WorkloadIdentity): Terminator {
  let t = terminators.get(wi);
  if (!t) terminators.set(wi, (t = new Terminator(wi, g.handshakeTimeoutMs, g.logger)));
  return t;
}
