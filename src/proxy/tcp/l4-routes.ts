// VirtualService tcp / tls routes for opaque traffic (CompiledL4Service):
// the service is the one whose address the client dialled on that port —
// or, for TLS, whose host the ClientHello's SNI names — and its routes are
// tried in order: destinationSubnets (the dialled IP within one of them),
// sourceLabels / sourceNamespace (this proxy's pod), sniHosts (exact or
// "*.suffix"). The first route that matches picks a weighted cluster; the
// compiled list always ends with the service's own default route.
import type { CompiledL4Route, CompiledL4Service, WeightedCluster } from '../../controlplane/resources.js';
import type { L4Match } from '../../istio/types.js';
import { cidrContains, parseCidr } from '../../redirect/addr.js';
import { canonicalIp } from '../addr.js';
import { pickWeighted } from '../http/compiled-route.js';

export interface L4Request { ip: string; port: number; sni?: string; sourceLabels: Record<string, string>; sourceNamespace: string }

export function sniMatches(pattern: string, sni: string): boolean {
  const p = pattern.toLowerCase();
  const s = sni.toLowerCase();
  if (p === '*') return true;
  if (p.startsWith('*.')) return s.endsWith(p.slice(1)) && s.length > p.length - 1;
  return p === s;
}

function matchOne(m: L4Match, r: L4Request): boolean {
  if (m.port !== undefined && m.port !== r.port) return false;
  if (m.destinationSubnets?.length) {
    const ip = parseCidr(r.ip);
    if (!ip || !m.destinationSubnets.some((s) => { const c = parseCidr(s); return c !== undefined && cidrContains(c, ip); })) return false;
  }
  for (const [k, v] of Object.entries(m.sourceLabels ?? {})) if (r.sourceLabels[k] !== v) return false;
  if (m.sourceNamespace !== undefined && m.sourceNamespace !== r.sourceNamespace) return false;
  if (m.sniHosts?.length && (!r.sni || !m.sniHosts.some((h) => sniMatches(h, r.sni!)))) return false;
  return true;
}

export function l4ServiceFor(services: CompiledL4Service[], r: L4Request): CompiledL4Service | undefined {
  const ip = canonicalIp(r.ip);
  return services.find((s) => s.addresses.some((a) => canonicalIp(a) === ip))
    ?? (r.sni ? services.find((s) => sniMatches(s.host, r.sni!)) : undefined);
}

export function l4RouteFor(svc: CompiledL4Service, r: L4Request): { route: CompiledL4Route; cluster: WeightedCluster } | undefined {
  for (const route of svc.routes) {
    if (route.match.length > 0 && !route.match.some((m) => matchOne(m, r))) continue;
    const cluster = pickWeighted(route.route);
    if (cluster) return { route, cluster };
  }
  return undefined;
}
