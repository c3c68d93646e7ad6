// Istio-compatible TCP metrics, so existing dashboards and alerts keep
// working: same names, same label names, same reporter semantics
// (reporter="source" on the client's proxy, "destination" on the server's).
import { Counter, Gauge, Registry } from 'prom-client';

export const ISTIO_TCP_LABELS = [
  'reporter',
  'source_workload', 'source_workload_namespace', 'source_principal', 'source_app', 'source_version', 'source_cluster',
  'destination_workload', 'destination_workload_namespace', 'destination_principal', 'destination_app', 'destination_version',
  'destination_service', 'destination_service_name', 'destination_service_namespace', 'destination_cluster',
  'request_protocol', 'response_flags', 'connection_security_policy',
] as const;

export type IstioTcpLabels = Record<(typeof ISTIO_TCP_LABELS)[number], string>;

export class ProxyMetrics {
  readonly registry = new Registry();
  readonly opened = new Counter({ name: 'istio_tcp_connections_opened_total', help: 'TCP connections opened', labelNames: ISTIO_TCP_LABELS, registers: [this.registry] });
  readonly closed = new Counter({ name: 'istio_tcp_connections_closed_total', help: 'TCP connections closed', labelNames: ISTIO_TCP_LABELS, registers: [this.registry] });
  /** Bytes from the connection's originator towards the destination. */
  readonly sent = new Counter({ name: 'istio_tcp_sent_bytes_total', help: 'Bytes sent during the TCP connection (request direction)', labelNames: ISTIO_TCP_LABELS, registers: [this.registry] });
  /** Bytes from the destination back to the originator. */
  readonly received = new Counter({ name: 'istio_tcp_received_bytes_total', help: 'Bytes received during the TCP connection (response direction)', labelNames: ISTIO_TCP_LABELS, registers: [this.registry] });
  readonly active = new Gauge({ name: 'weir_proxy_active_connections', help: 'Connections open now', labelNames: ['direction'], registers: [this.registry] });
  readonly rejected = new Counter({ name: 'weir_proxy_rejected_connections_total', help: 'Connections refused at accept (max connections, draining, no original destination)', labelNames: ['direction', 'reason'], registers: [this.registry] });
  readonly connectFailures = new Counter({ name: 'weir_proxy_upstream_connect_failures_total', help: 'Failed upstream connect attempts', labelNames: ['direction', 'reason'], registers: [this.registry] });
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
  // No mTLS at L4 yet: Istio reports "none" for plaintext.
  l.connection_security_policy = reporter === 'destination' ? 'none' : 'unknown';
  return l;
}
