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

// Both inputs are immutable snapshots (a registry update makes a new
// RouteTable, a push new CompiledClusters), so the answer is computed once
// per pair rather than on every request (and every retry, outlier record).
// Callers only read the array.
const cache = new WeakMap<RouteTable, WeakMap<CompiledCluster, Target[]>>();

export function clusterTargets(routes: RouteTable, c: CompiledCluster): Target[] {
  let perTable = cache.get(routes);
  if (!perTable) { perTable = new WeakMap(); cache.set(routes, perTable); }
  let t = perTable.get(c);
  if (!t) { t = computeTargets(routes, c); perTable.set(c, t); }
  return t;
}

function computeTargets(routes: RouteTable, c: CompiledCluster): Target[] {
  if (!c.service) return [];
  const svc = routes.service(c.service);
  const sp = svc?.ports.find((p) => p.port === c.port && p.protocol === 'TCP');
  if (!svc || !sp) return [];
  const all = routes.targets({ service: svc, servicePort: sp });
  return Object.keys(c.selector).length === 0 ? all : all.filter((t) => selectorMatches(c.selector, t.endpoint.labels));
}
