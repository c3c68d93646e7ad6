// Istio-compatible metrics, so existing dashboards and alerts keep working:
// same names, same label names, same reporter semantics (reporter="source"
// on the client's proxy, "destination" on the server's), Envoy's default
// histogram buckets.
import { Counter, Gauge, Registry } from 'prom-client';
import type { WorkloadMeta } from './telemetry/workload.js';
import { KeyedCounter, KeyedHistogram, LabelKeyedCounter } from './telemetry/series.js';

export const ISTIO_TCP_LABELS = [
  'reporter',
  'source_workload', 'source_workload_namespace', 'source_principal', 'source_app', 'source_version', 'source_cluster',
  'source_canonical_service', 'source_canonical_revision',
  'destination_workload', 'destination_workload_namespace', 'destination_principal', 'destination_app', 'destination_version',
  'destination_canonical_service', 'destination_canonical_revision',
  'destination_service', 'destination_service_name', 'destination_service_namespace', 'destination_cluster',
  'request_protocol', 'response_flags', 'connection_security_policy',
] as const;

export const ISTIO_HTTP_LABELS = [...ISTIO_TCP_LABELS, 'response_code', 'grpc_response_status'] as const;

export type IstioTcpLabels = Record<(typeof ISTIO_TCP_LABELS)[number], string>;
export type IstioHttpLabels = Record<(typeof ISTIO_HTTP_LABELS)[number], string>;

/** Envoy's default histogram buckets (ms for durations, bytes for sizes). */
export const ENVOY_BUCKETS = [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000];

export class ProxyMetrics {
  readonly registry = new Registry();
  // Per-connection metrics: keyed by their label values, joined once per call (telemetry/series.ts).
  private counter(name: string, help: string) {
    return new LabelKeyedCounter(name, help, ISTIO_TCP_LABELS, [this.registry]);
  }
  // Per-request metrics: keyed by seriesKey(labels, ISTIO_HTTP_LABELS), computed once per request (telemetry/series.ts).
  private httpCounter(name: string, help: string) {
    return new KeyedCounter(name, help, ISTIO_HTTP_LABELS, [this.registry]);
  }
  private histogram(name: string, help: string) {
    return new KeyedHistogram(name, help, ISTIO_HTTP_LABELS, ENVOY_BUCKETS, [this.registry]);
  }
  readonly opened = this.counter('istio_tcp_connections_opened_total', 'TCP connections opened');
  readonly closed = this.counter('istio_tcp_connections_closed_total', 'TCP connections closed');
  /** Istio's meaning: bytes sent back to the connection's originator (response direction, server → client). */
  readonly sent = this.counter('istio_tcp_sent_bytes_total', 'Bytes sent during the TCP connection (response direction, server to client)');
  /** Bytes received from the originator (request direction, client → server). */
  readonly received = this.counter('istio_tcp_received_bytes_total', 'Bytes received during the TCP connection (request direction, client to server)');
  readonly requests = this.httpCounter('istio_requests_total', 'HTTP/gRPC requests');
  readonly duration = this.histogram('istio_request_duration_milliseconds', 'Request duration, ms');
  readonly requestBytes = this.histogram('istio_request_bytes', 'Request size (headers and body), bytes');
  readonly responseBytes = this.histogram('istio_response_bytes', 'Response size (headers and body), bytes');
  readonly requestMessages = this.httpCounter('istio_request_messages_total', 'gRPC messages sent by the client');
  readonly responseMessages = this.httpCounter('istio_response_messages_total', 'gRPC messages sent by the server');
  readonly active = new Gauge({ name: 'weir_proxy_active_connections', help: 'Connections open now', labelNames: ['direction'], registers: [this.registry] });
  readonly rejected = new Counter({ name: 'weir_proxy_rejected_connections_total', help: 'Connections refused at accept (max connections, draining, no original destination)', labelNames: ['direction', 'reason'], registers: [this.registry] });
  readonly connectFailures = new Counter({ name: 'weir_proxy_upstream_connect_failures_total', help: 'Failed upstream connect attempts', labelNames: ['direction', 'reason'], registers: [this.registry] });
  readonly detected = new Counter({ name: 'weir_proxy_protocol_detected_total', help: 'Connections by the protocol chosen for them and why', labelNames: ['direction', 'protocol', 'reason'], registers: [this.registry] });
  readonly retries = new Counter({ name: 'weir_proxy_http_retries_total', help: 'HTTP request retries by cause', labelNames: ['direction', 'cause'], registers: [this.registry] });
  // Envoy's cluster stats for DestinationRule policies (the names Istio dashboards and runbooks use).
  readonly poolOverflow = new Counter({ name: 'envoy_cluster_upstream_rq_pending_overflow', help: 'Requests refused (503 UO) by the connection pool limits', labelNames: ['cluster_name', 'limit'], registers: [this.registry] });
  readonly retryOverflow = new Counter({ name: 'envoy_cluster_upstream_rq_retry_overflow', help: 'Retries not attempted because maxRetries were in flight', labelNames: ['cluster_name'], registers: [this.registry] });
  readonly ejectionsActive = new Gauge({ name: 'envoy_cluster_outlier_detection_ejections_active', help: 'Endpoints ejected by outlier detection now', labelNames: ['cluster_name'], registers: [this.registry] });
  readonly ejectionsEnforced = new Counter({ name: 'envoy_cluster_outlier_detection_ejections_enforced_total', help: 'Endpoints ejected by outlier detection', labelNames: ['cluster_name'], registers: [this.registry] });
  readonly mirrors = new Counter({ name: 'weir_proxy_http_mirrored_requests_total', help: 'Mirrored (shadow) requests by mirror cluster and result', labelNames: ['cluster_name', 'result'], registers: [this.registry] });
  readonly registryVersion = new Gauge({ name: 'weir_proxy_registry_version', help: 'Registry version applied (-1: none yet)', registers: [this.registry] });
  readonly agentConnected = new Gauge({ name: 'weir_proxy_agent_connected', help: '1 while connected to the node agent', registers: [this.registry] });
}

export { workloadFromPodName as workloadLabel } from './config.js';

export function unknownLabels(reporter: 'source' | 'destination'): IstioTcpLabels {
  const l = {} as IstioTcpLabels;
  for (const k of ISTIO_TCP_LABELS) l[k] = 'unknown';
  l.reporter = reporter;
  l.request_protocol = 'tcp';
  l.response_flags = '-';
  // No mTLS yet: Istio reports "none" for plaintext on the destination side.
  l.connection_security_policy = reporter === 'destination' ? 'none' : 'unknown';
  return l;
}

export function setPeerLabels(l: IstioTcpLabels, side: 'source' | 'destination', m: WorkloadMeta): void {
  if (side === 'source') {
    l.source_workload = m.workload; l.source_workload_namespace = m.namespace; l.source_app = m.app; l.source_version = m.version;
    l.source_canonical_service = m.canonicalService; l.source_canonical_revision = m.canonicalRevision;
    if (m.cluster) l.source_cluster = m.cluster;
  } else {
    l.destination_workload = m.workload; l.destination_workload_namespace = m.namespace; l.destination_app = m.app; l.destination_version = m.version;
    l.destination_canonical_service = m.canonicalService; l.destination_canonical_revision = m.canonicalRevision;
    if (m.cluster) l.destination_cluster = m.cluster;
  }
}
