// What the native accept path may take on its own, as the L4 route table
// pushed to the addon (src/native/l4-accept.ts) together with the clusters
// (./clusters.ts). A destination is native only when the JavaScript chain
// would do nothing with it but route, dial and splice: a service port
// declared opaque (tcp, tls, mongo, ...), not headless, at least one
// endpoint, no endpoint that would get outbound mesh mTLS, and — when the
// port has compiled tcp/tls routes (VirtualService / the control plane's
// default route) — a route that resolves to one cluster with a plain
// policy: LEAST_REQUEST / ROUND_ROBIN / RANDOM, no consistent hash or
// PASSTHROUGH, no outlier detection, no maxConnections, no TLS
// origination. Weighted splits, limits and outlier state stay in
// JavaScript. Unknown destinations pass through natively only on
// server-first ports (which JavaScript never sniffs either) and only under
// ALLOW_ANY. Every other route is an explicit 'js' entry, so a port-wide
// rule never catches a known service. Inbound: ./inbound.ts.
import type { L4RouteTable } from '../../native/l4-accept.js';
import type { ClusterSpec, LbPolicy } from '../../native/cluster-table.js';
import { clusterName } from '../../istio/hosts.js';
import { wantsMtls } from '../mtls/outbound.js';
import { declaredProtocol, SERVER_FIRST_PORTS } from '../protocol/declared.js';
import type { ProxyDeps } from '../context.js';
import type { Route, RouteTable, Target } from '../routing.js';
import { l4RouteFor, l4ServiceFor } from '../tcp/l4-routes.js';
import { registryClusters, serviceHost, type RegistryCluster } from './clusters.js';
import { planNativeInbound, type NativeInbound } from './inbound.js';

/** The service labels a native connection to one VIP:port gets (setServiceLabels' four fields), and its declared protocol. */
export interface NativeService { host: string; name: string; namespace: string; protocol?: string }

export interface NativeL4Plan {
  table: L4RouteTable;
  clusters: Map<string, RegistryCluster>;
  /** "ip|port" → service labels, for the routes made native. */
  services: Map<string, NativeService>;
  /** "ip|port" of this pod → how natively served inbound connections are counted. */
  inbound: Map<string, NativeInbound>;
  nativeRoutes: number;
}

const LB: Record<string, LbPolicy | undefined> = { '': 'LEAST_REQUEST', LEAST_REQUEST: 'LEAST_REQUEST', LEAST_CONN: 'LEAST_REQUEST', ROUND_ROBIN: 'ROUND_ROBIN', RANDOM: 'RANDOM', UNSPECIFIED: 'LEAST_REQUEST' };

function plainTargets(d: ProxyDeps, targets: Target[]): boolean {
  return targets.length > 0 && !(d.mesh && targets.some((t) => wantsMtls(t.endpoint)));
}

/** The compiled route's one cluster, when native code can do all it asks; undefined = JavaScript's. */
function compiledCluster(d: ProxyDeps, ip: string, port: number, routes: RouteTable): { cluster: RegistryCluster; service: NativeService } | undefined {
  const svc = l4ServiceFor(d.compiled.l4Services(port), { ip, port, sourceLabels: d.podLabels, sourceNamespace: d.identity().namespace });
  if (!svc) return undefined;
  const req = { ip, port, sourceLabels: d.podLabels, sourceNamespace: d.identity().namespace };
  const hit = l4RouteFor(svc, req);
  if (!hit || hit.route.route.length !== 1) return undefined; // a weighted split is picked per connection in JavaScript
  const rt = d.clusters.get(hit.cluster.cluster);
  if (!rt) return undefined;
  const c = rt.compiled;
  const lb = LB[c.loadBalancer.simple ?? ''];
  if (!lb || c.loadBalancer.consistentHash || c.outlierDetection || c.connectionPool.maxConnections !== undefined) return undefined;
  if (c.tls && c.tls.mode !== 'AUTO' && c.tls.mode !== 'DISABLE') return undefined;
  const targets = rt.targets(routes);
  if (c.tls?.mode !== 'DISABLE' && !plainTargets(d, targets)) return undefined;
  if (targets.length === 0) return undefined;
  const [ns, name] = (c.service ?? `/${svc.host}`).split('/');
  const spec: ClusterSpec = {
    name: c.name, lbPolicy: lb, connectTimeoutMs: c.connectionPool.connectTimeoutMs,
    maxAttempts: Math.max(1, Math.min(d.config.connectAttempts, 64)), endpoints: targets.map((t) => ({ ip: t.ip, port: t.port })),
  };
  return { cluster: { spec, targets }, service: { host: svc.host, name, namespace: ns || 'unknown' } };
}

