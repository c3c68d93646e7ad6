// One span per request per proxy, as Envoy's Zipkin tracer in a sidecar:
// kind CLIENT on the outbound side, SERVER on the inbound side, a child of
// whatever span the request arrived with (B3 or traceparent), and the next
// hop told that this span is its parent — so client proxy span → server
// proxy span → the app's own spans form one chain. Each proxy opens a span
// of its own (no shared client/server span ids): unambiguous parentage
// in Jaeger and Zipkin alike. Sampling: the caller's decision when it made
// one, else the configured percentage; unsampled requests still carry
// the headers (sampled=0) so the decision holds downstream.
import { Counter, type Registry } from 'prom-client';
import type { Logger } from '../../../common/log.js';
import type { Conn } from '../../context.js';
import type { WorkloadMeta } from '../workload.js';
import type { TracingConfig } from './config.js';
import { newSpanId, newTraceId, readContext, writeContext, type TraceContext } from './trace-context.js';
import { ZipkinExporter, type ZipkinSpan } from './zipkin-exporter.js';

export interface ActiveSpan {
  ctx: TraceContext;
  id: string;
  sampled: boolean;
  startUs: number;
  t0: number;
}

/** What the request turned out to be, for the span's name and tags. */
export interface SpanFacts {
  method: string;
  path: string;
  protocol: string;
  authority?: string;
  code: number;
  flags: string;
  grpcStatus?: string;
  cluster?: string;
  /** "svc.ns.svc.cluster.local" when a service was routed to (or served, inbound). */
  serviceFqdn?: string;
  servicePort?: number;
  upstreamHost?: string;
  requestId?: string;
  userAgent?: string;
  requestBytes: number;
  responseBytes: number;
}

type Headers = Record<string, string | string[] | undefined>;

export class Tracer {
  readonly spans: Counter<'outcome'>;
  private readonly exporter?: ZipkinExporter;

  constructor(private readonly cfg: TracingConfig, private readonly identity: () => WorkloadMeta, registry: Registry, logger: Logger) {
    this.spans = new Counter({ name: 'weir_proxy_tracing_spans_total', help: 'Trace spans by outcome: exported, dropped_queue_full, dropped_export_failed', labelNames: ['outcome'], registers: [registry] });
    if (cfg.zipkin) this.exporter = new ZipkinExporter(cfg.zipkin.host, cfg.zipkin.port, this.spans, logger.child({ component: 'zipkin' }));
  }

  /** Whether spans leave the process (a collector is configured); without, only headers are propagated. */
  get exporting(): boolean {
    return this.exporter !== undefined;
  }

  get samplingPercent(): number {
    return this.cfg.samplingPercent;
  }

  /** Open this proxy's span for a request and write the context the upstream request carries. */
  start(incoming: Headers, upstream: Record<string, string | string[]>): ActiveSpan {
    const ctx = readContext(incoming) ?? { traceId: newTraceId() };
    const sampled = ctx.sampled ?? (this.cfg.samplingPercent >= 100 || Math.random() * 100 < this.cfg.samplingPercent);
    const id = newSpanId();
    writeContext(upstream, ctx, id, sampled);
    return { ctx, id, sampled, startUs: Math.round((performance.timeOrigin + performance.now()) * 1000), t0: performance.now() };
  }

  finish(span: ActiveSpan, conn: Conn, f: SpanFacts): void {
    if (!span.sampled || !this.exporter) return;
    const me = this.identity();
    const outbound = conn.direction === 'outbound';
    const tags: Record<string, string> = {
      'http.method': f.method,
      'http.url': `http://${f.authority ?? conn.local}${f.path}`,
      'http.protocol': f.protocol,
      'http.status_code': String(f.code),
      'response_flags': f.flags,
      'request_size': String(f.requestBytes),
      'response_size': String(f.responseBytes),
      'component': 'proxy',
      'node_id': `sidecar~${me.workload}.${me.namespace}`,
      'istio.canonical_service': me.canonicalService,
      'istio.canonical_revision': me.canonicalRevision,
      'istio.namespace': me.namespace,
      'peer.address': hostOf(conn.peer),
    };
    if (f.cluster) tags.upstream_cluster = f.cluster;
    if (f.requestId) tags['guid:x-request-id'] = f.requestId;
    if (f.userAgent) tags['user_agent'] = f.userAgent;
    if (f.grpcStatus) tags['grpc.status_code'] = f.grpcStatus;
    if (f.code === 0 || f.code >= 500 || (f.grpcStatus !== undefined && f.grpcStatus !== '' && f.grpcStatus !== '0')) tags.error = 'true';
    const service = f.serviceFqdn && f.servicePort ? `${f.serviceFqdn}:${f.servicePort}` : f.authority ?? conn.local;
    const local = endpoint(outbound ? conn.peer : conn.local);
    const remote = outbound ? (f.upstreamHost ? endpoint(f.upstreamHost) : undefined) : endpoint(conn.peer);
    const z: ZipkinSpan = {
      traceId: span.ctx.traceId,
      id: span.id,
      kind: outbound ? 'CLIENT' : 'SERVER',
      name: `${service}/*`,
      timestamp: span.startUs,
      duration: Math.max(1, Math.round((performance.now() - span.t0) * 1000)),
      localEndpoint: { serviceName: `${me.canonicalService}.${me.namespace}`, ...withoutPort(local, outbound) },
      tags,
    };
    if (span.ctx.parentId) z.parentId = span.ctx.parentId;
    if (remote) z.remoteEndpoint = remote;
    this.exporter.add(z);
  }

  close(): Promise<void> {
    return this.exporter?.close() ?? Promise.resolve();
  }
}

function hostOf(hp: string): string {
  return hp.replace(/^\[?(.*?)\]?:\d+$/, '$1');
}

function endpoint(hp: string): { ipv4?: string; ipv6?: string; port?: number } {
  const m = /^\[?(.*?)\]?:(\d+)$/.exec(hp);
  const ip = (m ? m[1] : hp).replace(/^::ffff:/, '');
  const port = m ? Number(m[2]) : undefined;
  return { ...(ip.includes(':') ? { ipv6: ip } : { ipv4: ip }), ...(port ? { port } : {}) };
}

/** The client side's own port is an ephemeral one: not worth a field. */
function withoutPort(e: { ipv4?: string; ipv6?: string; port?: number }, drop: boolean): { ipv4?: string; ipv6?: string; port?: number } {
  if (!drop) return e;
  const { port: _p, ...rest } = e;
  return rest;
}
