// The TCP chain: opaque bytes between the client and an upstream, moved by
// the splice pump (or Node streams). Outbound: the original destination's
// service route → an endpoint (least connections, next endpoint on connect
// failure), or passthrough when the destination is not a known service.
// Inbound: the app on the original port over loopback, from 127.0.0.6 so
// the capture rules let it through; reset the client when nothing listens.
// Bytes a protocol sniffer looked at are still in the client socket's
// buffer; both byte movers send them first.
import type { CompiledCluster } from '../../controlplane/resources.js';
import { clusterName, inboundClusterName } from '../../istio/hosts.js';
import type { Socket } from 'node:net';
import type { RegistryService } from '../../controlplane/types.js';
import { pumpConfigure, pumpStats, type PumpStats } from '../../native/pump.js';
import { canonicalIp, familyOf, hostPort } from '../addr.js';
import type { Conn, Direction, ProxyDeps, Tracked } from '../context.js';
import { setPeerLabels, unknownLabels, workloadLabel, type IstioTcpLabels } from '../metrics.js';
import { connectUpstream, ConnectError, pumpMode, relay, spliceRelay, type RelayHandle } from '../relay.js';
import { connectPumpAvailable } from '../../native/splice-pump.js';
import { wantsMtls } from '../mtls/outbound.js';
import { dialNative, type DialPath } from './native-dial.js';
import { LeastConnections, type RouteTable, targetKey, type Target } from '../routing.js';
import { sniff } from '../protocol/sniff.js';
import { l4RouteFor, l4ServiceFor } from './l4-routes.js';
import { connectTransparent } from '../transparent.js';
import { workloadMeta } from '../telemetry/workload.js';
import { nativeTlsOf, relayNative } from '../mtls/native-socket.js';
import { inboundLabels } from './inbound-labels.js';

export interface Upstream { ip: string; port: number; endpoint?: Target['endpoint'] }

/** A compiled cluster's way of choosing and accounting endpoints (default: least connections). */
interface Via {
  pick(targets: Upstream[], tried: Set<string>): Upstream | undefined;
  acquire(t: Upstream): () => void;
  failed(t: Upstream): void;
  connectTimeoutMs: number;
  /** The cluster's DestinationRule tls and host (src/proxy/mtls/cluster-tls.ts). */
  cluster?: { tls?: CompiledCluster['tls']; host?: string };
}

export class TcpChain {
  readonly lb = new LeastConnections();
  readonly pump: 'splice' | 'stream';
  /** The pump dials plain-TCP upstreams itself (no upstream net.Socket): tcp/native-dial.ts. */
  readonly nativeDial: boolean;

  constructor(private readonly d: ProxyDeps, private readonly open: Set<Tracked>) {
    this.pump = pumpMode(d.config.pump);
    this.nativeDial = this.pump === 'splice' && connectPumpAvailable();
    // Engine-wide, so set once before the first connection creates the pump thread.
    if (this.pump === 'splice') pumpConfigure({ busyPollUs: d.config.busyPollUs });
  }

  /** The splice pump thread's counters (busy-poll hits, spin time), when splicing. */
  pumpStats(): (PumpStats & { nativeDials: number }) | undefined {
    return this.pump === 'splice' ? { ...pumpStats(), nativeDials: this.nativeDials } : undefined;
  }

  /** Connections whose upstream the pump thread dialled (tcp/native-dial.ts). */
  private nativeDials = 0;

  /**
   * Relay the connection. Resolves 'h1'/'h2' instead when detection had
   * timed out and the client's first bytes, arriving before any from the
   * server, turn out to be HTTP after all: the speculative upstream
   * connection is dropped unused and the HTTP chain takes over.
   */
  async handle(conn: Conn): Promise<LateVerdict> {
    return conn.direction === 'outbound' ? this.outbound(conn) : this.inbound(conn);
  }

