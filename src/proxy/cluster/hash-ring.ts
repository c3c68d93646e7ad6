// Consistent hashing for DestinationRule consistentHash: Envoy's two
// tables. Ring hash (Ketama): every endpoint owns many points on a 2^48
// ring, a key goes to the first point at or after its hash, so removing an
// endpoint moves only the keys it owned. Maglev: a lookup table of a prime
// size (65537, Envoy's default) filled from per-endpoint permutations;
// constant-time lookup, near-perfect balance, and minimal disruption when
// the endpoint set changes. Tables are built once per endpoint set.
import { createHash } from 'node:crypto';

/** 48 bits of md5: well spread, stable across processes and versions (Node's own hash is not). */
export function hash48(s: string): number {
  return createHash('md5').update(s).digest().readUIntBE(0, 6);
}

/** A deterministic stream of 32-bit ring points from a seed (mulberry32). */
function points(seed: number): () => number {
  let a = (seed % 0x100000000) >>> 0;
  const draw = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
  return draw;
}

export interface HashTable {
  /** Index of the endpoint for this key hash; `skip` says which endpoints may not be chosen (tried, ejected). */
  pick(h: number, skip: (i: number) => boolean): number | undefined;
}

const OWNER_BITS = 2 ** 20;

export class RingHash implements HashTable {
  /** 32-bit ring point × 2^20 + endpoint index, sorted: one typed array, numeric sort, no per-entry objects. */
  private readonly ring: Float64Array;

  /**
   * minimum_ring_size 1024 by default, at most 8M points. Unlike Envoy,
   * every endpoint gets at least 1024 points whatever the endpoint count, so
   * the points of the endpoints that stay do not change when one comes or
   * goes (Envoy rescales them, moving keys between endpoints that stayed).
   */
  constructor(keys: string[], minimumRingSize = 1024) {
    const n = Math.min(keys.length, OWNER_BITS);
    const perHost = n === 0 ? 0 : Math.min(Math.max(Math.ceil(minimumRingSize / n), 1024), Math.max(1, Math.floor((8 * 1024 * 1024) / n)));
    this.ring = new Float64Array(n * perHost);
    let at = 0;
    // One md5 per endpoint seeds its points (a PRNG walk): a 100-endpoint ring costs milliseconds, not 100k digests.
    for (let i = 0; i < n; i++) { const next = points(hash48(keys[i])); for (let r = 0; r < perHost; r++) this.ring[at++] = next() * OWNER_BITS + i; }
    this.ring.sort();
  }

  pick(h: number, skip: (i: number) => boolean): number | undefined {
    const ring = this.ring;
    const n = ring.length;
    if (n === 0) return undefined;
    const key = (h % 0x100000000) * OWNER_BITS;
    let lo = 0;
    let hi = n;
    while (lo < hi) { const mid = (lo + hi) >>> 1; if (ring[mid] < key) lo = mid + 1; else hi = mid; }
    // Walk clockwise past endpoints that may not be used (Envoy does the same for retries).
    for (let step = 0; step < n; step++) {
      const o = ring[(lo + step) % n] % OWNER_BITS;
      if (!skip(o)) return o;
    }
    return undefined;
  }
}

export const MAGLEV_TABLE_SIZE = 65537;

export class Maglev implements HashTable {
  private readonly table: Int32Array;

  constructor(keys: string[], tableSize = MAGLEV_TABLE_SIZE) {
    const m = tableSize;
    this.table = new Int32Array(keys.length === 0 ? 0 : m).fill(-1);
    if (keys.length === 0) return;
    const offset = keys.map((k) => hash48(`${k}#offset`) % m);
    const skipBy = keys.map((k) => (hash48(`${k}#skip`) % (m - 1)) + 1);
    const next = new Array<number>(keys.length).fill(0);
    let filled = 0;
    // Each endpoint in turn claims its next preferred free slot (the paper's population loop).
    while (filled < m) {
      for (let i = 0; i < keys.length && filled < m; i++) {
        let c = (offset[i] + next[i] * skipBy[i]) % m;
        while (this.table[c] >= 0) { next[i]++; c = (offset[i] + next[i] * skipBy[i]) % m; }
        this.table[c] = i;
        next[i]++;
        filled++;
      }
    }
  }

  pick(h: number, skip: (i: number) => boolean): number | undefined {
    const m = this.table.length;
    if (m === 0) return undefined;
    // A key whose endpoint may not be used is rehashed (Envoy's maglev retry behaviour), then scanned.
    for (let attempt = 0; attempt < 8; attempt++) {
      const o = this.table[(attempt === 0 ? h : hash48(`${h}:${attempt}`)) % m];
      if (!skip(o)) return o;
    }
    for (let i = 0; i < m; i++) { const o = this.table[(h + i) % m]; if (!skip(o)) return o; }
    return undefined;
  }
}
