// A compiled cluster's endpoints, from the registry: the Service (or
// ServiceEntry) it names, the service port it is for, and — for a subset —
// only endpoints whose labels carry every key/value of the subset selector.
// Ready endpoints first; serving-but-terminating ones when none is ready.
import type { CompiledCluster } from '../../controlplane/resources.js';
import type { RouteTable, Target } from '../routing.js';

export function selectorMatches(selector: Record<string, string>, labels: Record<string, string> | undefined): boolean {
  for (const [k, v] of Object.entries(selector)) if (labels?.[k] !== v) return false;
  return true;
}

export function clusterTargets(routes: RouteTable, c: CompiledCluster): Target[] {
  if (!c.service) return [];
  const svc = routes.service(c.service);
  const sp = svc?.ports.find((p) => p.port === c.port && p.protocol === 'TCP');
  if (!svc || !sp) return [];
  const all = routes.targets({ service: svc, servicePort: sp });
  return Object.keys(c.selector).length === 0 ? all : all.filter((t) => selectorMatches(c.selector, t.endpoint.labels));
}