  private async outbound(conn: Conn): Promise<LateVerdict> {
    const { dst } = conn;
    const routes = this.d.routes();
    const labels = unknownLabels('source');
    setPeerLabels(labels, 'source', this.d.identity());
    const viaCompiled = this.compiledL4(conn, labels);
    if (viaCompiled) return viaCompiled;
    const route = routes.lookup(dst.ip, dst.port);
    if (!route && this.d.compiled.outboundTrafficPolicy === 'REGISTRY_ONLY') {
      // Sidecar outboundTrafficPolicy REGISTRY_ONLY: an unknown destination is reset (Istio's BlackHoleCluster).
      labels.destination_service_name = 'BlackHoleCluster';
      labels.response_flags = 'UH';
      this.finishFailed(conn, labels, 'destination not in the service registry (outboundTrafficPolicy REGISTRY_ONLY)', undefined, 'BlackHoleCluster');
      return 'done';
    }
    if (!route) {
      // Not a service we know (or no registry yet): the pod must still reach it.
      this.d.counters.passthrough++;
      labels.destination_service_name = 'PassthroughCluster';
      const pod = routes.podByIp(dst.ip);
      if (pod) setPeerLabels(labels, 'destination', workloadMeta(workloadLabel(pod.name), pod.namespace, {}, pod.cluster ?? this.d.config.clusterId));
      return this.connectAndRelay(conn, [{ ip: dst.ip, port: dst.port }], labels, 'PassthroughCluster');
    }
    this.d.counters.routed++;
    setServiceLabels(labels, route.service, routes);
    const targets = routes.targets(route);
    const cluster = clusterName(route.servicePort.port, undefined, labels.destination_service);
    if (targets.length === 0) {
      labels.response_flags = 'UH'; // no healthy upstream
      this.finishFailed(conn, labels, 'no ready endpoint', undefined, cluster);
      return 'done';
    }
    return this.connectAndRelay(conn, targets, labels, cluster);
  }

  /**
   * The compiled tcp/tls route for this connection, when the dialled port
   * has compiled L4 services and one of them is the destination (by
   * address, or SNI for TLS): weighted cluster → its balancer, subset and
   * outlier state, maxConnections. undefined = not compiled, the registry
   * route applies.
   */
  private compiledL4(conn: Conn, labels: IstioTcpLabels): Promise<LateVerdict> | undefined {
    const { dst } = conn;
    const services = this.d.compiled.l4Services(dst.port);
    if (services.length === 0) return undefined;
    const req = { ip: dst.ip, port: dst.port, sni: conn.detection?.sni, sourceLabels: this.d.podLabels, sourceNamespace: this.d.identity().namespace };
    const svc = l4ServiceFor(services, req);
    if (!svc) return undefined;
    this.d.counters.routed++;
    const hit = l4RouteFor(svc, req);
    const rt = hit && this.d.clusters.get(hit.cluster.cluster);
    const [ns, name] = (rt?.compiled.service ?? `/${svc.host}`).split('/');
    labels.destination_service = svc.host;
    labels.destination_service_name = name;
    labels.destination_service_namespace = ns || 'unknown';
    labels.destination_workload_namespace = ns || 'unknown';
    if (!rt) {
      labels.response_flags = 'NR';
      this.finishFailed(conn, labels, hit ? `cluster ${hit.cluster.cluster} not found` : 'no matching tcp/tls route', undefined, hit?.cluster.cluster ?? '-');
      return Promise.resolve('done');
    }
    const passthrough = rt.compiled.loadBalancer.simple === 'PASSTHROUGH';
    const targets: Upstream[] = passthrough ? [{ ip: dst.ip, port: dst.port }] : rt.targets(this.d.routes());
    if (targets.length === 0) {
      labels.response_flags = 'UH';
      this.finishFailed(conn, labels, 'no healthy upstream', undefined, rt.compiled.name);
      return Promise.resolve('done');
    }
    const admitted = rt.gate.admitConnection();
    if (!admitted) {
      this.d.metrics.poolOverflow.inc({ cluster_name: rt.compiled.name, limit: 'maxConnections' });
      labels.response_flags = 'UO';
      this.finishFailed(conn, labels, 'connection pool overflow (maxConnections)', undefined, rt.compiled.name);
      return Promise.resolve('done');
    }
    const sourceIp = canonicalIp(conn.down.remoteAddress ?? '');
    const hashKey = rt.consistentHash?.useSourceIp ? sourceIp : undefined;
    const via: Via = {
      pick: (ts, tried) => (passthrough ? ts[0] : rt.balancer.pick(ts, tried, hashKey)),
      acquire: (t) => rt.balancer.acquire(t),
      failed: (t) => rt.outlier?.record(targetKey(t), { failure: 'connect' }, targets.length),
      connectTimeoutMs: rt.compiled.connectionPool.connectTimeoutMs,
      cluster: { tls: rt.compiled.tls, host: rt.compiled.host },
    };
    return this.connectAndRelay(conn, targets, labels, rt.compiled.name, undefined, undefined, via).finally(admitted);
  }

