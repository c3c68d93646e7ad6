// Prometheus metrics of the DNS proxy. weir's own names carry the weir_dns_
// prefix; the istio_agent_dns_* counters keep existing Istio dashboards
// working unchanged.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

export type Outcome = 'local' | 'forwarded' | 'cached' | 'failed' | 'malformed';

export interface DnsMetrics {
  query(qtype: string, outcome: Outcome, seconds: number): void;
  upstream(seconds: number, ok: boolean): void;
}

export function createDnsMetrics(registry: Registry, cache: () => { entries: number; bytes: number }, inflight: () => number): DnsMetrics {
  const queries = new Counter({
    name: 'weir_dns_queries_total',
    help: 'DNS queries answered by the proxy, by query type and outcome (local, forwarded, cached, failed, malformed).',
    labelNames: ['qtype', 'outcome'] as const,
    registers: [registry],
  });
  const latency = new Histogram({
    name: 'weir_dns_request_duration_seconds',
    help: 'Time from receiving a query to sending its answer, by outcome.',
    labelNames: ['outcome'] as const,
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
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
  new Gauge({
    name: 'weir_dns_upstream_inflight',
    help: 'Upstream queries currently waiting for an answer.',
    registers: [registry],
    collect() { this.set(inflight()); },
  });
  const istioRequests = new Counter({ name: 'istio_agent_dns_requests_total', help: 'Total number of DNS requests.', registers: [registry] });
  const istioUpstream = new Counter({ name: 'istio_agent_dns_upstream_requests_total', help: 'Total number of DNS requests forwarded to upstream.', registers: [registry] });
  const istioUpstreamFailures = new Counter({ name: 'istio_agent_dns_upstream_failures_total', help: 'Total number of DNS failures forwarding to upstream.', registers: [registry] });
  const istioUpstreamLatency = new Histogram({
    name: 'istio_agent_dns_upstream_request_duration_seconds',
    help: 'Time taken by upstream DNS to answer.',
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });

  // Label lookups hash the label set on every call; keep bound children.
  const counterChildren = new Map<string, { inc(): void }>();
  const latencyChildren = new Map<Outcome, { observe(v: number): void }>();
  return {
    query(qtype, outcome, seconds) {
      const k = `${qtype}|${outcome}`;
      let c = counterChildren.get(k);
      if (!c) { c = queries.labels(qtype, outcome); counterChildren.set(k, c); }
      c.inc();
      let h = latencyChildren.get(outcome);
      if (!h) { h = latency.labels(outcome); latencyChildren.set(outcome, h); }
      h.observe(seconds);
      istioRequests.inc();
    },
    upstream(seconds, ok) {
      istioUpstream.inc();
      istioUpstreamLatency.observe(seconds);
      if (!ok) istioUpstreamFailures.inc();
    },
  };
}
