// The two capture listeners. Outbound (15001): original destination →
// service route → endpoint (least connections, bounded retries), or
// passthrough when the destination is not a known service. Inbound (15006):
// hand the connection to the app on the original port over loopback, from
// 127.0.0.6 so the capture rules let it through; reset the client when
// nothing listens.
import { createServer, type Server, type Socket } from 'node:net';
import type { Logger } from '../common/log.js';
import type { RegistryService } from '../controlplane/types.js';
import { canonicalIp, familyOf } from './addr.js';
import type { ProxyConfig } from './config.js';
import { unknownLabels, workloadLabel, type IstioTcpLabels, type ProxyMetrics } from './metrics.js';
import { originalDst, type OriginalDst } from './original-dst.js';
import { pumpConfigure, pumpStats, type PumpStats } from '../native/addon.js';
import { connectUpstream, ConnectError, pumpMode, relay, spliceRelay, type RelayHandle } from './relay.js';
import { LeastConnections, RouteTable, targetKey, type Target } from './routing.js';
import { connectTransparent, transparentListenFd } from './transparent.js';

type PeerNoted = Socket & { peer?: string };

export type Direction = 'outbound' | 'inbound';

export interface LocalIdentity { namespace: string; workload: string }

export interface L4Deps {
  config: ProxyConfig;
  logger: Logger;
  metrics: ProxyMetrics;
  routes(): RouteTable;
  identity(): LocalIdentity;
}

interface Tracked {
  handle: RelayHandle;
  labels: IstioTcpLabels;
  reported: { sent: number; received: number };
}

export class L4Proxy {
  readonly lb = new LeastConnections();
  private readonly servers: Server[] = [];
  private readonly open = new Set<Tracked>();
  private draining = false;
  private flushTimer: NodeJS.Timeout | undefined;
  counters = { accepted: 0, routed: 0, passthrough: 0, inbound: 0, failed: 0, rejected: 0, retries: 0 };

  /** Accepted connections not yet finished (the limit must hold after sockets are handed to the splice pump). */
  private inFlight = 0;
  readonly pump: 'splice' | 'stream';

  constructor(private readonly d: L4Deps) {
    this.pump = pumpMode(d.config.pump);
    // Engine-wide, so set once before the first connection creates the pump thread.
    if (this.pump === 'splice') pumpConfigure({ busyPollUs: d.config.busyPollUs });
  }

  /** The splice pump thread's counters (busy-poll hits, spin time), when splicing. */
  pumpStats(): PumpStats | undefined {
    return this.pump === 'splice' ? pumpStats() : undefined;
  }

  async listen(): Promise<void> {
    await this.bind('outbound', this.d.config.outboundPort);
    await this.bind('inbound', this.d.config.inboundPort);
    // Long-lived connections report their bytes every 5 s, not only at close (Istio does the same).
    this.flushTimer = setInterval(() => { for (const t of this.open) this.report(t); }, 5000);
    this.flushTimer.unref();
  }

  activeConnections(): number {
    return this.open.size;
  }

