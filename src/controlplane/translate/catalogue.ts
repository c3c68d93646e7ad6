// The hosts one proxy can reach: Services of the registry and ServiceEntries
// visible to its namespace, each with ports, protocols, addresses and the
// Host header values that name it. Translators look hosts up here.
import type { RegistryService } from '../types.js';
import type { ServiceEntry } from '../../istio/types.js';
import { portProtocol, type PortProtocol } from '../../istio/protocol.js';
import { visibleTo } from '../../istio/hosts.js';

export interface HostPort { port: number; name: string; protocol: PortProtocol }

export interface HostEntry {
  /** FQDN (lower case), e.g. reviews.default.svc.cluster.local */
  host: string;
  namespace: string;
  /** The registry key whose endpoints this host uses: "ns/name" of the Service, "ns/<host>" of a ServiceEntry host. */
  source: string;
  kind: 'Service' | 'Headless' | 'ExternalName' | 'ServiceEntry';
  addresses: string[];
  ports: HostPort[];
  /** Other names the Host header may use for this host (without port). */
  aliases: string[];
  externalName?: string;
}

export class Catalogue {
  readonly hosts = new Map<string, HostEntry>();

  constructor(readonly clusterDomain: string) {}

  get(host: string): HostEntry | undefined { return this.hosts.get(host); }

  all(): HostEntry[] { return [...this.hosts.values()].sort((a, b) => a.host.localeCompare(b.host)); }

  static build(opts: { clusterDomain: string; services: RegistryService[]; serviceEntries: ServiceEntry[]; proxyNamespace: string; autoVips?: Map<string, string> }): Catalogue {
    const c = new Catalogue(opts.clusterDomain);
    for (const s of opts.services) {
      const host = `${s.name}.${s.namespace}.svc.${opts.clusterDomain}`;
      const aliases = [`${s.name}.${s.namespace}`, `${s.name}.${s.namespace}.svc`];
      // A bare name means the proxy's own namespace (resolv.conf's first search domain).
      if (s.namespace === opts.proxyNamespace) aliases.unshift(s.name);
      c.hosts.set(host, {
        host, namespace: s.namespace, source: `${s.namespace}/${s.name}`,
        kind: s.kind === 'Headless' ? 'Headless' : s.kind === 'ExternalName' ? 'ExternalName' : 'Service',
        addresses: [...s.clusterIPs], aliases, externalName: s.externalName?.toLowerCase(),
        ports: s.ports.filter((p) => p.protocol === 'TCP').map((p) => ({ port: p.port, name: p.name, protocol: portProtocol(p) })),
      });
    }
    // ExternalName: the alias's names route like its target (seed semantics), when the target is in the mesh.
    for (const e of [...c.hosts.values()]) {
      if (e.kind !== 'ExternalName' || !e.externalName) continue;
      const target = c.hosts.get(e.externalName);
      if (target) target.aliases.push(e.host, ...e.aliases);
    }
    const entries = opts.serviceEntries
      .filter((se) => visibleTo(se.exportTo, se.meta.namespace, opts.proxyNamespace))
      .sort((a, b) => a.meta.created - b.meta.created || `${a.meta.namespace}/${a.meta.name}`.localeCompare(`${b.meta.namespace}/${b.meta.name}`));
    for (const se of entries) {
      for (const h of se.hosts) {
        const host = h.toLowerCase();
        if (c.hosts.has(host)) continue; // a Service (or an older ServiceEntry) already owns the name
        c.hosts.set(host, {
          // The registry holds a ServiceEntry host's endpoints under "ns/<host>" (service-entry-registry.ts).
          host, namespace: se.meta.namespace, source: `${se.meta.namespace}/${host}`, kind: 'ServiceEntry',
          addresses: se.addresses.length ? [...se.addresses] : opts.autoVips?.has(host) ? [opts.autoVips.get(host)!] : [], aliases: [],
          ports: se.ports.map((p) => ({ port: p.number, name: p.name, protocol: portProtocol({ appProtocol: p.protocol, name: p.name, port: p.number }) })),
        });
      }
    }
    return c;
  }
}
