// The native HTTP/1.1 fast path (native/src/h1/): which connections it
// takes, the tables it routes with, and the handoff. JavaScript decides per
// connection, once, after protocol detection said HTTP/1.x: the native path
// takes it when nothing the connection's requests could need is missing
// there — no mesh mTLS or AuthorizationPolicy (MeshHooks.nativeHttp), access log off,
// no span export, no TPROXY, outbound ports without a compiled Istio route
// table (VirtualService matches, faults, mirrors, header ops, CORS,
// redirects, rewrites, per-route retries and timeouts) and without
// REGISTRY_ONLY, inbound ports whose app speaks HTTP/1.1. Everything else
// stays on the JS chain (router.ts). What the native path implements is the
// registry's default route: Host/authority + port → service port (every
// name HostRoutes gives it), passthrough to the original destination for
// unknown hosts, LEAST_REQUEST per request, keep-alive pools, Istio's
// default retries, the exchange and trace headers.
//
// The tables are rebuilt when the registry view, the host view or this
// proxy's identity changes (checked at each handoff: object identity,
// no per-request work), and pushed with a generation number that the
// aggregated metrics carry back (native-h1-telemetry.ts folds them).
import type { Socket } from 'node:net';
import { httpEngine, type HttpEngineConfig, type HttpEngineStats } from '../../native/addon.js';
import { clusterTableAvailable, upsertCluster } from '../../native/cluster-table.js';
import { clusterName } from '../../istio/hosts.js';
import { registryClusters } from '../native-l4/clusters.js';
import { handoffFd, takeBuffered } from '../../native/splice-pump.js';
import type { CompiledHttpRoute, CompiledRouteTable } from '../../controlplane/resources.js';
import type { Conn, ProxyDeps } from '../context.js';
import type { HostRoutes } from '../host-routes.js';
import { declaredProtocol, upstreamIsH2 } from '../protocol/declared.js';
import type { RouteTable } from '../routing.js';
import { encodePeer, type WorkloadMeta } from '../telemetry/workload.js';
import { NativeTelemetry, type NativeRoute } from './native-h1-telemetry.js';
import { h2CodecUsable, h2UpstreamDeclared } from './native-h2.js';

export type HttpEngineMode = 'native' | 'js';

/** What one pushed generation of tables means, for folding its metrics. */
export interface Generation { routes: NativeRoute[] }

export class NativeHttpPath {
  private readonly engine = clusterTableAvailable() ? httpEngine() : undefined;
  private readonly telemetry: NativeTelemetry;
  private generation = 0;
  private built?: { routes: RouteTable; hosts: HostRoutes; me: WorkloadMeta };
  private readonly timer: NodeJS.Timeout | undefined;
  /** Connections handed over / refused by the handoff itself (the socket could not be taken). */
  handedOver = 0;
  private readonly defaultTables = new WeakMap<CompiledRouteTable, boolean>();
  handoffFailures = 0;
  /** Whether h2c connections may go to the engine's HTTP/2 codec (node's nghttp2 new enough: native-h2.ts). */
  private readonly h2 = h2CodecUsable((this.engine as { httpEngineNghttp2Header?: string } | undefined)?.httpEngineNghttp2Header);

  constructor(private readonly d: ProxyDeps, mode: HttpEngineMode) {
    if (mode !== 'native') this.engine = undefined;
    this.telemetry = new NativeTelemetry(d);
    // Metrics come back in batches: once a second, and before every scrape (fold()).
    this.timer = this.engine ? setInterval(() => this.fold(), 1000) : undefined;
    this.timer?.unref();
  }

  get enabled(): boolean {
    return this.engine !== undefined;
  }

  /** Whether every request this connection can carry is one the native path serves as the JS chain would. */
  eligible(conn: Conn, proto: 'h1' | 'h2' = 'h1'): boolean {
    const d = this.d;
    if (!this.engine || (d.mesh && !d.mesh.nativeHttp(conn)) || conn.tproxied || d.accessLog.enabled || d.tracer?.exporting) return false;
    if (proto === 'h2' && !this.h2) return false;
    if (conn.direction === 'outbound') {
      if (d.compiled.outboundTrafficPolicy === 'REGISTRY_ONLY') return false;
      if (proto === 'h2' && !h2UpstreamDeclared(d, conn)) return false;
      const table = d.compiled.routeTable(conn.dst.port);
      return table === undefined || this.defaultOnly(table);
    }
    if (proto === 'h2') return h2UpstreamDeclared(d, conn);
    const declared = declaredProtocol(d.routes().inboundPort(conn.dst.ip, conn.dst.port));
    return !upstreamIsH2(declared);
  }

  /**
   * A compiled route table (control plane v2) that holds only each service's implicit default route to its own
   * cluster, with no DestinationRule behind it: routing it natively by the registry's Host table is the same.
   */
  private defaultOnly(table: CompiledRouteTable): boolean {
    let v = this.defaultTables.get(table);
    if (v === undefined) {
      v = table.virtualHosts.every((vh) => vh.routes.length === 1 && plainDefault(vh.routes[0], this.d));
      this.defaultTables.set(table, v);
    }
    return v;
  }

