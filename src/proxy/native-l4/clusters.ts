// The registry's service ports as native clusters (src/native/cluster-table.ts):
// one cluster per service port, named as the TCP chain names it
// (outbound|port||host), with the ready endpoints RouteTable.targets gives
// (serving+terminating ones when none is ready, as the JS path does). Every
// registry update pushes the whole set again; the native side keeps the
// in-flight counts of endpoints that stay.
import { clusterName } from '../../istio/hosts.js';
import type { ClusterSpec } from '../../native/cluster-table.js';
import type { Route, RouteTable, Target } from '../routing.js';

export interface RegistryCluster { spec: ClusterSpec; targets: Target[] }

export function serviceHost(route: Route, routes: RouteTable): string {
  return `${route.service.name}.${route.service.namespace}.svc.${routes.clusterDomain}`;
}

/** name → cluster, for every non-headless service port (headless IP:port routes name one pod: the JS path keeps them). */
export function registryClusters(routes: RouteTable, opts: { connectTimeoutMs: number; connectAttempts: number }): Map<string, RegistryCluster> {
  const out = new Map<string, RegistryCluster>();
  for (const { route } of routes.allRoutes()) {
    if (route.headlessIp) continue;
    const name = clusterName(route.servicePort.port, undefined, serviceHost(route, routes));
    if (out.has(name)) continue; // one service, several VIPs (dual stack)
    const targets = routes.targets(route);
    out.set(name, {
      targets,
      spec: {
        name, lbPolicy: 'LEAST_REQUEST', connectTimeoutMs: opts.connectTimeoutMs,
        maxAttempts: Math.max(1, Math.min(opts.connectAttempts, 64)),
        endpoints: targets.map((t) => ({ ip: t.ip, port: t.port })),
      },
    });
  }
  return out;
}
