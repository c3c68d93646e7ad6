// The mesh-wide base view and per-namespace overlays. Without a Sidecar, what
// a proxy gets depends on its namespace in a few places only:
// - the bare-name Host alias of its own namespace's Services (catalogue.ts);
// - resources exported to some namespaces only (exportTo "." or a list:
//   ServiceEntries, DestinationRules, VirtualServices);
// - DestinationRules of its own namespace (looked up first, clusters.ts);
// - ExternalName Services of its namespace (they lend their bare name to
//   their target's virtual host);
// - a Sidecar that applies to it (scoping, outbound policy).
// The base is the compile for a namespace that holds nothing (BASE_NAMESPACE:
// no Kubernetes namespace can have that name), so it carries none of these.
// A namespace touched by none but the first is the base plus an overlay: its
// own Services' virtual hosts with the bare name added, replacing the base's
// items of the same keys (no item is added or removed). Any other namespace
// is compiled whole (compiledWhole()). The agent's views built from this
// (v2/layered-kind.ts) hold one copy of the mesh for all unscoped proxies.
import type { IstioResource } from '../../istio/types.js';
import { visibleTo } from '../../istio/hosts.js';
import type { RegistryService } from '../types.js';
import type { CompiledVirtualHost } from '../resources.js';
import { sidecarForView } from './sidecar-scope.js';

export const BASE_NAMESPACE = '(base)';

/**
 * Must a proxy of `namespace` (no workload Sidecar) be compiled whole, or is
 * it the base plus its overlay? Whole when any of the differences above
 * other than the bare-name alias applies to it.
 */
export function compiledWhole(resources: readonly IstioResource[], services: Iterable<RegistryService>, namespace: string, rootNamespace: string): boolean {
  if (sidecarForView(resources as IstioResource[], namespace, rootNamespace)) return true;
  for (const r of resources) {
    if (r.kind === 'DestinationRule' && r.meta.namespace === namespace && !r.workloadSelector) return true;
    if ((r.kind === 'DestinationRule' || r.kind === 'VirtualService' || r.kind === 'ServiceEntry')
      && !visibleTo(r.exportTo, r.meta.namespace, BASE_NAMESPACE) && visibleTo(r.exportTo, r.meta.namespace, namespace)) return true;
  }
  for (const s of services) if (s.namespace === namespace && s.kind === 'ExternalName') return true;
  return false;
}

/**
 * The virtual hosts of `namespace`'s own Services as its proxies see them,
 * from the base's (`baseVirtualHost(port, name)`: the base item's JSON, if
 * the base has one): the bare name and bare name:port right after the FQDN
 * pair, which is where Catalogue.build and domainsOf put them for a proxy
 * of that namespace. Everything else of the item is the base's.
 */
export function namespaceOverlay(services: Iterable<RegistryService>, namespace: string, clusterDomain: string, baseVirtualHost: (port: number, name: string) => string | undefined): { port: number; virtualHost: CompiledVirtualHost }[] {
  const out: { port: number; virtualHost: CompiledVirtualHost }[] = [];
  for (const s of services) {
    if (s.namespace !== namespace || s.serviceEntry || s.kind === 'ExternalName') continue;
    const host = `${s.name}.${s.namespace}.svc.${clusterDomain}`;
    for (const p of s.ports) {
      const json = baseVirtualHost(p.port, `${host}:${p.port}`);
      if (json === undefined) continue;
      const item = JSON.parse(json) as { port: number; virtualHost: CompiledVirtualHost };
      item.virtualHost.domains.splice(2, 0, s.name, `${s.name}:${p.port}`);
      out.push(item);
    }
  }
  return out;
}