  private async inbound(conn: Conn): Promise<LateVerdict> {
    const { dst, down } = conn;
    this.d.counters.inbound++;
    const labels = inboundLabels(this.d, this.d.routes(), dst.ip, dst.port, down.remoteAddress ?? '');
    this.d.mesh?.labels(labels, conn);
    if (this.d.mesh && !this.d.mesh.authorizeTcp(conn)) return 'done'; // AuthorizationPolicy: the connection is closed
    if (conn.tproxied) {
      // The app sees the real client: connect to the original destination
      // (the pod IP) from the client's own address (see transparent.ts).
      const client = { ip: canonicalIp(down.remoteAddress ?? ''), port: down.remotePort ?? 0 };
      const dial = (t: { ip: string; port: number }) => connectTransparent({
        ip: t.ip, port: t.port, sourceIp: client.ip, sourcePort: client.port, mark: this.d.config.tproxyMark, timeoutMs: this.d.config.connectTimeoutMs,
      });
      return this.connectAndRelay(conn, [dst], labels, inboundClusterName(dst.port), undefined, dial);
    }
    return this.connectAndRelay(conn, [inboundTarget(dst.ip, dst.port)], labels, inboundClusterName(dst.port), this.inboundSource(dst.ip));
  }

  inboundSource(dstIp: string): string | undefined {
    return familyOf(dstIp) === 4 ? this.d.config.inboundSourceV4 : undefined;
  }

