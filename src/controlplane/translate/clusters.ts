// DestinationRules → clusters (outbound|port|subset|host), as Istio does it:
// - lookup for a host: the proxy's namespace first, then the host's own
//   namespace, then the root namespace (istio-system by default); within a
//   namespace the most specific host wins, then the oldest rule;
// - field groups (loadBalancer, connectionPool, outlierDetection, tls) of a
//   subset override the top level; portLevelSettings override per port;
// - defaults filled in: LEAST_REQUEST, connectTimeout 10 s, idleTimeout 1 h,
//   outlier detection only when configured (then consecutive5xxErrors 5,
//   interval 10 s, baseEjectionTime 30 s, maxEjectionPercent 10 %), TLS AUTO.
import type { DestinationRule, TrafficPolicy } from '../../istio/types.js';
import { clusterName, hostMatches, resolveHost, specificity, visibleTo } from '../../istio/hosts.js';
import type { CompiledCluster, IgnoredConfig } from '../resources.js';
import type { Catalogue, HostEntry, HostPort } from './catalogue.js';

export interface ClusterContext {
  catalogue: Catalogue;
  destinationRules: DestinationRule[];
  proxyNamespace: string;
  rootNamespace: string;
  ignored: IgnoredConfig[];
}

type Groups = Omit<TrafficPolicy, 'portLevelSettings'>;

function pick(ctx: ClusterContext, host: string, namespace: string): DestinationRule | undefined {
  let best: DestinationRule | undefined;
  let bestScore = -1;
  for (const dr of ctx.destinationRules) {
    if (dr.meta.namespace !== namespace || dr.workloadSelector) continue;
    if (!visibleTo(dr.exportTo, dr.meta.namespace, ctx.proxyNamespace)) continue;
    const pattern = resolveHost(dr.host, dr.meta.namespace, ctx.catalogue.clusterDomain);
    if (!hostMatches(pattern, host)) continue;
    const s = specificity(pattern);
    if (s > bestScore || (s === bestScore && best && dr.meta.created < best.meta.created)) { best = dr; bestScore = s; }
  }
  return best;
}

/** The DestinationRule that applies to `host` for a proxy in ctx.proxyNamespace. */
export function destinationRuleFor(ctx: ClusterContext, e: HostEntry): DestinationRule | undefined {
  for (const ns of [ctx.proxyNamespace, e.namespace, ctx.rootNamespace]) {
    const dr = pick(ctx, e.host, ns);
    if (dr) return dr;
  }
  return undefined;
}

function overlay(base: Groups, top: Groups | undefined): Groups {
  if (!top) return base;
  return {
    loadBalancer: top.loadBalancer ?? base.loadBalancer,
    connectionPool: top.connectionPool ?? base.connectionPool,
    outlierDetection: top.outlierDetection ?? base.outlierDetection,
    tls: top.tls ?? base.tls,
  };
}

function forPort(p: TrafficPolicy | undefined, port: number): Groups {
  if (!p) return {};
  const { portLevelSettings, ...top } = p;
  const pl = portLevelSettings?.find((s) => s.port === port);
  return overlay(top, pl ? (({ port: _p, ...g }) => g)(pl) : undefined);
}

function strip<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

function build(e: HostEntry, p: HostPort, g: Groups, subset: string | undefined, selector: Record<string, string>, dr: DestinationRule | undefined): CompiledCluster {
  const pool = g.connectionPool;
  const od = g.outlierDetection;
  const lb = g.loadBalancer;
  return strip({
    name: clusterName(p.port, subset, e.host), host: e.host, port: p.port, subset, service: e.source, protocol: p.protocol, selector,
    loadBalancer: strip({
      simple: e.kind === 'Headless' ? 'PASSTHROUGH' : lb?.consistentHash ? 'CONSISTENT_HASH' : (!lb?.simple || lb.simple === 'UNSPECIFIED' ? 'LEAST_REQUEST' : lb.simple),
      consistentHash: lb?.consistentHash ? strip({ ...lb.consistentHash }) as Record<string, unknown> : undefined,
    }),
    connectionPool: strip({
      maxConnections: pool?.tcp?.maxConnections, connectTimeoutMs: pool?.tcp?.connectTimeoutMs ?? 10_000,
      http1MaxPendingRequests: pool?.http?.http1MaxPendingRequests, http2MaxRequests: pool?.http?.http2MaxRequests,
      maxRequestsPerConnection: pool?.http?.maxRequestsPerConnection, maxRetries: pool?.http?.maxRetries,
      idleTimeoutMs: pool?.http?.idleTimeoutMs ?? 3_600_000,
    }),
    outlierDetection: od ? strip({
      consecutive5xxErrors: od.consecutive5xxErrors ?? 5, consecutiveGatewayErrors: od.consecutiveGatewayErrors,
      intervalMs: od.intervalMs ?? 10_000, baseEjectionTimeMs: od.baseEjectionTimeMs ?? 30_000,
      maxEjectionPercent: od.maxEjectionPercent ?? 10, minHealthPercent: od.minHealthPercent ?? 0,
    }) as CompiledCluster['outlierDetection'] : undefined,
    tls: strip({ ...g.tls, mode: g.tls?.mode ?? 'AUTO' }) as CompiledCluster['tls'],
    destinationRule: dr ? `${dr.meta.namespace}/${dr.meta.name}` : undefined,
  });
}

/** Every cluster a proxy may route to: each host port, and each subset of its DestinationRule. */
export function compileClusters(ctx: ClusterContext): CompiledCluster[] {
  const out: CompiledCluster[] = [];
  for (const e of ctx.catalogue.all()) {
    if (e.kind === 'ExternalName') continue;
    const dr = destinationRuleFor(ctx, e);
    for (const p of e.ports) {
      const top = forPort(dr?.trafficPolicy, p.port);
      out.push(build(e, p, top, undefined, {}, dr));
      for (const ss of dr?.subsets ?? []) {
        out.push(build(e, p, overlay(top, forPort(ss.trafficPolicy, p.port)), ss.name, ss.labels, dr));
      }
    }
  }
  return out;
}
