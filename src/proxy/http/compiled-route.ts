// Route selection over a compiled route table (one per outbound port):
// the virtual host whose domains contain the request's Host/:authority
// (exact, case-insensitive, trailing dot ignored), then the first route
// whose matches accept the request — VirtualService order, as Istio
// promises — then one of its weighted clusters.
import type { CompiledHttpRoute, CompiledRouteTable, CompiledVirtualHost, WeightedCluster } from '../../controlplane/resources.js';
import type { HttpMatch } from '../../istio/types.js';
import { matchOne, type MatchInput } from './match.js';

const domainIndex = new WeakMap<CompiledRouteTable, Map<string, CompiledVirtualHost>>();

function indexOf(table: CompiledRouteTable): Map<string, CompiledVirtualHost> {
  let m = domainIndex.get(table);
  if (!m) {
    m = new Map();
    // First virtual host listing a domain wins (the translator orders them).
    for (const vh of table.virtualHosts) for (const d of vh.domains) if (!m.has(d.toLowerCase())) m.set(d.toLowerCase(), vh);
    domainIndex.set(table, m);
  }
  return m;
}

export function virtualHostFor(table: CompiledRouteTable, authority: string | undefined): CompiledVirtualHost | undefined {
  if (!authority) return undefined;
  const a = authority.trim().toLowerCase();
  const m = indexOf(table);
  return m.get(a) ?? m.get(a.replace(/\.(:\d+)?$/, '$1'));
}

/** The first route that matches, and which of its matches did (rewrite needs it). */
export function routeFor(vh: CompiledVirtualHost, r: MatchInput): { route: CompiledHttpRoute; match?: HttpMatch } | undefined {
  for (const route of vh.routes) {
    if (route.match.length === 0) return { route };
    const m = route.match.find((x) => matchOne(x, r));
    if (m) return { route, match: m };
  }
  return undefined;
}

/** A weighted pick (weights need not add up to 100). */
export function pickWeighted(clusters: WeightedCluster[], rnd = Math.random()): WeightedCluster | undefined {
  const total = clusters.reduce((n, c) => n + c.weight, 0);
  if (total <= 0) return clusters[0];
  let x = rnd * total;
  for (const c of clusters) { if (x < c.weight) return c; x -= c.weight; }
  return clusters[clusters.length - 1];
}
