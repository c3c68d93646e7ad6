// What the proxy holds of the compiled Istio config (controlplane/resources.ts):
// route tables per port, L4 services, clusters, and what was ignored. One
// store, filled either from control-plane v2 pushes (registry-client) or from
// a static file (`--static-config`, for tests and debugging); read by the HTTP
// router, the TCP chain and the config dump. A replacement is whole: readers
// never see half of one update.
import { EventEmitter } from 'node:events';
import type { CompiledCluster, CompiledL4Service, CompiledProxyConfig, CompiledRouteTable, IgnoredConfig } from '../../controlplane/resources.js';

export class CompiledConfigStore extends EventEmitter<{ change: [] }> {
  private routesByPort = new Map<number, CompiledRouteTable>();
  private l4ByPort = new Map<number, CompiledL4Service[]>();
  private clustersByName = new Map<string, CompiledCluster>();
  private ignoredList: IgnoredConfig[] = [];
  /**
   * Sidecar outboundTrafficPolicy for this proxy: REGISTRY_ONLY sends what
   * the registry does not know to nowhere (HTTP 502 NR, TCP reset). Set by
   * the static file (`outboundTrafficPolicy: {mode}`) and by the control
   * plane's outbound Listener push.
   */
  outboundTrafficPolicy: 'ALLOW_ANY' | 'REGISTRY_ONLY' = 'ALLOW_ANY';
  /** Bumped on every replacement; 0 = nothing compiled received yet (routing falls back to the registry alone). */
  generation = 0;

  /** Replace everything at once (a full push, or the static file). */
  replace(config: CompiledProxyConfig): void {
    this.routesByPort = new Map(config.routes.map((t) => [t.port, t]));
    const l4 = new Map<number, CompiledL4Service[]>();
    for (const s of config.l4) l4.set(s.port, [...(l4.get(s.port) ?? []), s]);
    this.l4ByPort = l4;
    this.clustersByName = new Map(config.clusters.map((c) => [c.name, c]));
    this.ignoredList = [...config.ignored];
    this.generation++;
    this.emit('change');
  }

  setOutboundTrafficPolicy(mode: 'ALLOW_ANY' | 'REGISTRY_ONLY'): void {
    if (mode === this.outboundTrafficPolicy) return;
    this.outboundTrafficPolicy = mode;
    this.emit('change');
  }

  routeTable(port: number): CompiledRouteTable | undefined { return this.routesByPort.get(port); }
  l4Services(port: number): CompiledL4Service[] { return this.l4ByPort.get(port) ?? []; }
  cluster(name: string): CompiledCluster | undefined { return this.clustersByName.get(name); }
  ignored(): readonly IgnoredConfig[] { return this.ignoredList; }

  /** The whole config as a CompiledProxyConfig (config_dump, and the base a per-kind push modifies). */
  snapshot(): CompiledProxyConfig {
    return {
      routes: [...this.routesByPort.values()],
      l4: [...this.l4ByPort.values()].flat(),
      clusters: [...this.clustersByName.values()],
      ignored: [...this.ignoredList],
    };
  }
}
