// The per-request telemetry context: Istio labels filled in as the request
// is routed and answered, sizes and gRPC message counts, and at the end one
// observation of each istio_* metric plus one access log line.
import type { Conn, ProxyDeps } from '../context.js';
import { ISTIO_HTTP_LABELS, setPeerLabels, unknownLabels, workloadLabel, type IstioHttpLabels } from '../metrics.js';
import { seriesKey } from '../telemetry/series.js';
import { workloadMeta, type WorkloadMeta } from '../telemetry/workload.js';
import type { RegistryService } from '../../controlplane/types.js';
import type { PodRef, RouteTable } from '../routing.js';
import { splitAuthority } from '../host-routes.js';
import { first, headerBytes } from './headers.js';
import type { RouteDecision, RouteTarget } from './route.js';
import type { ActiveSpan } from '../telemetry/tracing/tracer.js';

export interface RequestInfo {
  method: string;
  path: string;
  protocol: string;
  authority?: string;
  /** The downstream request's headers (as received). */
  headers: Record<string, string | string[] | undefined>;
  /** x-request-id as forwarded (generated when the request had none): counted and logged in place of the received one. */
  requestId?: string | string[];
  grpc: boolean;
}

export class RequestTelemetry {
  readonly labels: IstioHttpLabels;
  readonly startedAt = new Date();
  private readonly t0 = performance.now();
  flags = '-';
  code = 0;
  grpcStatus = '';
  details: string | undefined;
  upstreamHost: string | undefined;
  upstreamLocal: string | undefined;
  upstreamServiceMs: number | undefined;
  cluster: string | undefined;
  routeName: string | undefined;
  transportFailure: string | undefined;
  requestBodyBytes = 0;
  responseBodyBytes = 0;
  responseHeaderBytes = 0;
  requestMessages = 0;
  responseMessages = 0;
  /** This proxy's trace span for the request (headers for the next hop already written). */
  span: ActiveSpan | undefined;
  private done = false;

  constructor(private readonly d: ProxyDeps, private readonly conn: Conn, readonly req: RequestInfo) {
    this.labels = { ...connectionLabels(d, conn) };
    this.labels.request_protocol = req.grpc ? 'grpc' : 'http';
  }

  /** The peer's own description (metadata exchange) beats what the registry can tell. */
  peer(meta: WorkloadMeta | undefined): void {
    if (meta) setPeerLabels(this.labels, this.conn.direction === 'outbound' ? 'destination' : 'source', meta);
  }

  route(r: RouteDecision): void {
    this.cluster = r.cluster;
    this.routeName = r.routeName;
    const l = this.labels;
    if (r.service) {
      l.destination_service = r.service.fqdn;
      l.destination_service_name = r.service.name;
      l.destination_service_namespace = r.service.namespace;
      if (this.conn.direction === 'outbound') l.destination_workload_namespace = r.service.namespace;
    } else if (r.kind === 'passthrough') {
      l.destination_service = this.req.authority ?? 'unknown';
      l.destination_service_name = 'PassthroughCluster';
    }
    if (this.conn.direction === 'inbound') {
      const routes = this.d.routes();
      const svc = inboundService(routes.inboundServicesFor(this.conn.dst.ip, this.conn.dst.port), this.req.authority, routes.clusterDomain);
      if (svc) {
        l.destination_service = `${svc.name}.${svc.namespace}.svc.${routes.clusterDomain}`;
        l.destination_service_name = svc.name;
        l.destination_service_namespace = svc.namespace;
      }
      const src = sourcePod(this.conn, routes);
      if (src && this.labels.source_workload === 'unknown') setPeerLabels(l, 'source', src.meta);
      if (src) l.source_cluster = src.pod.cluster ?? this.d.config.clusterId;
    }
  }

  target(t: RouteTarget): void {
    this.upstreamHost = t.ip.includes(':') ? `[${t.ip}]:${t.port}` : `${t.ip}:${t.port}`;
    if (this.conn.direction === 'outbound' && t.endpoint?.podName && this.labels.destination_workload === 'unknown') {
      setPeerLabels(this.labels, 'destination', workloadMeta(workloadLabel(t.endpoint.podName), t.endpoint.podNamespace ?? 'unknown'));
    }
    // The registry names remote endpoints' clusters; unnamed = this proxy's own.
    if (this.conn.direction === 'outbound' && t.endpoint) this.labels.destination_cluster = t.endpoint.cluster ?? this.d.config.clusterId;
  }

