// Protocol selection for one connection, before any chain sees it: the
// Service port's declaration (appProtocol, name prefix), then sniffing.
// Declared tcp/tls (and https, mongo, mysql, redis) go straight to the TCP
// chain; undeclared server-first ports are never sniffed; declared HTTP
// ports are still sniffed, so a client that is not speaking HTTP after
// all (or a server-first protocol behind an "http" name) still works as TCP.
import type { Conn, ProxyDeps } from '../context.js';
import { declaredProtocol, SERVER_FIRST_PORTS } from './declared.js';
import { sniff } from './sniff.js';

export type Chain = 'tcp' | 'h1' | 'h2';

export async function selectChain(d: ProxyDeps, conn: Conn): Promise<Chain> {
  const routes = d.routes();
  const { ip, port } = conn.dst;
  const servicePort = conn.direction === 'outbound' ? routes.lookup(ip, port)?.servicePort : routes.inboundPort(ip, port);
  const declared = declaredProtocol(servicePort);
  const count = (protocol: string, reason: string) => d.metrics.detected.inc({ direction: conn.direction, protocol, reason });
  // Mesh TCP terminated by the native TLS relay: its plaintext never comes to JavaScript, and its ALPN said TCP.
  if (conn.mesh?.native) { count('tcp', 'mesh_alpn'); return 'tcp'; }
  if (declared === 'tcp' || declared === 'tls') { count(declared, 'declared'); return 'tcp'; }
  // TPROXY inbound keeps the client's address all the way to the app; the HTTP chain's pooled
  // connections to the app cannot (they are not per client), so TPROXY inbound stays TCP for now.
  if (conn.tproxied) { count('tcp', 'tproxy'); return 'tcp'; }
  if (declared === undefined && SERVER_FIRST_PORTS.has(port)) { count('tcp', 'server_first_port'); return 'tcp'; }
  const det = await sniff(conn.down, conn.direction === 'outbound' ? d.config.protocolDetectionTimeoutMs : d.config.inboundProtocolDetectionTimeoutMs);
  conn.detection = det;
  count(det.protocol, det.reason);
  if (det.protocol === 'h2') return 'h2';
  if (det.protocol === 'http1') return 'h1';
  return 'tcp';
}
