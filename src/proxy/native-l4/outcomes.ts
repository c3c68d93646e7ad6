// Records of natively handled connections (src/native/l4-accept.ts) turned
// into what the JavaScript TCP chain reports for the same connection: the
// proxy counters, protocol-detection count, istio_tcp_* series with the
// same labels, connect failures and retries, and one access-log line at
// the end. Runs once per batch, off the connections' critical path.
import type { L4Record, L4Series } from '../../native/l4-accept.js';
import { canonicalIp, hostPort } from '../addr.js';
import type { ProxyDeps } from '../context.js';
import { setPeerLabels, unknownLabels, workloadLabel, type IstioTcpLabels } from '../metrics.js';
import type { RouteTable, Target } from '../routing.js';
import { inboundLabels } from '../tcp/inbound-labels.js';
import { workloadMeta } from '../telemetry/workload.js';
import type { RegistryCluster } from './clusters.js';
import type { NativeInbound } from './inbound.js';
import type { NativeService } from './table.js';

type Opened = Extract<L4Record, { kind: 'opened' }>;
type Failed = Extract<L4Record, { kind: 'failed' }>;

// The byte pump's end reasons as Envoy response flags (the JS chain's table in relay.ts).
const FLAGS_BY_REASON: Record<string, string> = {
  closed: '-', 'reset-by-a': 'DR', 'reset-by-b': 'UR', idle: 'IT', aborted: 'DC', error: 'UR',
};

/** The pump's end reason as an Envoy response flag ('-': none). */
function flagsOf(reason: string): string {
  return FLAGS_BY_REASON[reason] ?? 'UR';
}

/** What the per-record labels are computed from (a record, or an aggregated series' key). */
type Where = Pick<Opened, 'direction' | 'dstIp' | 'dstPort' | 'peerIp' | 'cluster' | 'detectReason' | 'passthrough'>;

interface Open { rec: Opened; labels: IstioTcpLabels; reported: { request: number; response: number } }

export class NativeOutcomes {
  private readonly open = new Map<number, Open>();

  constructor(
    private readonly d: ProxyDeps, private readonly clusters: () => Map<string, RegistryCluster>, private readonly services: () => Map<string, NativeService>,
    private readonly inbound: () => Map<string, NativeInbound>,
  ) {}

  handle(r: Exclude<L4Record, { kind: 'handoff' }>): void {
    switch (r.kind) {
      case 'opened': return this.opened(r);
      case 'connect-failed':
        this.d.metrics.connectFailures.inc({ direction: r.direction, reason: r.code });
        if (r.retrying) this.d.counters.retries++;
        return;
      case 'progress': {
        const o = this.open.get(r.id);
        if (o) this.report(o, r.bytesAtoB, r.bytesBtoA);
        return;
      }
      case 'closed': return this.closed(r);
      case 'failed': return this.failed(r);
    }
  }

  /** The istio_tcp_* labels of a native connection (before its end's response flags). */
  private labelsFor(r: Where, routes: RouteTable): IstioTcpLabels {
    const d = this.d;
    const dstIp = r.dstIp ?? '';
    if (r.direction === 'inbound') return inboundLabels(d, routes, dstIp, r.dstPort ?? 0, r.peerIp);
    const labels = unknownLabels('source');
    setPeerLabels(labels, 'source', d.identity());
    if (r.passthrough) {
      labels.destination_service_name = 'PassthroughCluster';
      const pod = routes.podByIp(dstIp);
      if (pod) setPeerLabels(labels, 'destination', workloadMeta(workloadLabel(pod.name), pod.namespace, {}, pod.cluster ?? d.config.clusterId));
      return labels;
    }
    // As the TCP chain labels it (setServiceLabels, or the compiled route's service).
    const svc = this.services().get(`${dstIp}|${r.dstPort ?? 0}`);
    if (svc) {
      labels.destination_service = svc.host;
      labels.destination_service_name = svc.name;
      labels.destination_service_namespace = svc.namespace;
      labels.destination_workload_namespace = svc.namespace;
    }
    return labels;
  }

  /**
   * What protocol selection, the mesh gate and the TCP chain count for `n`
   * accepted connections like `r` (once per connection: when it opened, or failed).
   */
  private countAccepted(r: Where, n: number): void {
    const d = this.d;
    const port = r.dstPort ?? 0;
    d.counters.accepted += n;
    if (r.direction === 'inbound') {
      const how = this.inbound().get(`${r.dstIp ?? ''}|${port}`);
      if (d.mesh) d.mesh.countNativeInbound(port, n);
      d.metrics.detected.inc({ direction: 'inbound', protocol: how?.protocol ?? 'tcp', reason: r.detectReason }, n);
      d.counters.inbound += n;
      return;
    }
    const protocol = this.services().get(`${r.dstIp ?? ''}|${port}`)?.protocol ?? 'tcp';
    d.metrics.detected.inc({ direction: r.direction, protocol, reason: r.detectReason }, n);
    if (r.passthrough) d.counters.passthrough += n;
    else d.counters.routed += n;
  }

  /** The labels of an opened connection: its own, and the endpoint it was dialled to. */
  private openedLabels(r: Where & { upstreamIp: string; upstreamPort: number }, routes: RouteTable): IstioTcpLabels {
    const labels = this.labelsFor(r, routes);
    const t = r.passthrough || r.direction === 'inbound' ? undefined : this.endpointOf(r.cluster, r.upstreamIp, r.upstreamPort);
    if (t?.endpoint.podName) setPeerLabels(labels, 'destination', workloadMeta(workloadLabel(t.endpoint.podName), t.endpoint.podNamespace ?? labels.destination_workload_namespace));
    if (t) labels.destination_cluster = t.endpoint.cluster ?? this.d.config.clusterId;
    return labels;
  }

