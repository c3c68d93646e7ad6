// What the proxy holds of the compiled Istio config (controlplane/resources.ts):
// route tables per port, L4 services, clusters, the outbound listener and
// what was ignored. One store, filled either from control-plane v2 pushes
// (registry-client, one kind at a time) or from a static file
// (`--static-config`, for tests and debugging); read by the HTTP router, the
// TCP chain and the config dump. Every update is whole: readers never see
// half of one push.
import { EventEmitter } from 'node:events';
import type { CompiledCluster, CompiledL4Service, CompiledListener, CompiledProxyConfig, CompiledRouteTable, IgnoredConfig } from '../../controlplane/resources.js';
import { itemsOf, keyOf, type CompiledKind, type KindItem, type RouteTableEntry } from '../../controlplane/v2/kinds.js';

export class CompiledConfigStore extends EventEmitter<{ change: [] }> {
  private routeEntries = new Map<string, RouteTableEntry>();
  private routesByPort = new Map<number, CompiledRouteTable>();
  private l4ByKey = new Map<string, CompiledL4Service>();
  private l4ByPort = new Map<number, CompiledL4Service[]>();
  private clustersByName = new Map<string, CompiledCluster>();
  private ignoredByKey = new Map<string, IgnoredConfig>();
  private listenersByName = new Map<string, CompiledListener>();
  /**
   * Sidecar outboundTrafficPolicy for this proxy: REGISTRY_ONLY sends what
   * the registry does not know to nowhere (HTTP 502 NR, TCP reset). Set by
   * the static file (`outboundTrafficPolicy: {mode}`) and by the control
   * plane's outbound Listener push.
   */
  outboundTrafficPolicy: 'ALLOW_ANY' | 'REGISTRY_ONLY' = 'ALLOW_ANY';
  /** Bumped on every update; 0 = nothing compiled received yet (routing falls back to the registry alone). */
  generation = 0;

  /** Replace everything at once (the static file). */
  replace(config: CompiledProxyConfig): void {
    this.routeEntries = new Map(itemsOf(config).RouteTable.map((e) => [keyOf('RouteTable', e), e]));
    this.l4ByKey = new Map(config.l4.map((s) => [keyOf('L4Service', s), s]));
    this.clustersByName = new Map(config.clusters.map((c) => [c.name, c]));
    this.ignoredByKey = new Map(config.ignored.map((i) => [keyOf('Ignored', i), i]));
    this.listenersByName = new Map((config.listeners ?? []).map((l) => [l.name, l]));
    this.changed();
  }

  /**
   * One v2 push of one kind, already checked (item-schema.ts): `full`
   * replaces the kind, else upserts replace by key and deletes remove keys.
   */
  applyKind<K extends CompiledKind>(kind: K, full: boolean, upserts: KindItem[K][], deletes: string[]): void {
    const map = this.mapOf(kind) as Map<string, KindItem[K]>;
    const next = full ? new Map<string, KindItem[K]>() : new Map(map);
    for (const d of deletes) next.delete(d);
    for (const item of upserts) next.set(keyOf(kind, item), item);
    switch (kind) {
      case 'RouteTable': this.routeEntries = next as unknown as Map<string, RouteTableEntry>; break;
      case 'Cluster': this.clustersByName = next as unknown as Map<string, CompiledCluster>; break;
      case 'L4Service': this.l4ByKey = next as unknown as Map<string, CompiledL4Service>; break;
      case 'Listener': this.listenersByName = next as unknown as Map<string, CompiledListener>; break;
      case 'Ignored': this.ignoredByKey = next as unknown as Map<string, IgnoredConfig>; break;
    }
    this.changed();
  }

  setOutboundTrafficPolicy(mode: 'ALLOW_ANY' | 'REGISTRY_ONLY'): void {
    if (mode === this.outboundTrafficPolicy) return;
    this.outboundTrafficPolicy = mode;
    this.emit('change');
  }

  routeTable(port: number): CompiledRouteTable | undefined { return this.routesByPort.get(port); }
  l4Services(port: number): CompiledL4Service[] { return this.l4ByPort.get(port) ?? []; }
  cluster(name: string): CompiledCluster | undefined { return this.clustersByName.get(name); }
  ignored(): readonly IgnoredConfig[] { return [...this.ignoredByKey.values()]; }

  /** The whole config as a CompiledProxyConfig (config_dump). */
  snapshot(): CompiledProxyConfig {
    return {
      routes: [...this.routesByPort.values()],
      l4: [...this.l4ByKey.values()],
      clusters: [...this.clustersByName.values()],
      ignored: [...this.ignoredByKey.values()],
      listeners: [...this.listenersByName.values()],
    };
  }

  private mapOf(kind: CompiledKind): Map<unknown, unknown> {
    switch (kind) {
      case 'RouteTable': return this.routeEntries;
      case 'Cluster': return this.clustersByName;
      case 'L4Service': return this.l4ByKey;
      case 'Listener': return this.listenersByName;
      case 'Ignored': return this.ignoredByKey;
    }
  }

  private changed(): void {
    // The outbound Listener (v2 push, or a static file that has one) carries the Sidecar's policy.
    const outbound = this.listenersByName.get('outbound');
    if (outbound) this.outboundTrafficPolicy = outbound.outboundTrafficPolicy;
    // Tables by port, virtual hosts in the translator's order (by host).
    const tables = new Map<number, CompiledRouteTable>();
    const host = (name: string): string => name.slice(0, name.lastIndexOf(':'));
    for (const e of [...this.routeEntries.values()].sort((a, b) => a.port - b.port || host(a.virtualHost.name).localeCompare(host(b.virtualHost.name)))) {
      let t = tables.get(e.port);
      if (!t) tables.set(e.port, (t = { port: e.port, virtualHosts: [] }));
      t.virtualHosts.push(e.virtualHost);
    }
    this.routesByPort = tables;
    const byPort = new Map<number, CompiledL4Service[]>();
    for (const s of this.l4ByKey.values()) byPort.set(s.port, [...(byPort.get(s.port) ?? []), s]);
    this.l4ByPort = byPort;
    this.generation++;
    this.emit('change');
  }
}