  /** Hand the connection to the native path; false = nothing was taken (the JS chain serves it). */
  take(conn: Conn, proto: 'h1' | 'h2' = 'h1'): boolean {
    if (!this.engine || !this.eligible(conn, proto)) return false;
    const sock = conn.down as Socket;
    let fd: number;
    try {
      fd = handoffFd(sock, 'client');
    } catch {
      this.handoffFailures++;
      return false;
    }
    try {
      this.sync();
    } catch (err) {
      // A table the engine refuses (it names the field): this connection and the next go to the JS chain.
      this.handoffFailures++;
      this.d.logger.error({ err: String(err) }, 'native HTTP path: tables refused; serving with the JS chain');
      return false;
    }
    const initial = takeBuffered(sock);
    try {
      this.engine.httpEngineAdopt(fd, { inbound: conn.direction === 'inbound', dstIp: conn.dst.ip, dstPort: conn.dst.port, peerIp: hostOf(conn.peer), initial, h2: proto === 'h2' });
    } catch {
      if (initial.length > 0) sock.unshift(initial);
      this.handoffFailures++;
      return false;
    }
    // Same tick as the adopt: Node's fd closes before libuv polls again (the engine holds a duplicate).
    sock.destroy();
    this.handedOver++;
    return true;
  }

  /** Takes what the engine aggregated into the istio_* metrics. */
  fold(): void {
    if (!this.engine) return;
    try {
      this.telemetry.fold(this.engine.httpEngineTakeStats());
    } catch (err) {
      // Metrics must never take the proxy down (this runs from a timer): the batch is lost, and said so.
      this.d.logger.error({ err: String(err) }, 'native HTTP path: could not fold a metrics batch');
    }
  }

  stats(): (HttpEngineStats & { handedOver: number; handoffFailures: number; generation: number }) | undefined {
    const s = this.engine?.httpEngineStats();
    return s ? { ...s, handedOver: this.handedOver, handoffFailures: this.handoffFailures, generation: this.generation } : undefined;
  }

  drain(): void {
    this.engine?.httpEngineDrain();
    this.fold();
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.fold();
  }

  /** Pushes new tables when the registry view, the Host view or the identity changed since the last push. */
  private sync(): void {
    const d = this.d;
    const routes = d.routes();
    const hosts = d.hosts();
    const me = d.identity();
    const b = this.built;
    if (b && b.routes === routes && b.hosts === hosts && b.me === me) return;
    // The endpoints requests are balanced over live in the process's native cluster table (shared with the L4
    // path, which replaces the whole table on its own pushes — registry clusters included; in-flight counts are
    // kept across pushes): the registry's clusters first, then the tables naming them. Upserts, so the L4 path's
    // own clusters are never dropped by this push.
    if (!b || b.routes !== routes) {
      for (const c of registryClusters(routes, { connectTimeoutMs: d.config.connectTimeoutMs, connectAttempts: d.config.connectAttempts }).values()) upsertCluster(c.spec);
    }
    const cfg = buildTables(d, routes, hosts, me, ++this.generation);
    this.telemetry.generation(this.generation, cfg.meaning);
    this.engine!.httpEngineConfigure(cfg.config);
    this.built = { routes, hosts, me };
  }
}

function buildTables(d: ProxyDeps, routes: RouteTable, hosts: HostRoutes, me: WorkloadMeta, generation: number): { config: HttpEngineConfig; meaning: Generation } {
  const index = new Map<string, number>();
  const meaning: NativeRoute[] = [];
  const config: HttpEngineConfig = {
    generation, routes: [], hosts: [], meshPods: [], peerHeader: encodePeer(me), passthroughRetries: d.config.httpRetries,
    samplingPercent: d.tracer?.samplingPercent ?? 1, idleTimeoutMs: d.config.idleTimeoutMs, connectTimeoutMs: d.config.connectTimeoutMs,
    headerTimeoutMs: 60_000, inboundSourceV4: d.config.inboundSourceV4 ?? '',
    durationBounds: d.metrics.duration.boundaries, sizeBounds: d.metrics.requestBytes.boundaries,
  };
  for (const [key, r] of hosts.entries()) {
    const id = `${r.service.namespace}/${r.service.name}|${r.servicePort.port}`;
    let i = index.get(id);
    if (i === undefined) {
      i = meaning.length;
      index.set(id, i);
      const targets = routes.targets({ service: r.service, servicePort: r.servicePort });
      const headless = r.service.kind === 'Headless';
      const cluster = clusterName(r.servicePort.port, undefined, `${r.service.name}.${r.service.namespace}.svc.${routes.clusterDomain}`);
      config.routes.push({ cluster, endpoints: headless ? targets.map((t) => [t.ip, t.port]) : [], headless, meshPeer: true, retries: d.config.httpRetries });
      meaning.push({ service: r.service, servicePort: r.servicePort, targets, clusterDomain: routes.clusterDomain });
    }
    config.hosts.push([key, i]);
  }
  for (const svc of routes.services()) for (const ep of svc.endpoints) if (ep.podName) config.meshPods.push(ep.ip);
  return { config, meaning: { routes: meaning } };
}

function plainDefault(r: CompiledHttpRoute, d: ProxyDeps): boolean {
  if (r.source !== 'default' || r.match.length > 0 || r.fault || r.mirrors.length > 0 || r.headers || r.rewrite || r.corsPolicy || r.timeoutMs !== undefined) return false;
  if (!('route' in r.action) || r.action.route.length !== 1 || r.action.route[0].headers) return false;
  const c = d.compiled.cluster(r.action.route[0].cluster);
  return c !== undefined && !c.destinationRule && c.subset === undefined && c.outlierDetection === undefined && c.tls.mode === 'AUTO';
}

/** "ip:port" / "[v6]:port" → ip. */
function hostOf(peer: string): string {
  const m = /^\[?(.*?)\]?:\d+$/.exec(peer);
  return m ? m[1] : peer;
}
