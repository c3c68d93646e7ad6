// Prometheus metrics of the DNS proxy. weir's own names carry the weir_dns_
// prefix; the istio_agent_dns_* counters keep existing Istio dashboards
// working unchanged.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { LATENCY_BUCKETS, OUTCOMES, type Outcome, type SharedQueryStats } from './shared-stats.js';

export type { Outcome };

export interface DnsMetrics {
  query(qtype: string, outcome: Outcome, seconds: number): void;
  upstream(seconds: number, ok: boolean): void;
  /** Removes every DNS metric from the registry (so a restarted proxy can register again). */
  unregister(): void;
}

const METRIC_NAMES = [
  'weir_dns_queries_total', 'weir_dns_request_duration_seconds', 'weir_dns_cache_entries', 'weir_dns_cache_bytes',
  'weir_dns_upstream_inflight', 'istio_agent_dns_requests_total', 'istio_agent_dns_upstream_requests_total',
  'istio_agent_dns_upstream_failures_total', 'istio_agent_dns_upstream_request_duration_seconds', 'weir_dns_udp_dropped_total',
];


/**
 * A histogram with one label whose per-observation cost is a bucket search
 * and two additions. prom-client's Histogram hashes the label set on every
 * observe(), which at tens of thousands of queries a second is a visible
 * share of the DNS hot path; this one is read (and formatted by prom-client)
 * only when scraped.
 */
class FastLabelledHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private readonly series = new Map<string, { buckets: Float64Array; sum: number; count: number }>();

  constructor(
    readonly name: string, readonly help: string, private readonly label: string, private readonly bounds: readonly number[],
    /** Series recorded elsewhere (native UDP threads), added in at scrape time. */
    private readonly extra: () => Iterable<{ labelValue: string; buckets: ArrayLike<number>; sum: number; count: number }> = () => [],
  ) {}

  observe(labelValue: string, v: number): void {
    let s = this.series.get(labelValue);
    if (!s) { s = { buckets: new Float64Array(this.bounds.length), sum: 0, count: 0 }; this.series.set(labelValue, s); }
    const b = this.bounds;
    for (let i = 0; i < b.length; i++) if (v <= b[i]) { s.buckets[i]++; break; }
    s.sum += v;
    s.count++;
  }

  async get() {
    const values: { labels: Record<string, string | number>; value: number; metricName: string }[] = [];
    const merged = new Map<string, { buckets: Float64Array; sum: number; count: number }>();
    for (const [lv, s] of this.series) merged.set(lv, { buckets: Float64Array.from(s.buckets), sum: s.sum, count: s.count });
    for (const e of this.extra()) {
      if (e.count === 0) continue;
      let m = merged.get(e.labelValue);
      if (!m) { m = { buckets: new Float64Array(this.bounds.length), sum: 0, count: 0 }; merged.set(e.labelValue, m); }
      for (let i = 0; i < this.bounds.length; i++) m.buckets[i] += e.buckets[i];
      m.sum += e.sum;
      m.count += e.count;
    }
    for (const [lv, s] of merged) {
      let acc = 0;
      this.bounds.forEach((le, i) => {
        acc += s.buckets[i];
        values.push({ labels: { le, [this.label]: lv }, value: acc, metricName: `${this.name}_bucket` });
      });
      values.push({ labels: { le: '+Inf', [this.label]: lv }, value: s.count, metricName: `${this.name}_bucket` });
      values.push({ labels: { [this.label]: lv }, value: s.sum, metricName: `${this.name}_sum` });
      values.push({ labels: { [this.label]: lv }, value: s.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }

  reset(): void {
    this.series.clear();
  }
}

/** `threads` lists the counters of the native UDP threads, summed in at scrape time. */
export function createDnsMetrics(
  registry: Registry, cache: () => { entries: number; bytes: number }, inflight: () => number,
  threads: () => readonly SharedQueryStats[] = () => [],
  /** Queries the native UDP threads dropped (0 without them). */
  udpDropped: () => number = () => 0,
): DnsMetrics {
  // Per-query counts live in plain objects and are copied into prom-client
  // at scrape time (collect), keeping prom-client off the per-query path.
  const queryCounts = new Map<string, { qtype: string; outcome: Outcome; n: number }>();
  let totalQueries = 0;
  new Counter({
    name: 'weir_dns_queries_total',
    help: 'DNS queries answered by the proxy, by query type and outcome (local, forwarded, cached, failed, malformed).',
    labelNames: ['qtype', 'outcome'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const c of queryCounts.values()) this.inc({ qtype: c.qtype, outcome: c.outcome }, c.n);
      for (const w of threads()) for (const c of w.counts()) this.inc({ qtype: c.qtype, outcome: c.outcome }, c.n);
    },
  });
  const latency = new FastLabelledHistogram(
    'weir_dns_request_duration_seconds', 'Time from receiving a query to sending its answer, by outcome.', 'outcome', LATENCY_BUCKETS,
    function* threadSeries() {
      for (const w of threads()) for (const outcome of OUTCOMES) yield { labelValue: outcome, ...w.latency(outcome) };
    },
  );
  registry.registerMetric(latency as unknown as Parameters<Registry['registerMetric']>[0]);
  new Gauge({
    name: 'weir_dns_cache_entries',
    help: 'Upstream answers held in the DNS cache.',
    registers: [registry],
    collect() { this.set(cache().entries); },
  });
  new Gauge({
    name: 'weir_dns_cache_bytes',
    help: 'Approximate memory held by the DNS cache, in bytes.',
    registers: [registry],
    collect() { this.set(cache().bytes); },
  });
  new Counter({
    name: 'weir_dns_udp_dropped_total',
    help: 'UDP queries the native threads dropped: the queue to JavaScript was full (8192 waiting), or the socket buffer was full on send. Clients retry.',
    registers: [registry],
    collect() { this.reset(); this.inc(udpDropped()); },
  });
  new Gauge({
    name: 'weir_dns_upstream_inflight',
    help: 'Upstream queries currently waiting for an answer.',
    registers: [registry],
    collect() { this.set(inflight()); },
  });
  new Counter({
    name: 'istio_agent_dns_requests_total', help: 'Total number of DNS requests.', registers: [registry],
    collect() {
      this.reset();
      let n = totalQueries;
      for (const w of threads()) for (const c of w.counts()) n += c.n;
      this.inc(n);
    },
  });
  const istioUpstream = new Counter({ name: 'istio_agent_dns_upstream_requests_total', help: 'Total number of DNS requests forwarded to upstream.', registers: [registry] });
  const istioUpstreamFailures = new Counter({ name: 'istio_agent_dns_upstream_failures_total', help: 'Total number of DNS failures forwarding to upstream.', registers: [registry] });
  const istioUpstreamLatency = new Histogram({
    name: 'istio_agent_dns_upstream_request_duration_seconds',
    help: 'Time taken by upstream DNS to answer.',
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });

  return {
    query(qtype, outcome, seconds) {
      const k = `${qtype}|${outcome}`;
      const c = queryCounts.get(k);
      if (c) c.n++;
      else queryCounts.set(k, { qtype, outcome, n: 1 });
      totalQueries++;
      latency.observe(outcome, seconds);
    },
    // Upstream exchanges are rare next to answers; prom-client directly is fine.
    upstream(seconds, ok) {
      istioUpstream.inc();
      istioUpstreamLatency.observe(seconds);
      if (!ok) istioUpstreamFailures.inc();
    },
    unregister() {
      for (const name of METRIC_NAMES) registry.removeSingleMetric(name);
    },
  };
}