  private async connectAndRelay(
    conn: Conn, targets: Upstream[], labels: IstioTcpLabels, cluster: string, localAddress?: string,
    dial?: (t: { ip: string; port: number }) => Promise<Socket>, via?: Via,
  ): Promise<LateVerdict> {
    if (!dial && this.nativeDialFor(conn, targets, via)) {
      this.nativeDials++;
      const r = await dialNative(this.path(conn, targets, labels, cluster, via), localAddress);
      if (r) return r;
      this.nativeDials--; // undefined: the client socket could not be handed off; Node dials instead
    }
    const { down, direction } = conn;
    const cfg = this.d.config;
    const tried = new Set<string>();
    let lastErr: ConnectError | undefined;
    let downGone = false;
    down.once('close', () => { downGone = true; });
    const attempts = Math.min(cfg.connectAttempts, targets.length);
    for (let i = 0; i < attempts; i++) {
      const t = this.pick(targets, tried, via);
      if (!t) break;
      if (i > 0) this.d.counters.retries++;
      const release = via ? via.acquire(t) : this.lb.acquire(t as Target);
      let up: Socket;
      try {
        up = await (dial ? dial(t) : connectUpstream({ ip: t.ip, port: t.port, timeoutMs: via?.connectTimeoutMs ?? cfg.connectTimeoutMs, localAddress }));
        // Auto mTLS to a mesh endpoint, or what the cluster's DestinationRule tls says (src/proxy/mtls/cluster-tls.ts);
        // a failed handshake counts as a failed connect.
        // Native TLS unless the upstream may have to speak first to settle the protocol (lateVerdict reads it).
        if (direction === 'outbound' && this.d.mesh) up = await this.d.mesh.upgrade(up, t.endpoint, 'tcp', via?.cluster, conn.detection?.reason !== 'timeout');
      } catch (err) {
        release();
        lastErr = this.connectFailed(direction, t, via, err instanceof ConnectError ? err : new ConnectError('ECONNFAILED', String(err)));
        if (downGone) break;
        continue;
      }
      if (downGone || down.destroyed) { release(); up.resetAndDestroy(); return 'done'; }
      // Until a relay owns it, a reset of the upstream must not be an unhandled 'error' (it would kill the process).
      up.on('error', () => {});
      if (conn.detection?.reason === 'timeout') {
        const late = await lateVerdict(down, up, cfg.idleTimeoutMs);
        if (late !== 'tcp') { release(); up.destroy(); return late; }
        if (down.destroyed || up.destroyed) { release(); if (!down.destroyed) down.resetAndDestroy(); if (!up.destroyed) up.resetAndDestroy(); return 'done'; }
      }
      const upLocal = up.localAddress ? hostPort(canonicalIp(up.localAddress), up.localPort ?? 0) : undefined;
      if (direction === 'outbound') this.d.mesh?.labels(labels, conn, up);
      // TLS sockets have no file descriptor to splice (kernel TLS would give them one: docs/architecture.md, "Mesh mTLS").
      const encrypted = (down as { encrypted?: boolean }).encrypted || (up as { encrypted?: boolean }).encrypted;
      // A mesh mTLS side held by the native TLS relay (src/proxy/mtls/native-tls.ts) relays there, in native code.
      const nativeDown = nativeTlsOf(down);
      const nativeUp = nativeTlsOf(up);
      const handle = nativeDown ? relayNative(nativeDown, up, true, cfg.idleTimeoutMs)
        : nativeUp ? relayNative(nativeUp, down, false, cfg.idleTimeoutMs)
          : this.pump === 'splice' && !encrypted ? spliceRelay(down, up, cfg.idleTimeoutMs) : relay(down, up, cfg.idleTimeoutMs);
      return this.relayed(conn, t, labels, cluster, handle, upLocal, release);
    }
    return this.allFailed(conn, labels, cluster, lastErr, tried.size);
  }

  /**
   * Whether the pump thread can dial this connection's upstream itself
   * (tcp/native-dial.ts): plain TCP on both sides, no TPROXY source
   * address, no speculative connect after a detection timeout, and no
   * endpoint that would get outbound mTLS (that needs a Node TLS socket).
   */
  private nativeDialFor(conn: Conn, targets: Upstream[], via?: Via): boolean {
    // A client side held by the native TLS relay (inbound mesh mTLS) has no plaintext fd to hand over.
    if (!this.nativeDial || conn.detection?.reason === 'timeout' || (conn.down as { encrypted?: boolean }).encrypted || nativeTlsOf(conn.down)) return false;
    if (conn.direction === 'inbound' || !this.d.mesh) return true;
    // The cluster's DestinationRule tls (src/proxy/mtls/cluster-tls.ts): DISABLE is plaintext; SIMPLE,
    // MUTUAL and ISTIO_MUTUAL originate TLS; unset is auto mTLS, TLS for mesh endpoints only.
    const mode: string | undefined = via?.cluster?.tls?.mode;
    if (mode === 'DISABLE') return true;
    if (mode !== undefined && mode !== 'AUTO') return false;
    return !targets.some((t) => wantsMtls(t.endpoint));
  }

