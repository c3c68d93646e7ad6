// The proxy's runtime state per compiled cluster: its load balancer,
// connection-pool gate, outlier detector and upstream connection pools
// (connectTimeout and idleTimeout are per cluster). Built lazily from the
// CompiledConfigStore; a cluster whose compiled form did not change keeps
// its state (in-flight counts, ejections) across config updates.
import type { CompiledCluster } from '../../controlplane/resources.js';
import type { CompiledConfigStore } from '../compiled/store.js';
import type { ProxyMetrics } from '../metrics.js';
import { endpointKey } from '../lb.js';
import { UpstreamPools, type Endpoint } from '../http/upstream.js';
import type { ConnectionOptions } from 'node:tls';
import type { RouteTable, Target } from '../routing.js';
import { Balancer, type SimplePolicy } from './balancer.js';
import { clusterTargets } from './endpoints.js';
import type { ConsistentHash } from './hash-key.js';
import { OutlierDetector } from './outlier.js';
import { PoolGate } from './pool-limits.js';

/** TLS options for one pooled connection to an endpoint of this cluster (src/proxy/mtls/hooks.ts tlsFor): its DestinationRule tls, else auto mTLS. */
export type ClusterMeshTls = (ep: Endpoint, proto: 'h1' | 'h2', cluster: { tls: CompiledCluster['tls']; host: string }) => ConnectionOptions | undefined;

export class ClusterRuntime {
  readonly balancer: Balancer;
  readonly gate: PoolGate;
  readonly outlier?: OutlierDetector;
  readonly pools: UpstreamPools;
  readonly consistentHash?: ConsistentHash;

  constructor(readonly compiled: CompiledCluster, readonly json: string, onEjected: (n: number) => void, meshTls?: ClusterMeshTls) {
    const lb = compiled.loadBalancer;
    this.consistentHash = lb.consistentHash as ConsistentHash | undefined;
    const ch = this.consistentHash;
    this.balancer = new Balancer(lb.simple as SimplePolicy, ch ? (ch.maglev ? { kind: 'maglev', tableSize: ch.maglev.tableSize } : { kind: 'ring', minimumRingSize: ch.ringHash?.minimumRingSize }) : undefined);
    const cp = compiled.connectionPool;
    this.gate = new PoolGate({ maxConnections: cp.maxConnections, http1MaxPendingRequests: cp.http1MaxPendingRequests, http2MaxRequests: cp.http2MaxRequests, maxRetries: cp.maxRetries });
    // Auto mTLS to mesh endpoints, or what the DestinationRule's tls says (DISABLE, ISTIO_MUTUAL, SIMPLE, MUTUAL).
    const ref = { tls: compiled.tls, host: compiled.host };
    this.pools = new UpstreamPools(cp.connectTimeoutMs, cp.idleTimeoutMs, cp.maxRequestsPerConnection, meshTls ? (ep, proto) => meshTls(ep, proto, ref) : undefined);
    if (compiled.outlierDetection) this.outlier = new OutlierDetector(compiled.outlierDetection, onEjected);
  }

  /** Endpoints that take traffic now (registry ∩ subset selector, minus ejected ones). */
  targets(routes: RouteTable): Target[] {
    const all = clusterTargets(routes, this.compiled);
    return this.outlier ? this.outlier.filter(all, endpointKey) : all;
  }

  close(): void {
    this.outlier?.stop();
    this.pools.close();
  }
}

export class ClusterManager {
  private readonly runtimes = new Map<string, ClusterRuntime>();
  private generation = -1;

  /** `d.meshTls`: auto mTLS for the clusters' pools (src/proxy/mtls/hooks.ts tlsFor). */
  constructor(private readonly d: { routes(): RouteTable; metrics: ProxyMetrics; meshTls?: ClusterMeshTls }, private readonly store: CompiledConfigStore) {}

  /** Every cluster runtime's upstream pools (for /stats, summed with the default router's). */
  pools(): UpstreamPools[] { return [...this.runtimes.values()].map((rt) => rt.pools); }

  get(name: string): ClusterRuntime | undefined {
    if (this.generation !== this.store.generation) this.resync();
    const c = this.store.cluster(name);
    if (!c) return undefined;
    let rt = this.runtimes.get(name);
    if (!rt) {
      let before = 0;
      rt = new ClusterRuntime(c, JSON.stringify(c), (n) => {
        this.d.metrics.ejectionsActive.set({ cluster_name: name }, n);
        if (n > before) this.d.metrics.ejectionsEnforced.inc({ cluster_name: name }, n - before);
        before = n;
      }, this.d.meshTls);
      this.runtimes.set(name, rt);
    }
    return rt;
  }

  /** Drop the state of clusters that are gone or changed (a changed DestinationRule starts afresh). */
  private resync(): void {
    this.generation = this.store.generation;
    for (const [name, rt] of this.runtimes) {
      const c = this.store.cluster(name);
      if (!c || JSON.stringify(c) !== rt.json) { rt.close(); this.runtimes.delete(name); }
    }
  }

  /** /clusters: every compiled cluster with its policy, limits, and endpoints with counters and outlier state. */
  view(): unknown[] {
    return this.store.snapshot().clusters.map((c) => {
      const rt = this.get(c.name)!;
      const all = clusterTargets(this.d.routes(), c);
      return {
        name: c.name, service: c.service, subset: c.subset, selector: c.selector, lbPolicy: c.loadBalancer.simple, consistentHash: c.loadBalancer.consistentHash,
        connectionPool: { ...c.connectionPool, active: rt.gate.active, pending: rt.gate.pendingCount, retriesActive: rt.gate.retriesActive, overflows: rt.gate.overflows },
        outlierDetection: c.outlierDetection ? { ...c.outlierDetection, ejectionsTotal: rt.outlier!.ejectionsTotal, ejectedNow: rt.outlier!.ejectedCount() } : undefined,
        endpoints: all.map((t) => ({
          address: `${t.ip}:${t.port}`, pod: t.endpoint.podName, labels: t.endpoint.labels,
          health: rt.outlier?.isEjected(endpointKey(t)) ? 'EJECTED' : 'HEALTHY', ...rt.balancer.stats(t),
          ...(rt.outlier ? { outlier: rt.outlier.hostStats(endpointKey(t)) } : {}),
        })),
      };
    });
  }

  close(): void {
    for (const rt of this.runtimes.values()) rt.close();
    this.runtimes.clear();
  }
}