function registryService(route: Route, routes: RouteTable): NativeService {
  return { host: serviceHost(route, routes), name: route.service.name, namespace: route.service.namespace };
}

export function planNativeL4(d: ProxyDeps, routes: RouteTable): NativeL4Plan {
  const cfg = d.config;
  const registry = registryClusters(routes, cfg);
  const clusters = new Map<string, RegistryCluster>();
  const services = new Map<string, NativeService>();
  const table: L4RouteTable = {
    exact: {}, byPort: {}, ownPorts: [cfg.outboundPort, cfg.inboundPort], maxConnections: cfg.maxConnections,
    idleTimeoutMs: cfg.idleTimeoutMs, passthroughConnectTimeoutMs: cfg.connectTimeoutMs,
    inboundSourceV4: cfg.inboundSourceV4, inboundConnectTimeoutMs: cfg.connectTimeoutMs, inboundPeekTimeoutMs: cfg.inboundProtocolDetectionTimeoutMs,
    // Only the access log needs each connection; metrics are the same from aggregated series (outcomes.ts fold).
    aggregate: !d.accessLog.enabled,
  };
  let nativeRoutes = 0;
  for (const { ip, port, route } of routes.allRoutes()) {
    const key = `o|${ip}|${port}`;
    table.exact[key] = { kind: 'js' };
    const declared = declaredProtocol(route.servicePort);
    if ((declared !== 'tcp' && declared !== 'tls') || route.headlessIp) continue;
    let chosen: { cluster: RegistryCluster; service: NativeService } | undefined;
    if (d.compiled.l4Services(port).length > 0) {
      // The TCP chain asks the compiled routes first; with none for this address it falls back to the registry route.
      const svcHere = l4ServiceFor(d.compiled.l4Services(port), { ip, port, sourceLabels: d.podLabels, sourceNamespace: d.identity().namespace });
      if (svcHere) chosen = compiledCluster(d, ip, port, routes);
      else if (registry.get(clusterName(route.servicePort.port, undefined, serviceHost(route, routes)))) {
        const c = registry.get(clusterName(route.servicePort.port, undefined, serviceHost(route, routes)))!;
        chosen = plainTargets(d, c.targets) ? { cluster: c, service: registryService(route, routes) } : undefined;
      }
    } else {
      const c = registry.get(clusterName(route.servicePort.port, undefined, serviceHost(route, routes)));
      chosen = c && plainTargets(d, c.targets) ? { cluster: c, service: registryService(route, routes) } : undefined;
    }
    if (!chosen) continue;
    clusters.set(chosen.cluster.spec.name, chosen.cluster);
    services.set(`${ip}|${port}`, { ...chosen.service, protocol: declared });
    table.exact[key] = { kind: 'cluster', cluster: chosen.cluster.spec.name, reason: 'declared' };
    nativeRoutes++;
  }
  if (d.compiled.outboundTrafficPolicy !== 'REGISTRY_ONLY') {
    for (const port of SERVER_FIRST_PORTS) {
      if (d.compiled.l4Services(port).length === 0) table.byPort[`o|${port}`] = { kind: 'original', cluster: 'PassthroughCluster', reason: 'server_first_port' };
    }
  }
  // Every registry cluster too (the native HTTP path picks from them), the native routes' own taking precedence.
  for (const [name, c] of registry) if (!clusters.has(name)) clusters.set(name, c);
  const inbound = planNativeInbound(d, routes);
  Object.assign(table.exact, inbound.exact);
  nativeRoutes += inbound.ports.size;
  return { table, clusters, services, inbound: inbound.ports, nativeRoutes };
}