  finish(): void {
    if (this.done) return;
    this.done = true;
    const l = this.labels;
    l.response_code = String(this.code);
    l.response_flags = this.flags;
    l.grpc_response_status = this.grpcStatus;
    const ms = performance.now() - this.t0;
    const m = this.d.metrics;
    const key = seriesKey(l, ISTIO_HTTP_LABELS);
    m.requests.inc(key, l);
    m.duration.observe(key, l, ms);
    const reqBytes = headerBytes(this.req.headers, 'x-request-id', this.req.requestId) + this.requestBodyBytes;
    const respBytes = this.responseHeaderBytes + this.responseBodyBytes;
    m.requestBytes.observe(key, l, reqBytes);
    m.responseBytes.observe(key, l, respBytes);
    if (this.req.grpc) {
      m.requestMessages.inc(key, l, this.requestMessages);
      m.responseMessages.inc(key, l, this.responseMessages);
    }
    const h = this.req.headers;
    if (this.span) {
      this.d.tracer?.finish(this.span, this.conn, {
        method: this.req.method, path: this.req.path, protocol: this.req.protocol, authority: this.req.authority, code: this.code, flags: this.flags,
        grpcStatus: this.req.grpc ? this.grpcStatus : undefined, cluster: this.cluster, upstreamHost: this.upstreamHost,
        serviceFqdn: l.destination_service !== 'unknown' && l.destination_service_name !== 'PassthroughCluster' ? l.destination_service : undefined,
        servicePort: servicePort(this.routeName, this.conn), requestId: first(this.req.requestId ?? h['x-request-id']), userAgent: first(h['user-agent']), requestBytes: reqBytes, responseBytes: respBytes,
      });
    }
    // Off by default (as Istio's): then no entry is built at all.
    if (!this.d.accessLog.enabled) return;
    this.d.accessLog.log({
      start: this.startedAt, method: this.req.method, path: first(h['x-envoy-original-path']) ?? this.req.path, protocol: this.req.protocol,
      responseCode: this.code, responseFlags: this.flags, responseCodeDetails: this.details, upstreamTransportFailureReason: this.transportFailure,
      bytesReceived: this.requestBodyBytes, bytesSent: this.responseBodyBytes, durationMs: ms, upstreamServiceTimeMs: this.upstreamServiceMs,
      xForwardedFor: first(h['x-forwarded-for']), userAgent: first(h['user-agent']), requestId: first(this.req.requestId ?? h['x-request-id']), authority: this.req.authority,
      upstreamHost: this.upstreamHost, upstreamCluster: this.cluster, upstreamLocalAddress: this.upstreamLocal,
      downstreamLocalAddress: this.conn.local, downstreamRemoteAddress: this.conn.peer, requestedServerName: undefined, routeName: this.routeName,
    });
  }
}

/**
 * What every request on a connection starts its labels from: unknown
 * peers, this proxy's own workload, the connection's mTLS principals (the
 * mesh hooks read only the connection when given no upstream socket). Made
 * once per connection and identity, not per request (keep-alive and h2
 * connections carry thousands).
 */
const perConnection = new WeakMap<Conn, { me: WorkloadMeta; labels: IstioHttpLabels }>();
function connectionLabels(d: ProxyDeps, conn: Conn): IstioHttpLabels {
  const me = d.identity();
  const have = perConnection.get(conn);
  if (have && have.me === me) return have.labels;
  const reporter = conn.direction === 'outbound' ? 'source' : 'destination';
  const labels: IstioHttpLabels = { ...unknownLabels(reporter), response_code: '0', grpc_response_status: '' };
  setPeerLabels(labels, reporter, me);
  d.mesh?.labels(labels, conn);
  perConnection.set(conn, { me, labels });
  return labels;
}

/** The pod an inbound connection comes from (registry), looked up once per connection and registry version. */
const sources = new WeakMap<Conn, { routes: RouteTable; src?: { pod: PodRef; meta: WorkloadMeta } }>();
function sourcePod(conn: Conn, routes: RouteTable): { pod: PodRef; meta: WorkloadMeta } | undefined {
  const have = sources.get(conn);
  if (have && have.routes === routes) return have.src;
  const pod = routes.podByIp(conn.peer.replace(/^\[?(.*?)\]?:\d+$/, '$1'));
  const src = pod ? { pod, meta: workloadMeta(workloadLabel(pod.name), pod.namespace) } : undefined;
  sources.set(conn, { routes, src });
  return src;
}

/** Of the services a pod port backs, the one the request's Host names (else the first). */
function inboundService(candidates: RegistryService[], authority: string | undefined, domain: string): RegistryService | undefined {
  if (candidates.length <= 1 || !authority) return candidates[0];
  const { host } = splitAuthority(authority);
  return candidates.find((s) => [s.name, `${s.name}.${s.namespace}`, `${s.name}.${s.namespace}.svc`, `${s.name}.${s.namespace}.svc.${domain}`, ...s.clusterIPs].includes(host)) ?? candidates[0];
}

/** The service port a span is named after: the route's (outbound, "fqdn:port") or the dialled one (inbound). */
function servicePort(routeName: string | undefined, conn: Conn): number {
  const m = routeName ? /:(\d+)$/.exec(routeName) : null;
  return m ? Number(m[1]) : conn.dst.port;
}