  /**
   * Folds what aggregated native connections added up to (l4TakeSeries;
   * keys in native/src/l4_native.h: fields joined by \u0001) into the same counters and series the
   * records would have given: labels computed once per series, not per connection.
   */
  fold(series: L4Series[]): void {
    const d = this.d;
    const routes = d.routes();
    for (const s of series) {
      const f = s.key.split('\u0001');
      if (f[0] === 'f' && f.length === 3) {
        d.metrics.connectFailures.inc({ direction: f[1], reason: f[2] }, s.connectFailures);
        d.counters.retries += s.retries;
        continue;
      }
      if (f[0] !== 'c' || f.length !== 11) continue;
      const [, direction, cluster, dstIp, dstPort, peerIp, upstreamIp, upstreamPort, detectReason, passthrough, end] = f;
      const r = {
        direction: direction as Opened['direction'], cluster, dstIp: dstIp || undefined, dstPort: Number(dstPort), peerIp,
        upstreamIp, upstreamPort: Number(upstreamPort), detectReason, passthrough: passthrough === '1',
      };
      if (end === 'failed') {
        this.countFailed(r, routes, s.failed);
        continue;
      }
      const labels = this.openedLabels(r, routes);
      if (end === '') {
        if (s.opened > 0) this.countOpened(r, labels, s.opened);
      } else {
        this.countClosed(r.direction, labels, end, s.closed);
      }
      if (s.aToB > 0) d.metrics.received.inc(labels, s.aToB);
      if (s.bToA > 0) d.metrics.sent.inc(labels, s.bToA);
    }
  }

  private endpointOf(cluster: string, ip: string, port: number): Target | undefined {
    return this.clusters().get(cluster)?.targets.find((t) => t.ip === ip && t.port === port);
  }

  /** `n` connections like `r` opened (one record, or an aggregated series). */
  private countOpened(r: Where, labels: IstioTcpLabels, n: number): void {
    this.countAccepted(r, n);
    this.d.metrics.opened.inc(labels, n);
    this.d.metrics.active.inc({ direction: r.direction }, n);
  }

  /** `n` opened connections with these labels ended for `reason` (the labels take its response flag). */
  private countClosed(direction: Opened['direction'], labels: IstioTcpLabels, reason: string, n: number): void {
    const flags = flagsOf(reason);
    if (flags !== '-') labels.response_flags = flags;
    this.d.metrics.active.dec({ direction }, n);
    this.d.metrics.closed.inc(labels, n);
  }

  /** `n` connections like `r` never opened (every attempt failed): opened and closed at once, UF. */
  private countFailed(r: Where, routes: RouteTable, n: number): IstioTcpLabels {
    this.countAccepted(r, n);
    const labels = this.labelsFor(r, routes);
    labels.response_flags = 'UF'; // upstream connect failure
    this.d.counters.failed += n;
    this.d.metrics.opened.inc(labels, n);
    this.d.metrics.closed.inc(labels, n);
    return labels;
  }

  private opened(r: Opened): void {
    const labels = this.openedLabels(r, this.d.routes());
    this.open.set(r.id, { rec: r, labels, reported: { request: 0, response: 0 } });
    this.countOpened(r, labels, 1);
  }

  private report(o: Open, request: number, response: number): void {
    const dReq = request - o.reported.request;
    const dResp = response - o.reported.response;
    if (dReq > 0) this.d.metrics.received.inc(o.labels, dReq);
    if (dResp > 0) this.d.metrics.sent.inc(o.labels, dResp);
    o.reported.request = request;
    o.reported.response = response;
  }

  private closed(r: Extract<L4Record, { kind: 'closed' }>): void {
    const o = this.open.get(r.id);
    if (!o) return;
    this.open.delete(r.id);
    const d = this.d;
    const { rec, labels } = o;
    // Closed first: it sets the labels' response flag, under which the last bytes count (as the aggregated path's do).
    this.countClosed(rec.direction, labels, r.reason, 1);
    this.report(o, r.bytesAtoB, r.bytesBtoA);
    d.accessLog.log({
      start: new Date(rec.startMs), responseCode: 0, responseFlags: labels.response_flags,
      bytesReceived: r.bytesAtoB, bytesSent: r.bytesBtoA, durationMs: r.durationMs,
      upstreamHost: hostPort(canonicalIp(rec.upstreamIp), rec.upstreamPort), upstreamCluster: rec.cluster,
      upstreamLocalAddress: rec.localIp ? hostPort(canonicalIp(rec.localIp), rec.localPort ?? 0) : undefined,
      downstreamLocalAddress: hostPort(rec.dstIp ?? '', rec.dstPort ?? 0), downstreamRemoteAddress: hostPort(canonicalIp(rec.peerIp), rec.peerPort),
    });
  }

  private failed(r: Failed): void {
    const d = this.d;
    const labels = this.countFailed(r, d.routes(), 1);
    d.accessLog.log({
      start: new Date(r.startMs), responseCode: 0, responseFlags: labels.response_flags, bytesReceived: 0, bytesSent: 0,
      durationMs: r.durationMs, upstreamTransportFailureReason: r.code ? `${r.code}: ${r.message}` : r.message, upstreamCluster: r.cluster,
      downstreamLocalAddress: hostPort(r.dstIp ?? '', r.dstPort ?? 0), downstreamRemoteAddress: hostPort(canonicalIp(r.peerIp), r.peerPort),
      connectionTerminationDetails: r.attempts ? `${r.attempts}_attempts` : undefined,
    });
  }
}
