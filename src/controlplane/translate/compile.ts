// Services + Istio resources → what one proxy gets (CompiledProxyConfig).
// Pure and deterministic (sorted, defaults explicit): the output is golden-
// tested, and the same input always produces the same bytes, so a proxy's
// view only changes when something it sees changed.
import type { RegistryService } from '../types.js';
import type { DestinationRule, IstioResource, ServiceEntry, Sidecar, VirtualService } from '../../istio/types.js';
import type { CompiledL4Service, CompiledListener, CompiledProxyConfig, CompiledRouteTable, IgnoredConfig } from '../resources.js';
import { clusterName, hostMatches } from '../../istio/hosts.js';
import { EgressScope, sidecarForView } from './sidecar-scope.js';
import { Catalogue } from './catalogue.js';
import { compileClusters } from './clusters.js';
import { compileHttpRoutes, compileL4Routes } from './routes.js';

export interface CompileInput {
  clusterDomain: string;
  /** Istio's root namespace: mesh-wide DestinationRules and Sidecars live there. */
  rootNamespace: string;
  proxyNamespace: string;
  /** The Sidecar (in proxyNamespace) whose workloadSelector picked this proxy; else the namespace's or the root default applies. */
  sidecarName?: string;
  services: RegistryService[];
  resources: IstioResource[];
  /** Auto-allocated VIPs of address-less ServiceEntry hosts (host → VIP), from the registry entries. */
  autoVips?: Map<string, string>;
  /** Problems found while reading resources (unsupported fields …), passed through to `ignored`. */
  ignored?: IgnoredConfig[];
}

export function compileProxyConfig(input: CompileInput): CompiledProxyConfig {
  return compileAttributed(input).config;
}

/** What the routes of one host added to `ignored` (route problems, missing clusters): an incremental compile replaces a host's share. */
export type IgnoredByHost = Map<string, IgnoredConfig[]>;

function prepare(input: CompileInput) {
  const of = <K extends IstioResource['kind']>(k: K) => input.resources.filter((r) => r.kind === k) as Extract<IstioResource, { kind: K }>[];
  const sidecar: Sidecar | undefined = sidecarForView(input.resources, input.proxyNamespace, input.rootNamespace, input.sidecarName);
  const domain = input.clusterDomain;
  let services = input.services;
  let serviceEntries = of('ServiceEntry') as ServiceEntry[];
  let virtualServices = of('VirtualService') as VirtualService[];
  let scope: EgressScope | undefined;
  if (sidecar && sidecar.egress.length) {
    // Scoping: only the hosts the egress section names reach this proxy (the seeds' 400-services problem).
    const sc = new EgressScope(sidecar, input.proxyNamespace, domain);
    scope = sc;
    services = services.filter((s) => sc.allowsHost(s.namespace, `${s.name}.${s.namespace}.svc.${domain}`));
    serviceEntries = serviceEntries
      .map((se) => ({ ...se, hosts: se.hosts.filter((h) => sc.allowsHost(se.meta.namespace, h.toLowerCase())) }))
      .filter((se) => se.hosts.length > 0);
    virtualServices = virtualServices.filter((vs) => sc.allowsVirtualService(vs, domain));
  }
  const catalogue = Catalogue.build({ clusterDomain: domain, services, serviceEntries, proxyNamespace: input.proxyNamespace, autoVips: input.autoVips });
  if (scope?.hasPortListeners()) restrictPorts(catalogue, scope);
  return { sidecar, catalogue, virtualServices, destinationRules: of('DestinationRule') as DestinationRule[] };
}

/** compileProxyConfig, and which host's routes added which `ignored` entries. */
export function compileAttributed(input: CompileInput): { config: CompiledProxyConfig; ignoredByHost: IgnoredByHost } {
  const { sidecar, catalogue, virtualServices, destinationRules } = prepare(input);
  const ignored: IgnoredConfig[] = [...(input.ignored ?? [])];
  const byHost: IgnoredByHost = new Map();
  const listener: CompiledListener = { name: 'outbound', outboundTrafficPolicy: sidecar?.outboundTrafficPolicy ?? 'ALLOW_ANY' };
  if (sidecar) listener.sidecar = `${sidecar.meta.namespace}/${sidecar.meta.name}`;
  const routeCtx = { catalogue, virtualServices, proxyNamespace: input.proxyNamespace, ignored, byHost };
  const out: CompiledProxyConfig = {
    routes: compileHttpRoutes(routeCtx),
    l4: compileL4Routes(routeCtx),
    clusters: compileClusters({ catalogue, destinationRules, proxyNamespace: input.proxyNamespace, rootNamespace: input.rootNamespace, ignored }),
    ignored,
    listeners: [listener],
  };
  const clusters = new Map(out.clusters.map((c) => [c.name, c]));
  reportMissingClusters(out.routes, out.l4, (name) => clusters.get(name), ignored, byHost);
  return { config: out, ignoredByHost: byHost };
}

