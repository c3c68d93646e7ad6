// Which VirtualServices name a host, indexed once per compile and section:
// a proxy view at 10k hosts × 1k VirtualServices asked this per host port,
// and scanning every VirtualService each time (resolving its hosts again)
// was most of a compile. Exact patterns are looked up by name; wildcards
// ("*.suffix", "*") by the host's own suffixes, so a lookup costs the
// host's label count, not the number of VirtualServices.
import { resolveHost, specificity, visibleTo } from '../../istio/hosts.js';
import type { VirtualService } from '../../istio/types.js';

type Section = 'http' | 'tcp' | 'tls';
interface Entry { vs: VirtualService; specificity: number }

export class VirtualServiceIndex {
  private readonly byPattern = new Map<string, Entry[]>();

  constructor(virtualServices: VirtualService[], section: Section, proxyNamespace: string, clusterDomain: string) {
    for (const vs of virtualServices) {
      // A VirtualService without routes of this kind does not take the host over for this kind of traffic.
      if (vs[section].length === 0) continue;
      if (!visibleTo(vs.exportTo, vs.meta.namespace, proxyNamespace)) continue;
      if (vs.gateways.length && !vs.gateways.includes('mesh')) continue;
      for (const h of vs.hosts) {
        const pattern = resolveHost(h, vs.meta.namespace, clusterDomain);
        const list = this.byPattern.get(pattern) ?? [];
        list.push({ vs, specificity: specificity(pattern) });
        this.byPattern.set(pattern, list);
      }
    }
  }

  /** The VirtualServices of the most specific pattern matching `host`, oldest first (Istio's merge order). */
  for(host: string): VirtualService[] {
    let best = -1;
    let chosen: VirtualService[] = [];
    const consider = (entries: Entry[] | undefined): void => {
      for (const e of entries ?? []) {
        if (e.specificity > best) { best = e.specificity; chosen = [e.vs]; } else if (e.specificity === best && !chosen.includes(e.vs)) chosen.push(e.vs);
      }
    };
    consider(this.byPattern.get(host));
    // "*.b.c" matches a.b.c and x.a.b.c (never b.c itself): every proper suffix starting at a dot.
    for (let i = host.indexOf('.'); i >= 0; i = host.indexOf('.', i + 1)) consider(this.byPattern.get(`*${host.slice(i)}`));
    consider(this.byPattern.get('*'));
    return chosen.sort((a, b) => a.meta.created - b.meta.created || `${a.meta.namespace}/${a.meta.name}`.localeCompare(`${b.meta.namespace}/${b.meta.name}`));
  }
}
