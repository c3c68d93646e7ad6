// HTTP routing by name, the way Istio builds its outbound virtual hosts:
// a request goes to the service its Host/:authority names, whatever IP the
// client dialled. Names per service: name.ns.svc.<domain>, name.ns.svc,
// name.ns, and the bare name for services in the client's own namespace
// (the search path a pod's resolv.conf gives it), plus the ClusterIPs; each
// with or without :port. An ExternalName service whose target is a mesh
// service adds its own names as aliases of the target. Built once per
// registry version and client namespace.
import type { RegistryService, RegistryServicePort } from '../controlplane/types.js';
import { canonicalIp } from './addr.js';
import type { RouteTable } from './routing.js';

export interface HostRoute { service: RegistryService; servicePort: RegistryServicePort }

export class HostRoutes {
  /** "host|port" → route. */
  private readonly byHost = new Map<string, HostRoute>();

  constructor(readonly routes: RouteTable, readonly clientNamespace: string) {
    const domain = routes.clusterDomain;
    const byFqdn = new Map<string, RegistryService>();
    for (const svc of routes.services()) {
      if (svc.kind === 'ExternalName') continue;
      byFqdn.set(`${svc.name}.${svc.namespace}.svc.${domain}`, svc);
      this.addNames(svc, svc, domain);
    }
    // Aliases after the real names, so a real service always wins a name clash.
    for (const svc of routes.services()) {
      if (svc.kind !== 'ExternalName' || !svc.externalName) continue;
      const target = byFqdn.get(svc.externalName.replace(/\.$/, '').toLowerCase());
      if (target) this.addNames(svc, target, domain);
    }
  }

  private addNames(named: RegistryService, target: RegistryService, domain: string): void {
    const names = [`${named.name}.${named.namespace}.svc.${domain}`, `${named.name}.${named.namespace}.svc`, `${named.name}.${named.namespace}`];
    if (named.namespace === this.clientNamespace) names.push(named.name);
    if (named === target) names.push(...target.clusterIPs.map((ip) => canonicalIp(ip)));
    for (const sp of target.ports) {
      if (sp.protocol !== 'TCP') continue;
      for (const n of names) {
        const k = `${n}|${sp.port}`;
        if (!this.byHost.has(k)) this.byHost.set(k, { service: target, servicePort: sp });
      }
    }
  }

  /**
   * The route for a request's authority. A port in the authority picks the
   * service port; without one, the port the client dialled does (Istio's
   * route configuration is per listener port).
   */
  lookup(authority: string | undefined, dialledPort: number): HostRoute | undefined {
    if (!authority) return undefined;
    const { host, port } = splitAuthority(authority);
    if (!host) return undefined;
    return this.byHost.get(`${host}|${port ?? dialledPort}`);
  }

  /** Every "host|port" key and its route (the native HTTP path's Host table). */
  entries(): IterableIterator<[string, HostRoute]> {
    return this.byHost.entries();
  }

  size(): number {
    return this.byHost.size;
  }

  /** For config_dump: host names per service port. */
  virtualHosts(): { name: string; domains: string[] }[] {
    const by = new Map<string, string[]>();
    for (const [k, r] of this.byHost) {
      const name = `${r.service.name}.${r.service.namespace}:${r.servicePort.port}`;
      const list = by.get(name) ?? [];
      list.push(k.split('|')[0]);
      by.set(name, list);
    }
    return [...by].map(([name, domains]) => ({ name, domains }));
  }
}

/** "Host:port", "[v6]:port", "v6" → lower-cased host, optional port; trailing dot dropped. */
export function splitAuthority(authority: string): { host: string; port?: number } {
  const a = authority.trim().toLowerCase();
  let host = a;
  let port: number | undefined;
  if (a.startsWith('[')) {
    const end = a.indexOf(']');
    host = a.slice(1, end < 0 ? undefined : end);
    const rest = end < 0 ? '' : a.slice(end + 1);
    if (rest.startsWith(':') && /^\d{1,5}$/.test(rest.slice(1))) port = Number(rest.slice(1));
    return { host: canonicalIp(host), port };
  }
  const colon = a.lastIndexOf(':');
  if (colon >= 0 && a.indexOf(':') === colon) {
    const p = a.slice(colon + 1);
    if (/^\d{1,5}$/.test(p)) port = Number(p);
    host = a.slice(0, colon);
  } else if (colon >= 0) {
    return { host: canonicalIp(a) }; // bare IPv6
  }
  return { host: host.replace(/\.$/, ''), port };
}
