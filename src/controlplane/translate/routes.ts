// VirtualServices → per-port HTTP route tables and L4 (tcp/tls) routes, as
// Istio's sidecar outbound does it:
// - a VirtualService applies to a host it names (short names resolved in the
//   VirtualService's namespace), if exported to the proxy's namespace and
//   bound to "mesh" (no gateways, or "mesh" listed);
// - overlapping hosts: the most specific pattern wins; several
//   VirtualServices for one host are merged in creation order (oldest first);
// - routes are tried in order, the first match wins; a host with a
//   VirtualService and no matching route answers 404 NR (no implicit
//   fall-through), a host without one gets the default route;
// - default retries: 2 on connect-failure, refused-stream, unavailable,
//   cancelled, retriable-status-codes (503); 25 ms backoff base.
import type { HttpRoute, L4Route, VirtualService, Destination, WeightedDestination } from '../../istio/types.js';
import { clusterName, resolveHost } from '../../istio/hosts.js';
import { VirtualServiceIndex } from './vs-index.js';
import { isHttpCapable, isTlsPassthrough } from '../../istio/protocol.js';
import type { CompiledHttpRoute, CompiledL4Route, CompiledL4Service, CompiledRetry, CompiledRouteTable, CompiledVirtualHost, IgnoredConfig, WeightedCluster } from '../resources.js';
import type { Catalogue, HostEntry } from './catalogue.js';

export const DEFAULT_RETRY: CompiledRetry = {
  attempts: 2,
  retryOn: ['connect-failure', 'refused-stream', 'unavailable', 'cancelled', 'retriable-status-codes'],
  retriableStatusCodes: [503],
  backoffBaseMs: 25,
};

export interface RouteContext {
  catalogue: Catalogue;
  virtualServices: VirtualService[];
  proxyNamespace: string;
  ignored: IgnoredConfig[];
  /** When set: what each host's routes added to `ignored` (compile.ts, incremental compiles). */
  byHost?: Map<string, IgnoredConfig[]>;
}

/** Runs one host's compile, recording what it added to ctx.ignored under its name. */
function attributed<T>(ctx: RouteContext, host: string, f: () => T): T {
  const n = ctx.ignored.length;
  const out = f();
  if (ctx.byHost && ctx.ignored.length > n) {
    const list = ctx.byHost.get(host) ?? [];
    list.push(...ctx.ignored.slice(n));
    ctx.byHost.set(host, list);
  }
  return out;
}

const ref = (vs: VirtualService): string => `VirtualService ${vs.meta.namespace}/${vs.meta.name}`;

const indexes = new WeakMap<RouteContext, Map<string, VirtualServiceIndex>>();

/** The VirtualServices that apply to `host`, merged in creation order (vs-index.ts, built once per context and section). */
export function virtualServicesFor(ctx: RouteContext, host: string, section: 'http' | 'tcp' | 'tls'): VirtualService[] {
  let bySection = indexes.get(ctx);
  if (!bySection) { bySection = new Map(); indexes.set(ctx, bySection); }
  let index = bySection.get(section);
  if (!index) { index = new VirtualServiceIndex(ctx.virtualServices, section, ctx.proxyNamespace, ctx.catalogue.clusterDomain); bySection.set(section, index); }
  return index.for(host);
}

/** A destination → its cluster name: the host resolved in the VirtualService's namespace, the port defaulted when unambiguous. */
function destinationCluster(ctx: RouteContext, vs: VirtualService, d: Destination, field: string, fromPort: number, fromHost: string): string | undefined {
  const host = resolveHost(d.host, vs.meta.namespace, ctx.catalogue.clusterDomain);
  const target = ctx.catalogue.get(host);
  let port = d.port;
  if (port === undefined) {
    if (host === fromHost) port = fromPort;
    else if (target && target.ports.length === 1) port = target.ports[0].port;
    else if (target) {
      ctx.ignored.push({ resource: ref(vs), field: `${field}.port`, message: `${host} has ${target.ports.length} ports: the destination must name one` });
      return undefined;
    } else port = fromPort;
  }
  return clusterName(port, d.subset, host);
}

function weighted(ctx: RouteContext, vs: VirtualService, ds: WeightedDestination[], field: string, port: number, host: string): WeightedCluster[] | undefined {
  const out: WeightedCluster[] = [];
  for (const [i, d] of ds.entries()) {
    const cluster = destinationCluster(ctx, vs, d.destination, `${field}[${i}].destination`, port, host);
    if (!cluster) return undefined;
    if (d.weight > 0) out.push({ cluster, weight: d.weight, ...(d.headers ? { headers: d.headers } : {}) });
  }
  return out;
}

