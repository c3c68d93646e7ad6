// The per-request telemetry context: Istio labels filled in as the request
// is routed and answered, sizes and gRPC message counts, and at the end one
// observation of each istio_* metric plus one access log line.
import type { Conn, ProxyDeps } from '../context.js';
import { setPeerLabels, unknownLabels, workloadLabel, type IstioHttpLabels } from '../metrics.js';
import { workloadMeta, type WorkloadMeta } from '../telemetry/workload.js';
import type { RegistryService } from '../../controlplane/types.js';
import { splitAuthority } from '../host-routes.js';
import { first, headerBytes } from './headers.js';
import type { RouteDecision, RouteTarget } from './route.js';
import type { ActiveSpan } from '../telemetry/tracing/tracer.js';

export interface RequestInfo {
  method: string;
  path: string;
  protocol: string;
  authority?: string;
  headers: Record<string, string | string[] | undefined>;
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
    const reporter = conn.direction === 'outbound' ? 'source' : 'destination';
    this.labels = { ...unknownLabels(reporter), response_code: '0', grpc_response_status: '' };
    this.labels.request_protocol = req.grpc ? 'grpc' : 'http';
    setPeerLabels(this.labels, conn.direction === 'outbound' ? 'source' : 'destination', d.identity());
    d.mesh?.labels(this.labels, conn);
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
      const src = routes.podByIp(this.conn.peer.replace(/^\[?(.*?)\]?:\d+$/, '$1'));
      if (src && this.labels.source_workload === 'unknown') setPeerLabels(l, 'source', workloadMeta(workloadLabel(src.name), src.namespace));
      if (src) l.source_cluster = src.cluster ?? this.d.config.clusterId;
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
    m.requests.inc(l);
    m.duration.observe(l, ms);
    const reqBytes = headerBytes(this.req.headers) + this.requestBodyBytes;
    const respBytes = this.responseHeaderBytes + this.responseBodyBytes;
    m.requestBytes.observe(l, reqBytes);
    m.responseBytes.observe(l, respBytes);
    if (this.req.grpc) {
      m.requestMessages.inc(l, this.requestMessages);
      m.responseMessages.inc(l, this.responseMessages);
    }
    const h = this.req.headers;
    if (this.span) {
      this.d.tracer?.finish(this.span, this.conn, {
        method: this.req.method, path: this.req.path, protocol: this.req.protocol, authority: this.req.authority, code: this.code, flags: this.flags,
        grpcStatus: this.req.grpc ? this.grpcStatus : undefined, cluster: this.cluster, upstreamHost: this.upstreamHost,
        serviceFqdn: l.destination_service !== 'unknown' && l.destination_service_name !== 'PassthroughCluster' ? l.destination_service : undefined,
        servicePort: servicePort(this.routeName, this.conn), requestId: first(h['x-request-id']), userAgent: first(h['user-agent']), requestBytes: reqBytes, responseBytes: respBytes,
      });
    }
    this.d.accessLog.log({
      start: this.startedAt, method: this.req.method, path: first(h['x-envoy-original-path']) ?? this.req.path, protocol: this.req.protocol,
      responseCode: this.code, responseFlags: this.flags, responseCodeDetails: this.details, upstreamTransportFailureReason: this.transportFailure,
      bytesReceived: this.requestBodyBytes, bytesSent: this.responseBodyBytes, durationMs: ms, upstreamServiceTimeMs: this.upstreamServiceMs,
      xForwardedFor: first(h['x-forwarded-for']), userAgent: first(h['user-agent']), requestId: first(h['x-request-id']), authority: this.req.authority,
      upstreamHost: this.upstreamHost, upstreamCluster: this.cluster, upstreamLocalAddress: this.upstreamLocal,
      downstreamLocalAddress: this.conn.local, downstreamRemoteAddress: this.conn.peer, requestedServerName: undefined, routeName: this.routeName,
    });
  }
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