  /** What dialNative needs of this chain for one connection. */
  private path(conn: Conn, targets: Upstream[], labels: IstioTcpLabels, cluster: string, via?: Via): DialPath {
    return {
      conn, targets, cluster, idleTimeoutMs: this.d.config.idleTimeoutMs,
      attempts: Math.min(this.d.config.connectAttempts, targets.length),
      connectTimeoutMs: via?.connectTimeoutMs ?? this.d.config.connectTimeoutMs,
      pick: (tried) => this.pick(targets, tried, via),
      acquire: (t) => (via ? via.acquire(t) : this.lb.acquire(t as Target)),
      retried: () => { this.d.counters.retries++; },
      failed: (t, err) => { this.connectFailed(conn.direction, t, via, err); },
      relayed: (t, handle, upLocal, release) => {
        if (conn.direction === 'outbound') this.d.mesh?.labels(labels, conn);
        return this.relayed(conn, t, labels, cluster, handle, upLocal, release);
      },
      allFailed: (err, tried) => this.allFailed(conn, labels, cluster, err, tried),
    };
  }

  /** The next endpoint to try (least connections by default), marked as tried. */
  private pick(targets: Upstream[], tried: Set<string>, via?: Via): Upstream | undefined {
    const t = targets.length === 1 ? targets[0] : via ? via.pick(targets, tried) : this.lb.pick(targets as Target[], tried);
    if (t) tried.add(targetKey(t));
    return t;
  }

  private connectFailed(direction: Direction, t: Upstream, via: Via | undefined, err: ConnectError): ConnectError {
    via?.failed(t);
    this.d.metrics.connectFailures.inc({ direction, reason: err.code });
    return err;
  }

  private allFailed(conn: Conn, labels: IstioTcpLabels, cluster: string, lastErr: ConnectError | undefined, tried: number): 'done' {
    labels.response_flags = 'UF'; // upstream connect failure
    this.finishFailed(conn, labels, lastErr ? `${lastErr.code}: ${lastErr.message}` : 'client went away', tried, cluster);
    return 'done';
  }

  /** A connected upstream: count it open, wait for the relay to end, then metrics and the access log line. */
  private async relayed(conn: Conn, t: Upstream, labels: IstioTcpLabels, cluster: string, handle: RelayHandle, upLocal: string | undefined, release: () => void): Promise<'done'> {
    const { direction } = conn;
    if (direction === 'outbound' && t.endpoint?.podName) {
      setPeerLabels(labels, 'destination', workloadMeta(workloadLabel(t.endpoint.podName), t.endpoint.podNamespace ?? labels.destination_workload_namespace));
    }
    // The registry names remote endpoints' clusters (a gateway standing in for them too); unnamed = this proxy's own.
    if (direction === 'outbound' && t.endpoint) labels.destination_cluster = t.endpoint.cluster ?? this.d.config.clusterId;
    const reported = { request: 0, response: 0 };
    const tracked: Tracked = { abort: () => handle.abort(), report: () => this.report(handle, labels, reported) };
    this.open.add(tracked);
    this.d.metrics.opened.inc(labels);
    this.d.metrics.active.inc({ direction });
    const result = await handle.done;
    release();
    this.open.delete(tracked);
    this.d.metrics.active.dec({ direction });
    if (result.flags !== '-') labels.response_flags = result.flags;
    this.report(handle, labels, reported);
    this.d.metrics.closed.inc(labels);
    this.d.accessLog.log({
      start: conn.startedAt, responseCode: 0, responseFlags: labels.response_flags,
      // Envoy's view: received from the downstream, sent to it.
      bytesReceived: result.sent, bytesSent: result.received, durationMs: performance.now() - conn.start,
      upstreamHost: hostPort(t.ip, t.port), upstreamCluster: cluster, upstreamLocalAddress: upLocal,
      downstreamLocalAddress: conn.local, downstreamRemoteAddress: conn.peer, requestedServerName: conn.detection?.sni,
    });
    return 'done';
  }

