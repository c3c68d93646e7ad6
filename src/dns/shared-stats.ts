// Per-query counters of one thread of the native UDP fast path
// (native/src/dns_fast.h), kept in a SharedArrayBuffer the thread writes
// directly, so the JavaScript thread reads them (for stats() and Prometheus
// scrapes) with no message and no lag. Each thread writes only its own
// buffer (single writer), so plain stores suffice; a reader may at worst see
// a value one query old. The layout is described to the addon by
// nativeStatsLayout(), so the two sides cannot drift apart.
import { QTYPE_LABELS, TYPE_NAMES } from './wire.js';
import type { DnsFastLayout } from '../native/dns-fast.js';

/** How a query ended (the `outcome` label of the DNS metrics). */
export type Outcome = 'local' | 'forwarded' | 'cached' | 'failed' | 'malformed';

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

/** The counter layout, as the native fast path writes it. */
export function nativeStatsLayout(): DnsFastLayout {
  const other = QTYPE_INDEX.get('OTHER')!;
  const qtypeIndex = new Uint8Array(65536).fill(other);
  for (const [num, label] of Object.entries(TYPE_NAMES)) qtypeIndex[Number(num)] = QTYPE_INDEX.get(label) ?? other;
  return {
    qtypeIndex, outcomes: OUTCOMES.length,
    localOutcome: OUTCOME_INDEX.get('local')!, cachedOutcome: OUTCOME_INDEX.get('cached')!, malformedOutcome: OUTCOME_INDEX.get('malformed')!,
    latencyBase: LATENCY_BASE, latencyStride: LATENCY_STRIDE, bounds: LATENCY_BUCKETS, slots: SLOTS,
  };
}

export interface LatencySeries { buckets: ArrayLike<number>; sum: number; count: number }

export class SharedQueryStats {
  private readonly v = new Float64Array(new SharedArrayBuffer(SLOTS * 8));

  /** A new, zeroed set of counters. */
  constructor() {
    this.v[REGISTRY_VERSION_SLOT] = NaN;
  }

  /** The raw counters (what the native thread writes into). */
  get values(): Float64Array {
    return this.v;
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

  /** The registry version the thread answers from (undefined before the first snapshot). */
  get registryVersion(): number | undefined {
    const v = this.v[REGISTRY_VERSION_SLOT];
    return Number.isNaN(v) ? undefined : v;
  }

  set registryVersion(v: number | undefined) {
    this.v[REGISTRY_VERSION_SLOT] = v ?? NaN;
  }
}
