// Per-query counters of one UDP worker thread, kept in a SharedArrayBuffer
// so the main thread reads them (for stats() and Prometheus scrapes) without
// a message round trip and without lag: a worker bumps its counters before
// it sends the answer, so once a client has its answer the count is visible.
// Each worker writes only its own buffer (single writer), so plain stores
// suffice; a reader may at worst see a value one query old.
import { QTYPE_LABELS } from './wire.js';
import type { Outcome } from './metrics.js';

export const OUTCOMES: readonly Outcome[] = ['local', 'forwarded', 'cached', 'failed', 'malformed'];

/** Upper bounds (seconds) of the request latency histogram buckets. */
export const LATENCY_BUCKETS: readonly number[] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5];

const QTYPE_INDEX = new Map(QTYPE_LABELS.map((l, i) => [l, i]));
const OUTCOME_INDEX = new Map(OUTCOMES.map((o, i) => [o, i]));
const N_COUNTS = QTYPE_LABELS.length * OUTCOMES.length;
/** Per outcome: one slot per bucket, then sum, then count. */
const LATENCY_STRIDE = LATENCY_BUCKETS.length + 2;
const LATENCY_BASE = N_COUNTS;
const REGISTRY_VERSION_SLOT = LATENCY_BASE + OUTCOMES.length * LATENCY_STRIDE;
const SLOTS = REGISTRY_VERSION_SLOT + 1;

export interface LatencySeries { buckets: ArrayLike<number>; sum: number; count: number }

export class SharedQueryStats {
  private readonly v: Float64Array;

  readonly buffer: SharedArrayBuffer;

  /** A new, zeroed set of counters, or a view of an existing one (the worker's side). */
  constructor(buffer?: SharedArrayBuffer) {
    if (buffer && buffer.byteLength !== SLOTS * 8) throw new Error(`SharedQueryStats: expected ${SLOTS * 8} bytes, got ${buffer.byteLength}`);
    this.buffer = buffer ?? new SharedArrayBuffer(SLOTS * 8);
    this.v = new Float64Array(this.buffer);
    if (!buffer) this.v[REGISTRY_VERSION_SLOT] = NaN;
  }

  record(qtype: string, outcome: Outcome, seconds: number): void {
    const o = OUTCOME_INDEX.get(outcome)!;
    const q = QTYPE_INDEX.get(qtype) ?? QTYPE_INDEX.get('OTHER')!;
    this.v[q * OUTCOMES.length + o]++;
    const base = LATENCY_BASE + o * LATENCY_STRIDE;
    for (let i = 0; i < LATENCY_BUCKETS.length; i++) if (seconds <= LATENCY_BUCKETS[i]) { this.v[base + i]++; break; }
    this.v[base + LATENCY_BUCKETS.length] += seconds;
    this.v[base + LATENCY_BUCKETS.length + 1]++;
  }

  /** Non-zero (qtype, outcome) counts. */
  *counts(): Generator<{ qtype: string; outcome: Outcome; n: number }> {
    for (let q = 0; q < QTYPE_LABELS.length; q++) {
      for (let o = 0; o < OUTCOMES.length; o++) {
        const n = this.v[q * OUTCOMES.length + o];
        if (n > 0) yield { qtype: QTYPE_LABELS[q], outcome: OUTCOMES[o], n };
      }
    }
  }

  outcomeTotals(): Record<Outcome, number> {
    const out = { local: 0, forwarded: 0, cached: 0, failed: 0, malformed: 0 };
    for (const c of this.counts()) out[c.outcome] += c.n;
    return out;
  }

  /** Non-cumulative bucket counts of one outcome's latency. */
  latency(outcome: Outcome): LatencySeries {
    const base = LATENCY_BASE + OUTCOME_INDEX.get(outcome)! * LATENCY_STRIDE;
    return {
      buckets: this.v.subarray(base, base + LATENCY_BUCKETS.length),
      sum: this.v[base + LATENCY_BUCKETS.length],
      count: this.v[base + LATENCY_BUCKETS.length + 1],
    };
  }

  /** The registry version the worker answers from (undefined before the first snapshot). */
  get registryVersion(): number | undefined {
    const v = this.v[REGISTRY_VERSION_SLOT];
    return Number.isNaN(v) ? undefined : v;
  }

  set registryVersion(v: number | undefined) {
    this.v[REGISTRY_VERSION_SLOT] = v ?? NaN;
  }
}
