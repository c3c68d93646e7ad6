// Counters and histograms for the per-request istio_* metrics whose
// per-observation cost is one Map lookup by a precomputed key. prom-client's
// Counter.inc() and Histogram.observe() validate every label name and build
// a sorted hash string of all label values on every call (its labels()
// children do the same per call): with Istio's 25 labels that was ~17 µs per
// call, four calls per request per proxy. These keep one entry per label set,
// keyed by the caller (seriesKey), and are formatted by prom-client's
// registry only when scraped — the same text, label order included: a
// series' labels are the first labels object seen for it, as prom-client keeps.
import type { Registry } from 'prom-client';

/** A series key: the label values in the metric's label order (names are fixed per metric, so values suffice). */
export function seriesKey(labels: Record<string, string>, names: readonly string[]): string {
  let k = '';
  for (let i = 0; i < names.length; i++) k += `${labels[names[i]]}\u0001`;
  return k;
}

interface MetricValue { labels: Record<string, string | number>; value: number; metricName?: string; exemplar?: null }

abstract class KeyedMetric<S> {
  abstract readonly type: 'counter' | 'histogram';
  readonly aggregator = 'sum';
  protected series = new Map<string, S>();

  constructor(readonly name: string, readonly help: string, readonly labelNames: readonly string[], registers: Registry[]) {
    for (const r of registers) r.registerMetric(this as never);
  }

  protected entry(key: string, labels: Record<string, string>, make: (labels: Record<string, string>) => S): S {
    let s = this.series.get(key);
    if (!s) {
      const own: Record<string, string> = {};
      for (const [k, v] of Object.entries(labels)) if (this.labelNames.includes(k)) own[k] = v;
      for (const n of this.labelNames) if (!(n in own)) throw new Error(`${this.name}: label ${n} missing`);
      s = make(own);
      this.series.set(key, s);
    }
    return s;
  }

  reset(): void {
    this.series = new Map();
  }

  protected abstract values(): MetricValue[];

  async get(): Promise<{ name: string; help: string; type: string; values: MetricValue[]; aggregator: string }> {
    return { name: this.name, help: this.help, type: this.type, values: this.values(), aggregator: this.aggregator };
  }
}

export class KeyedCounter extends KeyedMetric<{ labels: Record<string, string>; value: number }> {
  readonly type = 'counter';

  inc(key: string, labels: Record<string, string>, v = 1): void {
    if (!(v >= 0) || !Number.isFinite(v)) throw new Error(`${this.name}: increment must be a finite number >= 0, got ${v}`);
    this.entry(key, labels, (l) => ({ labels: l, value: 0 })).value += v;
  }

  protected values(): MetricValue[] {
    return [...this.series.values()].map((s) => ({ labels: s.labels, value: s.value }));
  }
}

/**
 * A KeyedCounter for call sites that hold only the labels (the istio_tcp_*
 * counters: four calls per connection per proxy): the key is the values
 * joined in label order, one pass, instead of prom-client's validation and
 * sorted hash on every call.
 */
export class LabelKeyedCounter {
  private readonly counter: KeyedCounter;

  constructor(name: string, help: string, private readonly labelNames: readonly string[], registers: Registry[]) {
    this.counter = new KeyedCounter(name, help, labelNames, registers);
  }

  inc(labels: Record<string, string>, v = 1): void {
    this.counter.inc(seriesKey(labels, this.labelNames), labels, v);
  }
}

export class KeyedHistogram extends KeyedMetric<{ labels: Record<string, string>; buckets: Float64Array; sum: number; count: number }> {
  readonly type = 'histogram';

  constructor(name: string, help: string, labelNames: readonly string[], private readonly bounds: readonly number[], registers: Registry[]) {
    super(name, help, labelNames, registers);
  }

  observe(key: string, labels: Record<string, string>, v: number): void {
    if (!Number.isFinite(v)) throw new Error(`${this.name}: value must be a finite number, got ${v}`);
    const s = this.entry(key, labels, (l) => ({ labels: l, buckets: new Float64Array(this.bounds.length), sum: 0, count: 0 }));
    const b = this.bounds;
    for (let i = 0; i < b.length; i++) if (v <= b[i]) { s.buckets[i]++; break; }
    s.sum += v;
    s.count++;
  }

  /** Adds counts observed elsewhere (the native HTTP path): per-bound bucket counts, the last one above every bound. */
  fold(key: string, labels: Record<string, string>, perBucket: readonly number[], sum: number, count: number): void {
    const s = this.entry(key, labels, (l) => ({ labels: l, buckets: new Float64Array(this.bounds.length), sum: 0, count: 0 }));
    for (let i = 0; i < this.bounds.length; i++) s.buckets[i] += perBucket[i] ?? 0;
    s.sum += sum;
    s.count += count;
  }

  get boundaries(): readonly number[] {
    return this.bounds;
  }

  /** prom-client's histogram layout: cumulative buckets (le first, then the series' labels), +Inf, _sum, _count. */
  protected values(): MetricValue[] {
    const out: MetricValue[] = [];
    for (const s of this.series.values()) {
      let acc = 0;
      for (let i = 0; i < this.bounds.length; i++) {
        acc += s.buckets[i];
        out.push({ labels: { le: this.bounds[i], ...s.labels }, value: acc, metricName: `${this.name}_bucket`, exemplar: null });
      }
      out.push({ labels: { le: '+Inf', ...s.labels }, value: s.count, metricName: `${this.name}_bucket`, exemplar: null });
      out.push({ labels: { ...s.labels }, value: s.sum, metricName: `${this.name}_sum` });
      out.push({ labels: { ...s.labels }, value: s.count, metricName: `${this.name}_count` });
    }
    return out;
  }
}
