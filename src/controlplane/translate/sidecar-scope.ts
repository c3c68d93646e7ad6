// Istio's Sidecar resource, as it scopes what one proxy receives:
// - which Sidecar applies: one in the proxy's namespace whose
//   workloadSelector matches the pod's labels, else the one in that
//   namespace without a selector, else the root namespace's selector-less
//   Sidecar (the mesh default); several candidates: the oldest wins;
// - egress hosts "ns/dnsName": ns is a namespace, "*" (any), "." (the
//   proxy's namespace, also for the root-namespace default) or "~" (none);
//   dnsName is "*", "*.suffix" or an exact FQDN. A Service or ServiceEntry
//   host is in scope when its namespace and name match one entry;
//   a VirtualService when its namespace matches and one of its hosts
//   overlaps the entry's dnsName;
// - egress listeners bound to a port (EgressScope below);
// - outboundTrafficPolicy: ALLOW_ANY (default) or REGISTRY_ONLY.
// No Sidecar at all = everything exported to the namespace is in scope.
import { hostMatches, resolveHost } from '../../istio/hosts.js';
import type { IstioResource, Sidecar, VirtualService } from '../../istio/types.js';

const older = (a: Sidecar, b: Sidecar): number => a.meta.created - b.meta.created || a.meta.name.localeCompare(b.meta.name);
const selects = (sel: Record<string, string>, labels: Record<string, string>): boolean => Object.entries(sel).every(([k, v]) => labels[k] === v);

/** The Sidecar that applies to a pod in `namespace` with `labels` (undefined: none, no scoping). */
export function selectSidecar(resources: IstioResource[], namespace: string, rootNamespace: string, labels: Record<string, string>): Sidecar | undefined {
  const sidecars = resources.filter((r): r is Sidecar => r.kind === 'Sidecar').sort(older);
  return sidecars.find((s) => s.meta.namespace === namespace && s.workloadSelector && selects(s.workloadSelector, labels))
    ?? sidecars.find((s) => s.meta.namespace === namespace && !s.workloadSelector)
    ?? sidecars.find((s) => s.meta.namespace === rootNamespace && !s.workloadSelector);
}

/** The Sidecar a view key names: "ns#name" → that Sidecar; "ns" → the namespace's or the root default. */
export function sidecarForView(resources: IstioResource[], namespace: string, rootNamespace: string, sidecarName?: string): Sidecar | undefined {
  if (sidecarName) {
    const named = resources.find((r): r is Sidecar => r.kind === 'Sidecar' && r.meta.namespace === namespace && r.meta.name === sidecarName);
    if (named) return named;
  }
  return selectSidecar(resources, namespace, rootNamespace, {});
}

interface EgressHost { namespace: string; dnsName: string; port?: number }

/**
 * The egress hosts of one Sidecar. An egress listener with `port` makes its
 * hosts visible on that port only, and on that port only its hosts (Istio
 * binds a listener there); the listeners without `port` (the catch-all)
 * serve every other port. A host is in the proxy's registry when it is
 * visible on at least one of its ports, and it carries only those ports.
 */
export class EgressScope {
  private readonly hosts: EgressHost[];
  /** Ports an egress listener is bound to. */
  private readonly boundPorts = new Set<number>();

  constructor(readonly sidecar: Sidecar, proxyNamespace: string, clusterDomain: string) {
    this.hosts = sidecar.egress.flatMap((e) => {
      if (e.port) this.boundPorts.add(e.port.number); // its protocol is reported unsupported by the reader (istio/read.ts)
      return e.hosts.map((h) => {
        const slash = h.indexOf('/');
        const ns = h.slice(0, slash);
        const dns = h.slice(slash + 1);
        return { namespace: ns === '.' ? proxyNamespace : ns, dnsName: resolveHost(dns, ns === '.' || ns === '*' || ns === '~' ? proxyNamespace : ns, clusterDomain), port: e.port?.number };
      });
    });
  }

  /** The entries that apply on `port` (undefined: on any port). */
  private entries(port?: number): EgressHost[] {
    if (port === undefined) return this.hosts;
    const bound = this.boundPorts.has(port);
    return this.hosts.filter((e) => (bound ? e.port === port : e.port === undefined));
  }

  /** Is a host (FQDN) defined in `namespace` (a Service's or ServiceEntry's) in scope, on `port` or (undefined) on some port? */
  allowsHost(namespace: string, host: string, port?: number): boolean {
    return this.entries(port).some((e) => e.namespace !== '~' && (e.namespace === '*' || e.namespace === namespace) && hostMatches(e.dnsName, host));
  }

  /** Does any egress listener bind a port (so hosts may be visible on some of their ports only)? */
  hasPortListeners(): boolean { return this.boundPorts.size > 0; }

  /** Is a VirtualService in scope: its namespace matches an entry and one of its (resolved) hosts overlaps it. */
  allowsVirtualService(vs: VirtualService, clusterDomain: string): boolean {
    const hosts = vs.hosts.map((h) => resolveHost(h, vs.meta.namespace, clusterDomain));
    return this.hosts.some((e) => e.namespace !== '~' && (e.namespace === '*' || e.namespace === vs.meta.namespace)
      && hosts.some((h) => hostMatches(e.dnsName, h) || hostMatches(h, e.dnsName)));
  }
}
