// Where one HTTP request goes (the router's decision, before any
// connection): outbound by Host/:authority and port — a headless service
// means the pod IP the client dialled, a passthrough keeps the original
// destination — and inbound to the app on the dialled port from 127.0.0.6.
// Also which protocol the upstream hop speaks.
import { clusterName, inboundClusterName } from '../../istio/hosts.js';
import type { RegistryEndpoint } from '../../controlplane/types.js';
import { canonicalIp, hostPort } from '../addr.js';
import type { Conn, ProxyDeps } from '../context.js';
import { upstreamIsH2, declaredProtocol } from '../protocol/declared.js';
import type { UpstreamProtocol } from './upstream.js';

export interface RouteTarget { ip: string; port: number; endpoint?: RegistryEndpoint }

export interface RouteDecision {
  kind: 'service' | 'passthrough' | 'inbound';
  /** Envoy-style cluster name: outbound|80||svc.ns.svc.cluster.local, PassthroughCluster, inbound|8080||. */
  cluster: string;
  routeName: string;
  targets: RouteTarget[];
  service?: { name: string; namespace: string; fqdn: string };
  /** Protocol for an endpoint (h2 to weir peers and h2 apps; HTTP/1.1 otherwise). */
  protocolFor(t: RouteTarget): UpstreamProtocol;
  localAddress?: string;
  /** Outbound only: the upstream is (probably) a weir proxy that exchanges metadata. */
  meshPeer: boolean;
}

export function decideRoute(d: ProxyDeps, conn: Conn, authority: string | undefined, downstream: 'h1' | 'h2', grpc: boolean, peerProtocol: string | undefined, h2Refused: (t: RouteTarget) => boolean): RouteDecision {
  const { dst } = conn;
  const routes = d.routes();
  if (conn.direction === 'inbound') {
    const declared = declaredProtocol(routes.inboundPort(dst.ip, dst.port));
    // The app speaks what its port declares; undeclared, what the original client spoke (a weir peer says which).
    const h2 = upstreamIsH2(declared) || grpc || (declared === undefined && (peerProtocol ? peerProtocol === 'h2' : downstream === 'h2'));
    const ip = canonicalIp(dst.ip).includes(':') ? '::1' : '127.0.0.1';
    return {
      kind: 'inbound', cluster: inboundClusterName(dst.port), routeName: 'default', targets: [{ ip, port: dst.port }],
      protocolFor: (t) => (h2 && !h2Refused(t) ? 'h2' : 'h1'),
      localAddress: ip === '127.0.0.1' ? d.config.inboundSourceV4 : undefined, meshPeer: false,
    };
  }
  const hosts = d.hosts();
  const byIp = routes.lookup(dst.ip, dst.port);
  const byHost = hosts.lookup(authority, dst.port);
  const route = byHost ?? undefined;
  if (route) {
    const svc = route.service;
    const fqdn = `${svc.name}.${svc.namespace}.svc.${routes.clusterDomain}`;
    let targets: RouteTarget[];
    if (svc.kind === 'Headless') {
      // Headless: the pod the client resolved and dialled, if it is one of the service's.
      targets = byIp?.service === svc && byIp.headlessIp ? routes.targets(byIp) : [];
    } else {
      targets = routes.targets({ service: svc, servicePort: route.servicePort });
    }
    return {
      kind: 'service', cluster: clusterName(route.servicePort.port, undefined, fqdn), routeName: `${fqdn}:${route.servicePort.port}`,
      targets, service: { name: svc.name, namespace: svc.namespace, fqdn },
      // Mesh endpoints have a weir proxy in front of them: talk HTTP/2 to it (multiplexed), unless it turned out not to speak it.
      protocolFor: (t) => (h2Refused(t) ? 'h1' : 'h2'),
      meshPeer: true,
    };
  }
  // Unknown host: on to the original destination, still as HTTP (telemetry, retries on connect failure).
  return {
    kind: 'passthrough', cluster: 'PassthroughCluster', routeName: 'allow_any', targets: [{ ip: dst.ip, port: dst.port }],
    protocolFor: (t) => (downstream === 'h2' && !h2Refused(t) ? 'h2' : 'h1'),
    meshPeer: routes.podByIp(dst.ip) !== undefined,
  };
}

export function targetName(t: RouteTarget): string {
  return hostPort(t.ip, t.port);
}
