// Maps a query name to a service in the registry, the way a pod's resolver
// would reach it: FQDN `name.ns.svc.<domain>`, `name.ns.svc`, `name.ns`,
// bare `name` in the pod's namespace, and any of those joined with the pod's
// first search domain (answered with a CNAME to the FQDN so the client skips
// the rest of its ndots:5 search walk). ServiceEntry hosts exported to the
// pod's namespace are answered too: exact hosts first, then the most
// specific wildcard (`*.example.com`), as Istio's DNS proxy does.
import type { Registry, RegistryService } from '../controlplane/types.js';
import { visibleTo } from '../istio/hosts.js';

export interface LocalMatch {
  service: RegistryService;
  /** The service's canonical FQDN, lower-case, no trailing dot. */
  fqdn: string;
  /** Set when the query name is not the FQDN itself and must CNAME to it. */
  aliasOf?: string;
  /**
   * A pod of a headless service by its hostname
   * (`<hostname>.<service>.<ns>.svc.<domain>`, StatefulSets): answer only
   * these addresses instead of the service's.
   */
  podAddresses?: string[];
}

export class LocalZone {
  private readonly domain: string;
  private readonly svcSuffix: string;
  /** Labels in an FQDN `name.ns.svc.<domain>`. */
  private readonly fqdnLabels: number;
  /** ServiceEntry hosts visible to the pod's namespace. */
  private readonly entryHosts = new Map<string, RegistryService>();
  /** Wildcard ServiceEntry hosts as [suffix ".example.com", entry], longest suffix first. */
  private readonly entryWildcards: [string, RegistryService][] = [];

  constructor(
    private readonly registry: Registry,
    private readonly podNamespace: string,
    private readonly firstSearchDomain: string | undefined,
  ) {
    this.domain = registry.clusterDomain.toLowerCase().replace(/\.$/, '');
    this.svcSuffix = `.svc.${this.domain}`;
    this.fqdnLabels = 3 + this.domain.split('.').length;
    for (const svc of registry.services.values()) {
      const se = svc.serviceEntry;
      if (!se || !visibleTo(se.exportTo, svc.namespace, podNamespace)) continue;
      // A host with no address to give (resolution NONE or DNS without addresses) is left to the upstream resolver.
      if (svc.clusterIPs.length === 0 && svc.endpoints.length === 0) continue;
      if (se.host.startsWith('*.')) this.entryWildcards.push([se.host.slice(1), svc]);
      else if (!this.entryHosts.has(se.host)) this.entryHosts.set(se.host, svc);
    }
    this.entryWildcards.sort((a, b) => b[0].length - a[0].length);
  }

  get clusterDomain(): string {
    return this.domain;
  }

  /** `qname` is lower-case without trailing dot. */
  lookup(qname: string): LocalMatch | undefined {
    const direct = this.matchForms(qname);
    if (direct) return direct;
    const entry = this.matchEntry(qname);
    if (entry) return entry;
    // `<short form>.<first search domain>`: glibc tries this first for
    // names with fewer than ndots dots.
    const sd = this.firstSearchDomain;
    if (sd && qname.length > sd.length + 1 && qname.endsWith(sd) && qname[qname.length - sd.length - 1] === '.') {
      const inner = qname.slice(0, qname.length - sd.length - 1);
      const m = this.matchForms(inner);
      if (m) return { ...m, aliasOf: m.fqdn };
    }
    return undefined;
  }

  /** A ServiceEntry host: exact, else the longest wildcard suffix. */
  private matchEntry(name: string): LocalMatch | undefined {
    const exact = this.entryHosts.get(name);
    if (exact) return { service: exact, fqdn: name };
    for (const [suffix, service] of this.entryWildcards) if (name.length > suffix.length && name.endsWith(suffix)) return { service, fqdn: name };
    return undefined;
  }

  /** FQDN, name.ns.svc, name.ns, bare name. */
  private matchForms(name: string): LocalMatch | undefined {
    const labels = name.split('.');
    let svcName: string | undefined;
    let ns: string | undefined;
    if (labels.length === this.fqdnLabels && name.endsWith(this.svcSuffix)) {
      [svcName, ns] = labels;
    } else if (labels.length === this.fqdnLabels + 1 && name.endsWith(this.svcSuffix)) {
      return this.matchPodHostname(name, labels);
    } else if (labels.length === 3 && labels[2] === 'svc') {
      [svcName, ns] = labels;
    } else if (labels.length === 2) {
      [svcName, ns] = labels;
    } else if (labels.length === 1 && labels[0] !== '') {
      svcName = labels[0];
      ns = this.podNamespace;
    }
    if (svcName === undefined || ns === undefined) return undefined;
    const service = this.registry.services.get(`${ns}/${svcName}`);
    if (!service) return undefined;
    // Short forms are answered under the asked name (as kube-dns would after
    // the client's own search walk); only the search-domain form gets a CNAME.
    return { service, fqdn: `${svcName}.${ns}${this.svcSuffix}` };
  }

  /** `<hostname>.<service>.<ns>.svc.<domain>`: ready endpoints of a headless service with that hostname. */
  private matchPodHostname(name: string, labels: string[]): LocalMatch | undefined {
    const [hostname, svcName, ns] = labels;
    const service = this.registry.services.get(`${ns}/${svcName}`);
    if (!service || service.kind !== 'Headless') return undefined;
    const ips = [...new Set(service.endpoints.filter((ep) => ep.hostname?.toLowerCase() === hostname && ep.ready).map((ep) => ep.ip))];
    if (ips.length === 0) return undefined;
    return { service, fqdn: name, podAddresses: ips };
  }

  /** The service a (lower-case) FQDN-ish name refers to, for ExternalName chains. */
  serviceForTarget(target: string): LocalMatch | undefined {
    return this.matchForms(target.toLowerCase().replace(/\.$/, ''));
  }

  /** Addresses to answer for a service: ClusterIPs, or ready endpoints for headless. */
  static addresses(service: RegistryService): string[] {
    if (service.kind === 'ExternalName') return [];
    if (service.kind === 'Headless' || service.clusterIPs.length === 0) {
      const ips = new Set<string>();
      for (const ep of service.endpoints) if (ep.ready) ips.add(ep.ip);
      return [...ips];
    }
    return service.clusterIPs;
  }
}
