// The agent's Prometheus metrics and its health endpoints on :15014 (the port
// Istio's CNI agent uses, so existing scrape configs keep working).
// Readiness has hysteresis: it turns ready as soon as every condition holds,
// but only turns unready after a condition has been false for downAfterMs,
// so a CNI conf rewrite or a watch restart does not flap the pod's Ready.
import { isIPv6 } from 'node:net';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { CaptureEvent } from './contracts.js';
import type { InformerHealth } from '../kube/informer.js';
import type { PodRepairOutcome } from './repair.js';
import { badPeerReporter, onClientError } from '../common/bad-peer.js';

export interface ReadinessCondition { name: string; check: () => { ok: boolean; reason?: string } }

export class ReadinessGate {
  private ready = false;
  private failingSince?: number;
  private lastReason = 'starting';

  constructor(private readonly conditions: ReadinessCondition[], private readonly downAfterMs = 5000) {}

  /** Evaluate now; returns the debounced state. */
  evaluate(now = Date.now()): { ready: boolean; reason: string; raw: boolean } {
    const failing = this.conditions.map((c) => ({ c, r: c.check() })).filter((x) => !x.r.ok);
    const raw = failing.length === 0;
    const reason = raw ? 'ok' : failing.map((f) => `${f.c.name}: ${f.r.reason ?? 'not ready'}`).join('; ');
    if (raw) {
      this.ready = true;
      this.failingSince = undefined;
    } else if (this.ready) {
      this.failingSince ??= now;
      if (now - this.failingSince >= this.downAfterMs) this.ready = false;
    }
    this.lastReason = reason;
    return { ready: this.ready, reason, raw };
  }

  get reason(): string { return this.lastReason; }
}

export class AgentMetrics {
  readonly registry = new Registry();
  readonly installReady = new Gauge({ name: 'weir_agent_install_ready', help: '1 when weir-cni is installed and chained on this node', registers: [this.registry] });
  readonly ready = new Gauge({ name: 'weir_agent_ready', help: '1 when the agent reports ready (debounced)', registers: [this.registry] });
  readonly cniRequests = new Counter({ name: 'weir_agent_cni_requests_total', help: 'CNI plugin requests by route and result', labelNames: ['route', 'result'], registers: [this.registry] });
  readonly cniLatency = new Histogram({
    name: 'weir_agent_cni_request_duration_seconds', help: 'CNI plugin request latency in the agent', labelNames: ['route'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5], registers: [this.registry],
  });
  readonly podsCaptured = new Gauge({ name: 'weir_agent_pods_captured', help: 'Sandboxes on this node with capture programmed', registers: [this.registry] });
  readonly repairs = new Counter({ name: 'weir_agent_repairs_total', help: 'Repair loop outcomes per pod check', labelNames: ['result'], registers: [this.registry] });
  readonly captureEvents = new Counter({ name: 'weir_agent_capture_events_total', help: 'Capture controller events by kind', labelNames: ['kind'], registers: [this.registry] });
  readonly programLatency = new Histogram({
    name: 'weir_agent_rule_programming_seconds', help: 'Time to program a pod\'s capture rules, by backend', labelNames: ['backend'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1], registers: [this.registry],
  });
  readonly informerSynced = new Gauge({ name: 'weir_agent_informer_synced', help: '1 when the informer has listed at least once', labelNames: ['informer'], registers: [this.registry] });
  readonly informerRestarts = new Gauge({ name: 'weir_agent_informer_restarts', help: 'Watch restarts since start', labelNames: ['informer'], registers: [this.registry] });
  readonly informerEventAge = new Gauge({ name: 'weir_agent_informer_last_event_age_seconds', help: 'Seconds since the last event or bookmark', labelNames: ['informer'], registers: [this.registry] });

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry, prefix: 'weir_agent_' });
  }

  onCaptureEvent(e: CaptureEvent): void {
    this.captureEvents.inc({ kind: e.kind });
    if ((e.kind === 'programmed' || e.kind === 'repaired') && e.durationMs !== undefined) {
      this.programLatency.observe({ backend: e.backend ?? 'unknown' }, e.durationMs / 1000);
    }
  }

  onCniRequest(route: string, outcome: 'ok' | 'error', durationMs: number): void {
    // Route is one of a handful of fixed paths; unknown ones collapse to keep cardinality bounded.
    const r = /^\/v1\/(cni\/(add|check|del|gc)|ready|log)$/.test(route) ? route : 'other';
    this.cniRequests.inc({ route: r, result: outcome });
    this.cniLatency.observe({ route: r }, durationMs / 1000);
  }

  onRepair(o: PodRepairOutcome): void {
    this.repairs.inc({ result: o.result });
  }

  setInformerHealth(name: string, h: InformerHealth): void {
    this.informerSynced.set({ informer: name }, h.synced ? 1 : 0);
    this.informerRestarts.set({ informer: name }, h.restarts);
    this.informerEventAge.set({ informer: name }, h.lastEventAt ? (Date.now() - h.lastEventAt) / 1000 : -1);
  }
}

