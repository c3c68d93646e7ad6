// Access log in Istio's default format (meshConfig.accessLogEncoding TEXT)
// or its JSON twin, one line per HTTP request or TCP connection, on stdout as
// Envoy writes /dev/stdout. Off by default, as in Istio. Field order and
// names follow Istio's default format string, so the tools that parse Istio
// logs parse these; absent values print as "-".
export interface AccessEntry {
  start: Date;
  method?: string;
  path?: string;
  /** "HTTP/1.1", "HTTP/2", "HTTP/1.0"; absent for TCP. */
  protocol?: string;
  /** 0 for TCP or when no response was sent. */
  responseCode: number;
  responseFlags: string;
  responseCodeDetails?: string;
  connectionTerminationDetails?: string;
  upstreamTransportFailureReason?: string;
  bytesReceived: number;
  bytesSent: number;
  durationMs: number;
  upstreamServiceTimeMs?: number;
  xForwardedFor?: string;
  userAgent?: string;
  requestId?: string;
  authority?: string;
  upstreamHost?: string;
  upstreamCluster?: string;
  upstreamLocalAddress?: string;
  downstreamLocalAddress?: string;
  downstreamRemoteAddress?: string;
  requestedServerName?: string;
  routeName?: string;
}

export type AccessLogFormat = 'off' | 'text' | 'json';

const d = (v: string | number | undefined): string => (v === undefined || v === '' ? '-' : String(v));

export function formatText(e: AccessEntry): string {
  return `[${e.start.toISOString()}] "${d(e.method)} ${d(e.path)} ${d(e.protocol)}" ${e.responseCode} ${d(e.responseFlags)} ${d(e.responseCodeDetails)} ${d(e.connectionTerminationDetails)} `
    + `"${d(e.upstreamTransportFailureReason)}" ${e.bytesReceived} ${e.bytesSent} ${Math.round(e.durationMs)} ${d(e.upstreamServiceTimeMs === undefined ? undefined : Math.round(e.upstreamServiceTimeMs))} `
    + `"${d(e.xForwardedFor)}" "${d(e.userAgent)}" "${d(e.requestId)}" "${d(e.authority)}" "${d(e.upstreamHost)}" ${d(e.upstreamCluster)} `
    + `${d(e.upstreamLocalAddress)} ${d(e.downstreamLocalAddress)} ${d(e.downstreamRemoteAddress)} ${d(e.requestedServerName)} ${d(e.routeName)}`;
}

export function formatJson(e: AccessEntry): string {
  const n = (v: string | undefined) => (v === undefined || v === '' ? null : v);
  return JSON.stringify({
    start_time: e.start.toISOString(), method: n(e.method), path: n(e.path), protocol: n(e.protocol),
    response_code: e.responseCode, response_flags: e.responseFlags, response_code_details: n(e.responseCodeDetails),
    connection_termination_details: n(e.connectionTerminationDetails), upstream_transport_failure_reason: n(e.upstreamTransportFailureReason),
    bytes_received: e.bytesReceived, bytes_sent: e.bytesSent, duration: Math.round(e.durationMs),
    upstream_service_time: e.upstreamServiceTimeMs === undefined ? null : String(Math.round(e.upstreamServiceTimeMs)),
    x_forwarded_for: n(e.xForwardedFor), user_agent: n(e.userAgent), request_id: n(e.requestId), authority: n(e.authority),
    upstream_host: n(e.upstreamHost), upstream_cluster: n(e.upstreamCluster), upstream_local_address: n(e.upstreamLocalAddress),
    downstream_local_address: n(e.downstreamLocalAddress), downstream_remote_address: n(e.downstreamRemoteAddress),
    requested_server_name: n(e.requestedServerName), route_name: n(e.routeName),
  });
}

export class AccessLog {
  constructor(readonly format: AccessLogFormat, private readonly write: (line: string) => void = (l) => { process.stdout.write(l); }) {}

  get enabled(): boolean {
    return this.format !== 'off';
  }

  log(e: AccessEntry): void {
    if (this.format === 'off') return;
    this.write((this.format === 'json' ? formatJson(e) : formatText(e)) + '\n');
  }
}
