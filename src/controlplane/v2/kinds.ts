// The resource kinds of control plane v2 (docs/controlplane-v2.md) and how
// each is keyed. One table so the agent's views, the proxy's client and the
// schema checks agree on names, keys and the order of first pushes.
import type { CompiledCluster, CompiledL4Service, CompiledListener, CompiledProxyConfig, CompiledVirtualHost, IgnoredConfig } from '../resources.js';
import type { RegistryService } from '../types.js';
import type { SecurityItem } from '../../security/items.js';

/**
 * In push order on connect: the registry first (a route never names a host
 * the proxy cannot resolve), then clusters, then what refers to clusters.
 * `Registry` is one kind (a Service with its endpoints) rather than the
 * design's Service + Endpoints pair: see docs/controlplane-v2.md, "Registry kind".
 * `Security` (the workload's PeerAuthentication outcome and the
 * AuthorizationPolicies that apply to it) is compiled per workload, not per
 * view (v2/security-feed.ts), and refers to nothing else.
 */
export const KINDS = ['Registry', 'Cluster', 'RouteTable', 'L4Service', 'Listener', 'Ignored', 'Security'] as const;
export type Kind = (typeof KINDS)[number];
export const COMPILED_KINDS = ['Cluster', 'RouteTable', 'L4Service', 'Listener', 'Ignored'] as const satisfies readonly Kind[];
export type CompiledKind = (typeof COMPILED_KINDS)[number];

/**
 * A route table travels as its virtual hosts, one item each: a VirtualService
 * change then resends one host's routes, not the whole port's table (at 10k
 * services on port 80 that table is megabytes). The proxy reassembles the
 * tables (CompiledConfigStore), ordered by host as the translator orders them.
 */
export interface RouteTableEntry { port: number; virtualHost: CompiledVirtualHost }

export interface KindItem {
  Registry: RegistryService;
  Cluster: CompiledCluster;
  RouteTable: RouteTableEntry;
  L4Service: CompiledL4Service;
  Listener: CompiledListener;
  Ignored: IgnoredConfig;
  Security: SecurityItem;
}

export const isKind = (k: unknown): k is Kind => typeof k === 'string' && (KINDS as readonly string[]).includes(k);

/** The key of one item within its kind (upserts replace by it, deletes name it). */
export function keyOf<K extends Kind>(kind: K, item: KindItem[K]): string {
  switch (kind) {
    case 'Registry': { const s = item as RegistryService; return `${s.namespace}/${s.name}`; }
    case 'Cluster': return (item as CompiledCluster).name;
    case 'RouteTable': { const e = item as RouteTableEntry; return `${e.port}|${e.virtualHost.name}`; }
    case 'L4Service': { const s = item as CompiledL4Service; return `${s.host}:${s.port}`; }
    case 'Listener': return (item as CompiledListener).name;
    case 'Ignored': { const i = item as IgnoredConfig; return `${i.resource}|${i.field}|${i.message}`; }
    case 'Security': return (item as SecurityItem).name;
  }
  throw new Error(`unknown kind ${String(kind)}`);
}

/** A compiled config split into the items of each compiled kind. */
export function itemsOf(config: CompiledProxyConfig): { [K in CompiledKind]: KindItem[K][] } {
  return {
    Cluster: config.clusters,
    RouteTable: config.routes.flatMap((t) => t.virtualHosts.map((virtualHost) => ({ port: t.port, virtualHost }))),
    L4Service: config.l4,
    Listener: config.listeners ?? [],
    Ignored: config.ignored,
  };
}
