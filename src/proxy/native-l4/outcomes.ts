// Records of natively handled connections (src/native/l4-accept.ts) turned
// into what the JavaScript TCP chain reports for the same connection: the
// proxy counters, protocol-detection count, istio_tcp_* series with the
// same labels, connect failures and retries, and one access-log line at
// the end. Runs once per batch, off the connections' critical path.
import type { L4Record } from '../../native/l4-accept.js';
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

interface Open { rec: Opened; labels: IstioTcpLabels; reported: { request: number; response: number } }

export class NativeOutcomes {
  private readonly open = new Map<number, Open>();

  constructor(
    private readonly d: ProxyDeps, private readonly clusters: () => Map<string, RegistryCluster>, private readonly services: () => Map<string, NativeService>,
    private readonly inbound: () => Map<string, NativeInbound>,
  ) {}

  /** Native connections JavaScript has heard open and not yet closed. */
  get active(): number {
    return this.open.size;
  }

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

  private labelsFor(r: Opened | Failed, routes: RouteTable): IstioTcpLabels {
    const d = this.d;
    d.counters.accepted++;
    if (r.direction === 'inbound') return this.inboundLabels(r, routes);
    const protocol = this.services().get(`${r.dstIp ?? ''}|${r.dstPort ?? 0}`)?.protocol ?? 'tcp';
    d.metrics.detected.inc({ direction: r.direction, protocol, reason: r.detectReason });
    const labels = unknownLabels('source');
    setPeerLabels(labels, 'source', d.identity());
    const dstIp = r.dstIp ?? '';
    if (r.passthrough) {
      d.counters.passthrough++;
      labels.destination_service_name = 'PassthroughCluster';
      const pod = routes.podByIp(dstIp);
      if (pod) setPeerLabels(labels, 'destination', workloadMeta(workloadLabel(pod.name), pod.namespace, {}, pod.cluster ?? d.config.clusterId));
      return labels;
    }
    d.counters.routed++;
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

  /** As the mesh gate, protocol selection and the TCP chain's inbound() count and label a plaintext connection. */
  private inboundLabels(r: Opened | Failed, routes: RouteTable): IstioTcpLabels {
    const d = this.d;
    const dstIp = r.dstIp ?? '';
    const port = r.dstPort ?? 0;
    const how = this.inbound().get(`${dstIp}|${port}`);
    if (d.mesh) d.mesh.countNativeInbound(port);
    d.metrics.detected.inc({ direction: 'inbound', protocol: how?.protocol ?? 'tcp', reason: r.detectReason });
    d.counters.inbound++;
    return inboundLabels(d, routes, dstIp, port, r.peerIp);
  }

  private endpointOf(cluster: string, ip: string, port: number): Target | undefined {
    return this.clusters().get(cluster)?.targets.find((t) => t.ip === ip && t.port === port);
  }

  private opened(r: Opened): void {
    const d = this.d;
    const routes = d.routes();
    const labels = this.labelsFor(r, routes);
    const t = r.passthrough || r.direction === 'inbound' ? undefined : this.endpointOf(r.cluster, r.upstreamIp, r.upstreamPort);
    if (t?.endpoint.podName) setPeerLabels(labels, 'destination', workloadMeta(workloadLabel(t.endpoint.podName), t.endpoint.podNamespace ?? labels.destination_workload_namespace));
    if (t) labels.destination_cluster = t.endpoint.cluster ?? d.config.clusterId;
    this.open.set(r.id, { rec: r, labels, reported: { request: 0, response: 0 } });
    d.metrics.opened.inc(labels);
    d.metrics.active.inc({ direction: r.direction });
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
    d.metrics.active.dec({ direction: rec.direction });
    const flags = FLAGS_BY_REASON[r.reason] ?? 'UR';
    if (flags !== '-') labels.response_flags = flags;
    this.report(o, r.bytesAtoB, r.bytesBtoA);
    d.metrics.closed.inc(labels);
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
    const labels = this.labelsFor(r, d.routes());
    labels.response_flags = 'UF'; // upstream connect failure
    d.counters.failed++;
    d.metrics.opened.inc(labels);
    d.metrics.closed.inc(labels);
    d.accessLog.log({
      start: new Date(r.startMs), responseCode: 0, responseFlags: labels.response_flags, bytesReceived: 0, bytesSent: 0,
      durationMs: r.durationMs, upstreamTransportFailureReason: r.code ? `${r.code}: ${r.message}` : r.message, upstreamCluster: r.cluster,
      downstreamLocalAddress: hostPort(r.dstIp ?? '', r.dstPort ?? 0), downstreamRemoteAddress: hostPort(canonicalIp(r.peerIp), r.peerPort),
      connectionTerminationDetails: r.attempts ? `${r.attempts}_attempts` : undefined,
    });
  }
}