/**
 * The routes (HTTP virtual hosts and L4 services) of the hosts that match
 * one of `patterns`, exactly as compileAttributed would give them, for a
 * view without a Sidecar whose clusters are unchanged (`clusterOf`: the
 * current clusters by name): a VirtualService change touches only the
 * hosts its old and new host patterns match (translate/shared-base.ts).
 */
export function compileHosts(input: CompileInput, patterns: readonly string[], clusterOf: (name: string) => { destinationRule?: string } | undefined): { hosts: Set<string>; routes: CompiledRouteTable[]; l4: CompiledL4Service[]; ignoredByHost: IgnoredByHost } {
  const { sidecar, catalogue, virtualServices } = prepare(input);
  if (sidecar) throw new Error('compileHosts: only for views without a Sidecar');
  const hosts = new Set<string>();
  for (const p of patterns) {
    if (!p.startsWith('*')) { if (catalogue.get(p)) hosts.add(p); continue; }
    for (const h of catalogue.hosts.keys()) if (hostMatches(p, h)) hosts.add(h);
  }
  const entries = catalogue.all().filter((e) => hosts.has(e.host));
  const ignored: IgnoredConfig[] = [];
  const byHost: IgnoredByHost = new Map();
  const routeCtx = { catalogue, virtualServices, proxyNamespace: input.proxyNamespace, ignored, byHost };
  const routes = compileHttpRoutes(routeCtx, entries);
  const l4 = compileL4Routes(routeCtx, entries);
  reportMissingClusters(routes, l4, clusterOf, ignored, byHost);
  return { hosts, routes, l4, ignoredByHost: byHost };
}

/**
 * Egress listeners bound to a port: a host keeps only the ports it is
 * visible on, so no route table, L4 service or cluster exists for it on the
 * others (traffic there meets the outbound policy, as in Istio).
 */
function restrictPorts(catalogue: Catalogue, scope: EgressScope): void {
  for (const [host, e] of catalogue.hosts) {
    if (e.ports.length === 0) continue;
    e.ports = e.ports.filter((p) => scope.allowsHost(e.namespace, host, p.port));
    if (e.ports.length === 0) catalogue.hosts.delete(host);
  }
}

/**
 * A route to a subset the applicable DestinationRule does not define (or to
 * a host nobody defines) compiles, and the proxy answers it 503 NC, as
 * Envoy does; config_dump must say why (once in `ignored`, and for every
 * host whose routes name it in `byHost`).
 */
function reportMissingClusters(routes: CompiledRouteTable[], l4: CompiledL4Service[], clusterOf: (name: string) => { destinationRule?: string } | undefined, ignored: IgnoredConfig[], byHost: IgnoredByHost): void {
  const seen = new Set<string>();
  const check = (cluster: string, source: string, from: string): void => {
    if (clusterOf(cluster)) return;
    const [, port, subset, host] = cluster.split('|');
    // Every host port's default cluster exists whenever one of its subsets does (clusters.ts builds it first).
    const owner = clusterOf(clusterName(Number(port), undefined, host));
    const message = !owner ? `host ${host} port ${port} is not in this proxy's registry: requests get 503 NC`
      : `subset ${JSON.stringify(subset)} of ${host} is not defined by ${owner.destinationRule ? `DestinationRule ${owner.destinationRule}` : 'any DestinationRule'} visible here: requests get 503 NC`;
    const item = { resource: `VirtualService ${source.split('#')[0]}`, field: source.split('#')[1] ?? '', message };
    const list = byHost.get(from) ?? [];
    list.push(item);
    byHost.set(from, list);
    if (seen.has(`${source} ${cluster}`)) return;
    seen.add(`${source} ${cluster}`);
    ignored.push(item);
  };
  for (const t of routes) for (const vh of t.virtualHosts) for (const r of vh.routes) {
    const from = vh.name.slice(0, vh.name.lastIndexOf(':'));
    if ('route' in r.action) for (const w of r.action.route) check(w.cluster, r.source, from);
    for (const m of r.mirrors) check(m.cluster, r.source, from);
  }
  for (const s of l4) for (const r of s.routes) for (const w of r.route) check(w.cluster, r.source, s.host);
}