export interface HealthServerOptions {
  /** host:port, e.g. 0.0.0.0:15014 or 127.0.0.1:0 */
  address: string;
  metrics: AgentMetrics;
  readiness: ReadinessGate;
  /** Called before each scrape to refresh gauges computed from state. */
  refresh?: () => void;
}

export function parseListenAddress(value: string, field: string): { host: string; port: number } {
  // An unbracketed IPv6 address with a port ("fd00::5:15014") is what the
  // DaemonSet's "$(HOST_IP):15014" gives on an IPv6 node: the last colon is the port's.
  const last = value.lastIndexOf(':');
  if (!value.startsWith('[') && last > 0 && isIPv6(value.slice(0, last))) value = `[${value.slice(0, last)}]${value.slice(last)}`;
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(value);
  const port = m ? Number(m[3]) : NaN;
  if (!m || !Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`${field}: must be host:port (bad value: ${JSON.stringify(value)})`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

/** Serves /metrics, /healthz (process alive) and /readyz (debounced readiness). */
export async function startHealthServer(opts: HealthServerOptions): Promise<{ server: Server; url: string; close(): Promise<void> }> {
  const { host, port } = parseListenAddress(opts.address, 'metrics-addr');
  const server = createServer((req, res) => {
    void (async () => {
      const path = (req.url ?? '/').split('?')[0];
      if (path === '/healthz') { res.writeHead(200, { 'content-type': 'text/plain' }); res.end('ok\n'); return; }
      if (path === '/readyz') {
        const r = opts.readiness.evaluate();
        opts.metrics.ready.set(r.ready ? 1 : 0);
        res.writeHead(r.ready ? 200 : 503, { 'content-type': 'text/plain' });
        res.end(r.ready ? (r.raw ? 'ready\n' : `ready (degraded: ${r.reason})\n`) : `not ready: ${r.reason}\n`);
        return;
      }
      if (path === '/metrics') {
        opts.refresh?.();
        const r = opts.readiness.evaluate();
        opts.metrics.ready.set(r.ready ? 1 : 0);
        res.writeHead(200, { 'content-type': opts.metrics.registry.contentType });
        res.end(await opts.metrics.registry.metrics());
        return;
      }
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found\n');
    })().catch((e: unknown) => { if (!res.headersSent) res.writeHead(500); res.end(`${(e as Error)?.message ?? String(e)}\n`); });
  });
  const badPeer = badPeerReporter(opts.metrics.registry, 'metrics');
  server.on('clientError', onClientError(badPeer));
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) => reject(new Error(`metrics-addr: cannot listen on ${opts.address}: ${e.message}`)));
    server.listen(port, host, () => resolve());
  });
  const a = server.address() as AddressInfo;
  const url = `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
  return {
    server, url,
    close: () => new Promise<void>((resolve) => { server.close(() => resolve()); server.closeAllConnections(); }),
  };
}