  private finishFailed(conn: Conn, labels: IstioTcpLabels, error: string, attempts: number | undefined, cluster: string): void {
    this.d.counters.failed++;
    // A refused or unreachable upstream becomes a reset for the client, like a refused connect would have been.
    if (!conn.down.destroyed) conn.down.resetAndDestroy();
    this.d.metrics.opened.inc(labels);
    this.d.metrics.closed.inc(labels);
    this.d.accessLog.log({
      start: conn.startedAt, responseCode: 0, responseFlags: labels.response_flags, bytesReceived: 0, bytesSent: 0,
      durationMs: performance.now() - conn.start, upstreamTransportFailureReason: error, upstreamCluster: cluster,
      downstreamLocalAddress: conn.local, downstreamRemoteAddress: conn.peer, connectionTerminationDetails: attempts ? `${attempts}_attempts` : undefined,
    });
  }

  /**
   * Istio's direction names: "received" is what the proxy got from the
   * originator (the request direction), "sent" what it sent back to it
   * (the response direction).
   */
  private report(handle: RelayHandle, labels: IstioTcpLabels, reported: { request: number; response: number }): void {
    const p = handle.progress();
    const dReq = p.sent - reported.request; // downstream → upstream
    const dResp = p.received - reported.response; // upstream → downstream
    if (dReq > 0) this.d.metrics.received.inc(labels, dReq);
    if (dResp > 0) this.d.metrics.sent.inc(labels, dResp);
    reported.request = p.sent;
    reported.response = p.received;
  }
}

/** The app listens on loopback or the pod IP; 127.0.0.1 (::1) reaches both wildcard and loopback listeners. */
export function inboundTarget(dstIp: string, port: number): { ip: string; port: number } {
  return familyOf(dstIp) === 4 ? { ip: '127.0.0.1', port } : { ip: '::1', port };
}

export function setServiceLabels(labels: IstioTcpLabels, svc: RegistryService, routes: RouteTable, withWorkload = true): void {
  const domain = routes.clusterDomain;
  labels.destination_service = `${svc.name}.${svc.namespace}.svc.${domain}`;
  labels.destination_service_name = svc.name;
  labels.destination_service_namespace = svc.namespace;
  if (withWorkload) labels.destination_workload_namespace = svc.namespace;
}

export type { Direction };

export type LateVerdict = 'done' | 'h1' | 'h2';

/**
 * After a detection timeout the upstream connection is speculative: whoever
 * speaks first decides. The server first → TCP (a server-first protocol).
 * The client first → its bytes are classified; HTTP means the client was
 * only slow (a busy peer proxy's HTTP/2 preface, a client that connected
 * early) and the connection belongs to the HTTP chain, the server having
 * seen nothing.
 */
async function lateVerdict(down: Socket, up: Socket, timeoutMs: number): Promise<'tcp' | 'h1' | 'h2'> {
  const first = await new Promise<'down' | 'up' | 'none'>((resolve) => {
    let t: NodeJS.Timeout | undefined;
    const done = (w: 'down' | 'up' | 'none') => { clearTimeout(t); down.off('readable', onDown); up.off('readable', onUp); down.off('close', onNone); up.off('close', onNone); resolve(w); };
    const onDown = () => done('down');
    const onUp = () => done('up');
    const onNone = () => done('none');
    if (up.readableLength > 0) { resolve('up'); return; }
    if (down.readableLength > 0) { resolve('down'); return; }
    t = setTimeout(onNone, timeoutMs);
    up.once('readable', onUp);
    down.once('readable', onDown);
    down.once('close', onNone);
    up.once('close', onNone);
  });
  if (first !== 'down') return 'tcp';
  const det = await sniff(down, timeoutMs);
  if (up.readableLength > 0) return 'tcp';
  return det.protocol === 'h2' ? 'h2' : det.protocol === 'http1' ? 'h1' : 'tcp';
}
