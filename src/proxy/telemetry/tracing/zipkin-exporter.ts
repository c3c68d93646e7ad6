// Zipkin v2 JSON export (POST /api/v2/spans; Jaeger, Tempo and the
// OpenTelemetry collector accept it): spans are queued and sent in batches
// by a timer, one POST at a time, off the request path. The queue is
// bounded: when the collector is slow or down, spans are dropped and
// counted, never buffered without limit, and a failed batch is not retried
// (a retry storm against a struggling collector helps nobody; Envoy's
// Zipkin tracer drops too).
import http from 'node:http';
import type { Counter } from 'prom-client';
import type { Logger } from '../../../common/log.js';

export interface ZipkinSpan {
  traceId: string;
  id: string;
  parentId?: string;
  kind: 'CLIENT' | 'SERVER';
  name: string;
  /** µs since the epoch. */
  timestamp: number;
  /** µs, at least 1. */
  duration: number;
  localEndpoint: { serviceName: string; ipv4?: string; ipv6?: string; port?: number };
  remoteEndpoint?: { ipv4?: string; ipv6?: string; port?: number };
  tags: Record<string, string>;
}

export interface ExporterOptions {
  maxQueue: number;
  maxBatch: number;
  flushMs: number;
  timeoutMs: number;
}

export const EXPORTER_DEFAULTS: ExporterOptions = { maxQueue: 4096, maxBatch: 512, flushMs: 1000, timeoutMs: 5000 };

export class ZipkinExporter {
  private queue: ZipkinSpan[] = [];
  private inFlight = false;
  private readonly timer: NodeJS.Timeout;
  private failingSince: number | undefined;

  constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly spans: Counter<'outcome'>,
    private readonly logger: Logger,
    private readonly opts: ExporterOptions = EXPORTER_DEFAULTS,
  ) {
    this.timer = setInterval(() => this.flush(), opts.flushMs);
    this.timer.unref();
  }

  add(span: ZipkinSpan): void {
    if (this.queue.length >= this.opts.maxQueue) { this.spans.inc({ outcome: 'dropped_queue_full' }); return; }
    this.queue.push(span);
    if (this.queue.length >= this.opts.maxBatch) this.flush();
  }

  queued(): number {
    return this.queue.length;
  }

  /** Send what is queued now (one batch; the next timer tick or a full queue sends more). */
  flush(): Promise<void> {
    if (this.inFlight || this.queue.length === 0) return Promise.resolve();
    const batch = this.queue.splice(0, this.opts.maxBatch);
    this.inFlight = true;
    return new Promise<void>((resolve) => {
      const body = Buffer.from(JSON.stringify(batch));
      let settled = false;
      const done = (ok: boolean, why?: string) => {
        if (settled) return;
        settled = true;
        this.inFlight = false;
        this.spans.inc({ outcome: ok ? 'exported' : 'dropped_export_failed' }, batch.length);
        if (ok) {
          if (this.failingSince !== undefined) this.logger.info({ collector: `${this.host}:${this.port}` }, 'zipkin collector reachable again');
          this.failingSince = undefined;
        } else if (this.failingSince === undefined) {
          // Once per outage, not once per batch.
          this.failingSince = Date.now();
          this.logger.warn({ collector: `${this.host}:${this.port}`, why, dropped: batch.length }, 'zipkin export failed; spans are dropped until the collector answers');
        }
        if (this.queue.length >= this.opts.maxBatch) setImmediate(() => void this.flush());
        resolve();
      };
      const req = http.request({
        host: this.host, port: this.port, method: 'POST', path: '/api/v2/spans', agent: false,
        headers: { 'content-type': 'application/json', 'content-length': body.length },
      }, (res) => {
        res.resume();
        res.on('end', () => done(res.statusCode !== undefined && res.statusCode >= 200 && res.statusCode < 300, `HTTP ${res.statusCode}`));
        res.on('error', (e) => done(false, e.message));
      });
      req.setTimeout(this.opts.timeoutMs, () => req.destroy(new Error('timed out')));
      req.on('error', (e) => done(false, e.message));
      req.end(body);
    });
  }

  /** On drain: one last batch, bounded by the export timeout. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }
}
