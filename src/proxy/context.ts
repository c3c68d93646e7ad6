// What every chain needs from the proxy (config, telemetry sinks, the
// current registry views, who this pod is) and the per-connection context
// a listener hands to a chain.
import type { Socket } from 'node:net';
import type { Logger } from '../common/log.js';
import type { ClusterManager } from './cluster/manager.js';
import type { CompiledConfigStore } from './compiled/store.js';
import type { ProxyConfig } from './config.js';
import type { HostRoutes } from './host-routes.js';
import type { ProxyMetrics } from './metrics.js';
import type { OriginalDst } from './original-dst.js';
import type { Detection } from './protocol/sniff.js';
import type { RouteTable } from './routing.js';
import type { AccessLog } from './telemetry/access-log.js';
import type { Tracer } from './telemetry/tracing/tracer.js';
import type { WorkloadMeta } from './telemetry/workload.js';
import type { MeshHooks } from './mtls/hooks.js';
import type { MeshPeer } from './mtls/inbound.js';

export type Direction = 'outbound' | 'inbound';

export interface Counters {
  accepted: number; routed: number; passthrough: number; inbound: number; failed: number; rejected: number; retries: number;
  http: number; httpRequests: number; httpRetries: number;
}

export interface ProxyDeps {
  config: ProxyConfig;
  logger: Logger;
  metrics: ProxyMetrics;
  accessLog: AccessLog;
  routes(): RouteTable;
  hosts(): HostRoutes;
  /** Compiled Istio config (routes, clusters, L4 routes); empty until pushed or loaded with --static-config. */
  compiled: CompiledConfigStore;
  /** Runtime state of the compiled clusters (balancers, pool limits, outlier detection). */
  clusters: ClusterManager;
  /** This pod's labels (VirtualService sourceLabels match them). */
  podLabels: Record<string, string>;
  /** This pod's workload, for the local side of every metric. */
  identity(): WorkloadMeta;
  counters: Counters;
  /** Trace context propagation and (with a collector) span export. */
  tracer?: Tracer;
  /** Mesh mTLS and authorization (src/proxy/mtls/hooks.ts); undefined with --mtls off. */
  mesh?: MeshHooks;
}

/** One accepted connection, as the listener hands it on. */
export interface Conn {
  direction: Direction;
  down: Socket;
  dst: OriginalDst;
  /** "ip:port" of the client, kept at accept (Node forgets it once the socket closes). */
  peer: string;
  /** Original destination as "ip:port". */
  local: string;
  startedAt: Date;
  start: number;
  detection?: Detection;
  /** Inbound captured by TPROXY: the app must see the client's own address (tcp/chain.ts dials transparently). */
  tproxied?: boolean;
  /** Inbound mesh mTLS terminated by this proxy: `down` is then the decrypted TLS socket. */
  mesh?: MeshPeer;
}

/** Something open that drain can cut and the 5 s flush can ask for its bytes so far. */
export interface Tracked {
  abort(): void;
  report?(): void;
}