  /** Stop accepting; wait for open connections up to the timeout, then cut the rest. */
  async drain(timeoutMs: number): Promise<{ remaining: number }> {
    this.draining = true;
    await Promise.all(this.servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    const deadline = Date.now() + timeoutMs;
    while (this.open.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const remaining = this.open.size;
    for (const t of [...this.open]) t.handle.abort();
    clearInterval(this.flushTimer);
    return { remaining };
  }

  private async bind(direction: Direction, port: number): Promise<void> {
    const server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (sock) => {
      void this.accept(direction, sock);
    });
    // "::" with ipv6Only=false is one dual-stack socket: IPv4 arrives as ::ffff:a.b.c.d.
    // TPROXY delivers only to an IP_TRANSPARENT listener, which Node cannot make.
    const transparent = direction === 'inbound' && this.d.config.interceptionMode === 'TPROXY';
    const where = transparent ? { fd: await transparentListenFd(port, 4096) } : { host: '::', port, ipv6Only: false, backlog: 4096 };
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(where, () => { server.off('error', reject); resolve(); });
    });
    this.servers.push(server);
  }

  private async accept(direction: Direction, down: Socket): Promise<void> {
    this.counters.accepted++;
    down.on('error', () => { /* handled by relay or below */ });
    // Kept now: Node forgets the peer address once the socket is closed, and the access log needs it.
    (down as PeerNoted).peer = `${canonicalIp(down.remoteAddress ?? '')}:${down.remotePort}`;
    const listenerPort = direction === 'outbound' ? this.d.config.outboundPort : this.d.config.inboundPort;
    if (this.draining) { this.reject(direction, down, 'draining'); return; }
    // Our own count, not server.maxConnections: spliced sockets leave Node's count.
    if (this.inFlight >= this.d.config.maxConnections) { this.reject(direction, down, 'max_connections'); return; }
    this.inFlight++;
    try {
      await this.route(direction, down, listenerPort);
    } finally {
      this.inFlight--;
    }
  }

  private async route(direction: Direction, down: Socket, listenerPort: number): Promise<void> {
    let dst: OriginalDst | undefined;
    // TPROXY does not NAT: the accepted socket's own address is the original
    // destination. (Connections REDIRECTed to the listener port itself, like
    // the proxy calling its own pod IP, still carry SO_ORIGINAL_DST.)
    const tproxied = direction === 'inbound' && this.d.config.interceptionMode === 'TPROXY' && down.localPort !== listenerPort;
    try {
      dst = tproxied ? { ip: canonicalIp(down.localAddress ?? ''), port: down.localPort ?? 0 } : await originalDst(down, listenerPort);
    } catch (err) {
      this.d.logger.warn({ err: String(err) }, 'cannot read original destination');
    }
    // No redirect behind this connection (someone dialled the listener itself): refusing avoids a loop.
    const ownPorts = [this.d.config.outboundPort, this.d.config.inboundPort];
    if (!dst || ownPorts.includes(dst.port)) { this.reject(direction, down, 'no_original_dst'); return; }
    if (direction === 'outbound') await this.outbound(down, dst);
    else await this.inbound(down, dst, tproxied);
  }

  private reject(direction: Direction, down: Socket, reason: string): void {
    this.counters.rejected++;
    this.d.metrics.rejected.inc({ direction, reason });
    if (this.d.config.accessLog) this.d.logger.info({ access: direction, downstream: (down as PeerNoted).peer, rejected: reason }, 'connection rejected');
    down.resetAndDestroy();
  }

  private async outbound(down: Socket, dst: OriginalDst): Promise<void> {
    const routes = this.d.routes();
    const me = this.d.identity();
    const labels = unknownLabels('source');
    labels.source_workload = me.workload;
    labels.source_workload_namespace = me.namespace;
    const route = routes.lookup(dst.ip, dst.port);
    const start = performance.now();
    if (!route) {
      // Not a service we know (or no registry yet): the pod must still reach it.
      this.counters.passthrough++;
      labels.destination_service_name = 'PassthroughCluster';
      const pod = routes.podByIp(dst.ip);
      if (pod) { labels.destination_workload = workloadLabel(pod.name); labels.destination_workload_namespace = pod.namespace; }
      await this.connectAndRelay('outbound', down, [{ ip: dst.ip, port: dst.port }], labels, dst, start, 'passthrough');
      return;
    }
    this.counters.routed++;
    setServiceLabels(labels, route.service, routes);
    const targets = routes.targets(route);
    if (targets.length === 0) {
      labels.response_flags = 'UH'; // no healthy upstream
      this.finishFailed('outbound', down, labels, dst, start, 'no ready endpoint', undefined);
      return;
    }
    await this.connectAndRelay('outbound', down, targets, labels, dst, start, `${route.service.namespace}/${route.service.name}`, routes);
  }

  private async inbound(down: Socket, dst: OriginalDst, tproxied: boolean): Promise<void> {
    this.counters.inbound++;
    const routes = this.d.routes();
    const me = this.d.identity();
    const labels = unknownLabels('destination');
    labels.destination_workload = me.workload;
    labels.destination_workload_namespace = me.namespace;
    const svc = routes.serviceForInbound(dst.ip, dst.port);
    if (svc) setServiceLabels(labels, svc, routes, false);
    const src = routes.podByIp(canonicalIp(down.remoteAddress ?? ''));
    if (src) { labels.source_workload = workloadLabel(src.name); labels.source_workload_namespace = src.namespace; }
    if (tproxied) {
      // The app sees the real client: connect to the original destination
      // (the pod IP) from the client's own address (see transparent.ts).
      const client = { ip: canonicalIp(down.remoteAddress ?? ''), port: down.remotePort ?? 0 };
      const dial = (t: { ip: string; port: number }) => connectTransparent({
        ip: t.ip, port: t.port, sourceIp: client.ip, sourcePort: client.port, mark: this.d.config.tproxyMark, timeoutMs: this.d.config.connectTimeoutMs,
      });
      await this.connectAndRelay('inbound', down, [dst], labels, dst, performance.now(), 'inbound', undefined, undefined, dial);
      return;
    }
    const v4 = familyOf(dst.ip) === 4;
    // The app listens on loopback or the pod IP; 127.0.0.1 reaches both
    // wildcard and loopback listeners. The source 127.0.0.6 is what the
    // ruleset exempts from capture.
    const target = v4 ? { ip: '127.0.0.1', port: dst.port } : { ip: '::1', port: dst.port };
    await this.connectAndRelay('inbound', down, [target], labels, dst, performance.now(), 'inbound', undefined, v4 ? this.d.config.inboundSourceV4 : undefined);
  }

  private async connectAndRelay(
    direction: Direction, down: Socket, targets: { ip: string; port: number; endpoint?: Target['endpoint'] }[], labels: IstioTcpLabels,
    dst: OriginalDst, start: number, cluster: string, routes?: RouteTable, localAddress?: string,
    dial?: (t: { ip: string; port: number }) => Promise<Socket>,
  ): Promise<void> {
    const cfg = this.d.config;
    const tried = new Set<string>();
    let lastErr: ConnectError | undefined;
    let downGone = false;
    down.once('close', () => { downGone = true; });
    const attempts = Math.min(cfg.connectAttempts, targets.length);
    for (let i = 0; i < attempts; i++) {
      const t = targets.length === 1 ? targets[0] : this.lb.pick(targets as Target[], tried);
      if (!t) break;
      tried.add(targetKey(t));
      if (i > 0) this.counters.retries++;
      const release = this.lb.acquire(t as Target);
      let up: Socket;
      try {
        up = await (dial ? dial(t) : connectUpstream({ ip: t.ip, port: t.port, timeoutMs: cfg.connectTimeoutMs, localAddress }));
      } catch (err) {
        release();
        lastErr = err instanceof ConnectError ? err : new ConnectError('ECONNFAILED', String(err));
        this.d.metrics.connectFailures.inc({ direction, reason: lastErr.code });
        if (downGone) break;
        continue;
      }
      if (downGone || down.destroyed) { release(); up.resetAndDestroy(); return; }
      if (direction === 'outbound' && t.endpoint?.podName) {
        labels.destination_workload = workloadLabel(t.endpoint.podName);
        labels.destination_workload_namespace = t.endpoint.podNamespace ?? labels.destination_workload_namespace;
      }
      const handle = this.pump === 'splice' ? spliceRelay(down, up, cfg.idleTimeoutMs) : relay(down, up, cfg.idleTimeoutMs);
      const tracked: Tracked = { handle, labels, reported: { sent: 0, received: 0 } };
      this.open.add(tracked);
      this.d.metrics.opened.inc(labels);
      this.d.metrics.active.inc({ direction });
      const result = await tracked.handle.done;
      release();
      this.open.delete(tracked);
      this.d.metrics.active.dec({ direction });
      if (result.flags !== '-') labels.response_flags = result.flags;
      this.report(tracked);
      this.d.metrics.closed.inc(labels);
      this.accessLog(direction, down, dst, t, labels, result.sent, result.received, start, cluster, i + 1);
      return;
    }
    labels.response_flags = 'UF'; // upstream connect failure
    this.finishFailed(direction, down, labels, dst, start, lastErr ? `${lastErr.code}: ${lastErr.message}` : 'client went away', tried.size);
    void routes;
  }

  private finishFailed(direction: Direction, down: Socket, labels: IstioTcpLabels, dst: OriginalDst, start: number, error: string, attempts: number | undefined): void {
    this.counters.failed++;
    // A refused or unreachable upstream becomes a reset for the client, like a refused connect would have been.
    if (!down.destroyed) down.resetAndDestroy();
    this.d.metrics.opened.inc(labels);
    this.d.metrics.closed.inc(labels);
    if (this.d.config.accessLog) {
      this.d.logger.info({ access: direction, downstream: (down as PeerNoted).peer, originalDst: `${dst.ip}:${dst.port}`, service: labels.destination_service, flags: labels.response_flags, error, attempts, durationMs: round(performance.now() - start) }, 'connection failed');
    }
  }

  private report(t: Tracked): void {
    const p = t.handle.progress();
    const ds = p.sent - t.reported.sent;
    const dr = p.received - t.reported.received;
    if (ds > 0) this.d.metrics.sent.inc(t.labels, ds);
    if (dr > 0) this.d.metrics.received.inc(t.labels, dr);
    t.reported = p;
  }

  private accessLog(direction: Direction, down: Socket, dst: OriginalDst, t: { ip: string; port: number }, labels: IstioTcpLabels, sent: number, received: number, start: number, cluster: string, attempts: number): void {
    if (!this.d.config.accessLog) return;
    this.d.logger.info({
      access: direction,
      downstream: (down as PeerNoted).peer,
      originalDst: `${dst.ip}:${dst.port}`,
      upstream: `${t.ip}:${t.port}`,
      cluster,
      service: labels.destination_service,
      bytesSent: sent,
      bytesReceived: received,
      flags: labels.response_flags,
      attempts,
      durationMs: round(performance.now() - start),
    }, 'connection');
  }
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

function setServiceLabels(labels: IstioTcpLabels, svc: RegistryService, routes: RouteTable, withWorkload = true): void {
  const domain = routes.clusterDomain;
  labels.destination_service = `${svc.name}.${svc.namespace}.svc.${domain}`;
  labels.destination_service_name = svc.name;
  labels.destination_service_namespace = svc.namespace;
  if (withWorkload) labels.destination_workload_namespace = svc.namespace;
}