function compileHttpRoute(ctx: RouteContext, vs: VirtualService, r: HttpRoute, i: number, port: number, host: string): CompiledHttpRoute | undefined {
  const field = `spec.http[${i}]`;
  // A route whose every match names another port does not exist on this port.
  const match = r.match.filter((m) => m.port === undefined || m.port === port);
  if (r.match.length > 0 && match.length === 0) return undefined;
  let action: CompiledHttpRoute['action'];
  if (r.redirect) action = { redirect: r.redirect };
  else if (r.directResponse) action = { directResponse: r.directResponse };
  else {
    const route = weighted(ctx, vs, r.route, `${field}.route`, port, host);
    if (!route) return undefined;
    action = { route };
  }
  const retries: CompiledRetry = r.retries
    ? { ...DEFAULT_RETRY, attempts: r.retries.attempts, retryOn: r.retries.retryOn ?? DEFAULT_RETRY.retryOn, ...(r.retries.perTryTimeoutMs !== undefined || r.timeoutMs !== undefined ? { perTryTimeoutMs: r.retries.perTryTimeoutMs ?? r.timeoutMs } : {}) }
    : DEFAULT_RETRY;
  const mirrors = r.mirrors.flatMap((m, mi) => {
    const c = destinationCluster(ctx, vs, m.destination, `${field}.mirrors[${mi}].destination`, port, host);
    return c ? [{ cluster: c, percentage: m.percentage }] : [];
  });
  return {
    source: `${vs.meta.namespace}/${vs.meta.name}#http[${i}]`, ...(r.name ? { name: r.name } : {}),
    match: match.map((m) => Object.fromEntries(Object.entries(m).filter(([k, v]) => v !== undefined && k !== 'port'))),
    action, ...('route' in action ? { retries } : {}), mirrors,
    ...(r.timeoutMs !== undefined ? { timeoutMs: r.timeoutMs } : {}),
    ...(r.fault ? { fault: r.fault } : {}), ...(r.headers ? { headers: r.headers } : {}),
    ...(r.rewrite ? { rewrite: r.rewrite } : {}), ...(r.corsPolicy ? { corsPolicy: r.corsPolicy } : {}),
  };
}

function domainsOf(e: HostEntry, port: number): string[] {
  const names = [e.host, ...e.aliases, ...e.addresses.map((a) => (a.includes(':') ? `[${a}]` : a))];
  return names.flatMap((n) => [n, `${n}:${port}`]);
}

function defaultRoute(e: HostEntry, port: number): CompiledHttpRoute {
  return { source: 'default', match: [], action: { route: [{ cluster: clusterName(port, undefined, e.host), weight: 100 }] }, retries: DEFAULT_RETRY, mirrors: [] };
}

/** One route table per HTTP-capable port, one virtual host per (host, port); `entries`: only those hosts. */
export function compileHttpRoutes(ctx: RouteContext, entries: readonly HostEntry[] = ctx.catalogue.all()): CompiledRouteTable[] {
  const tables = new Map<number, CompiledVirtualHost[]>();
  for (const e of entries) {
    if (e.kind === 'ExternalName') continue; // its names were added to its target's virtual host
    for (const p of e.ports) {
      if (!isHttpCapable(p.protocol)) continue;
      const vss = virtualServicesFor(ctx, e.host, 'http');
      const routes = vss.length === 0 ? [defaultRoute(e, p.port)]
        : attributed(ctx, e.host, () => vss.flatMap((vs) => vs.http.map((r, i) => compileHttpRoute(ctx, vs, r, i, p.port, e.host)).filter((r): r is CompiledHttpRoute => r !== undefined)));
      const list = tables.get(p.port) ?? [];
      list.push({ name: `${e.host}:${p.port}`, domains: domainsOf(e, p.port), routes });
      tables.set(p.port, list);
    }
  }
  return [...tables.entries()].sort((a, b) => a[0] - b[0]).map(([port, virtualHosts]) => ({ port, virtualHosts }));
}

function compileL4(ctx: RouteContext, vs: VirtualService, routes: L4Route[], section: 'tcp' | 'tls', port: number, host: string): CompiledL4Route[] {
  const out: CompiledL4Route[] = [];
  routes.forEach((r, i) => {
    const match = r.match.filter((m) => m.port === undefined || m.port === port);
    if (r.match.length > 0 && match.length === 0) return;
    const route = weighted(ctx, vs, r.route, `spec.${section}[${i}].route`, port, host);
    if (route) out.push({ source: `${vs.meta.namespace}/${vs.meta.name}#${section}[${i}]`, match: match.map((m) => Object.fromEntries(Object.entries(m).filter(([k, v]) => v !== undefined && k !== 'port'))), route });
  });
  return out;
}

/** Opaque TCP and TLS-passthrough ports: VirtualService tcp / tls routes, else straight to the service; `entries`: only those hosts. */
export function compileL4Routes(ctx: RouteContext, entries: readonly HostEntry[] = ctx.catalogue.all()): CompiledL4Service[] {
  const out: CompiledL4Service[] = [];
  for (const e of entries) {
    if (e.kind === 'ExternalName') continue;
    for (const p of e.ports) {
      if (isHttpCapable(p.protocol) && p.protocol !== 'auto') continue;
      const section = isTlsPassthrough(p.protocol) ? 'tls' : 'tcp';
      const vss = virtualServicesFor(ctx, e.host, section);
      const routes = attributed(ctx, e.host, () => vss.flatMap((vs) => compileL4(ctx, vs, section === 'tls' ? vs.tls : vs.tcp, section, p.port, e.host)));
      // The service itself is always the last resort for opaque traffic (sniffed "auto" ports included).
      routes.push({ source: 'default', match: [], route: [{ cluster: clusterName(p.port, undefined, e.host), weight: 100 }] });
      out.push({ host: e.host, port: p.port, protocol: p.protocol, addresses: e.addresses, routes });
    }
  }
  return out;
}
