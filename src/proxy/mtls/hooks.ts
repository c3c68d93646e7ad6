// What the chains call into for mesh security — one object on ProxyDeps so
// the TCP chain, the HTTP connection manager and the pools each need a line
// or two, not a rewrite: the inbound gate (before protocol selection), the
// outbound dial wrap, authorization of a TCP connection or an HTTP request,
// and the security labels of Istio's metrics.
import type { Socket } from 'node:net';
import type { IncomingHttpHeaders } from 'node:http';
import type { RegistryEndpoint } from '../../controlplane/types.js';
import { canonicalIp } from '../addr.js';
import type { Conn } from '../context.js';
import type { IstioTcpLabels } from '../metrics.js';
import type { RequestAttributes } from '../../security/evaluate.js';
import { inboundGate, type InboundGateDeps } from './inbound.js';
import { serverPrincipal, upgradeOutbound, type MeshProtocol, type OutboundDeps } from './outbound.js';
import { poolTlsOptions, tlsPlan, type ClusterTlsRef } from './cluster-tls.js';
import type { ConnectionOptions } from 'node:tls';

export interface MeshHooks {
  inbound(conn: Conn): Promise<Conn | undefined>;
  /**
   * `cluster`: the compiled cluster dialled (its DestinationRule tls); none = auto mTLS. `native`: the caller
   * relays with relayNative() when the result is a native TLS side (nativeTlsOf).
   */
  upgrade(up: Socket, ep: RegistryEndpoint | undefined, proto: MeshProtocol, cluster?: ClusterTlsRef, native?: boolean): Promise<Socket>;
  /** For the HTTP pools, whose sockets are made synchronously: TLS options when the endpoint gets (m)TLS. */
  tlsFor(ep: { endpoint?: RegistryEndpoint }, proto: 'h1' | 'h2', cluster?: ClusterTlsRef): ConnectionOptions | undefined;
  authorizeTcp(conn: Conn): boolean;
  authorizeHttp(conn: Conn, req: { method?: string; url?: string; headers: IncomingHttpHeaders }): boolean;
  labels(labels: IstioTcpLabels, conn: Conn, up?: Socket): void;
  /**
   * Whether HTTP on this connection needs nothing from the mesh now, so the native HTTP/1.1 path may serve it
   * (http/native-h1.ts): inbound, plaintext that arrived and no AuthorizationPolicy for this workload; outbound,
   * no workload certificate (auto mTLS cannot apply) and mTLS not required.
   */
  nativeHttp(conn: Conn): boolean;
  /**
   * Whether plaintext inbound TCP to this app port needs nothing from the mesh, so the pump thread may serve it
   * (native-l4/inbound.ts): no STRICT mode on the port and no AuthorizationPolicy for this workload. The port's
   * mode when it may, else undefined. A TLS first byte is still handed to the gate (the native side peeks).
   */
  nativeTcpInbound(port: number): string | undefined;
  /** What the gate counts for a plaintext connection it admitted, for one the native path admitted. */
  countNativeInbound(port: number, n?: number): void;
  /** Called after every change of the enforced security (the native inbound table is re-planned). */
  onSecurityChange(listener: () => void): void;
}

function principalOf(uri: string | undefined): { principal?: string; namespace?: string } {
  if (!uri) return {};
  const m = /^spiffe:\/\/(.+\/ns\/([^/]+)\/sa\/[^/]+)$/.exec(uri);
  return m ? { principal: m[1], namespace: m[2] } : {};
}

export function meshHooks(g: InboundGateDeps, o: OutboundDeps): MeshHooks {
  const attrs = (conn: Conn): RequestAttributes => {
    const p = principalOf(conn.mesh?.peer);
    return { sourcePrincipal: p.principal, sourceNamespace: p.namespace, sourceIp: canonicalIp(conn.peer.replace(/:\d+$/, '').replace(/^\[|\]$/g, '')), destinationIp: conn.dst.ip, destinationPort: conn.dst.port, sni: conn.detection?.sni };
  };
  return {
    inbound: (conn) => inboundGate(g, conn),
    upgrade: (up, ep, proto, cluster, native) => upgradeOutbound(o, up, ep, proto, cluster, native),
    tlsFor(ep, proto, cluster) {
      const plan = tlsPlan(o, cluster, ep.endpoint, proto);
      if (plan.kind === 'fail') g.logger.warn({ cluster: cluster?.host, reason: plan.reason }, 'outbound TLS cannot be set up; the connection will fail');
      return poolTlsOptions(plan);
    },
    authorizeTcp(conn) {
      const d = g.security.decide(g.namespace(), attrs(conn), 'tcp');
      if (!d.allowed && !conn.down.destroyed) conn.down.destroy();
      return d.allowed;
    },
    authorizeHttp(conn, req) {
      const a = attrs(conn);
      a.http = { host: String(req.headers.host ?? req.headers[':authority'] ?? ''), method: req.method ?? '', path: req.url ?? '/', headers: req.headers };
      return g.security.decide(g.namespace(), a, 'http').allowed;
    },
    nativeHttp(conn) {
      if (conn.direction === 'outbound') return !o.required && o.identity.current() === undefined;
      if (conn.mesh) return false;
      return !g.security.hasAuthorization(g.namespace());
    },
    nativeTcpInbound(port) {
      const mode = g.security.mode(g.namespace(), port);
      return mode === 'STRICT' || g.security.hasAuthorization(g.namespace()) ? undefined : mode;
    },
    countNativeInbound(port, n = 1) {
      g.security.inbound.inc({ mode: g.security.mode(g.namespace(), port), outcome: 'plaintext' }, n);
    },
    onSecurityChange: (listener) => g.security.onChange(listener),
    labels(l, conn, up) {
      if (conn.direction === 'inbound') {
        if (!conn.mesh) return;
        l.connection_security_policy = 'mutual_tls';
        l.source_principal = conn.mesh.peer;
        l.destination_principal = conn.mesh.local;
        return;
      }
      const server = up && serverPrincipal(up);
      if (!server) return;
      l.source_principal = g.identity.spiffeId ?? 'unknown';
      l.destination_principal = server;
    },
  };
}
