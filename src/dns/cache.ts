// Cache of upstream answers, stored as the raw response bytes. A hit copies
// the bytes, patches the ID and rewrites each TTL field (offsets recorded at
// insertion) to what is left of it: no decode or re-encode on the hot path.
// Bounded by entries and bytes. Eviction is second-chance ("CLOCK"), an LRU
// approximation: a hit only sets a flag, and eviction walks from the oldest
// insertion, giving flagged entries another round at the end instead of
// dropping them. Re-inserting into the Map on every hit (exact LRU) doubled
// the cost of a cache hit.
import { summarizeResponse, RCODE_NOERROR, RCODE_NXDOMAIN, WireError } from './wire.js';

interface Entry {
  response: Buffer;
  ttlOffsets: Int32Array;
  originalTtls: Uint32Array;
  storedAtMs: number;
  expiresAtMs: number;
  bytes: number;
  /** Used since it was last considered for eviction. */
  referenced: boolean;
}

export interface CacheOptions {
  maxEntries: number;
  maxBytes: number;
  /** Upper bound on how long any answer is kept, whatever its TTL says. */
  maxTtlSeconds: number;
  /** Negative answers without an SOA are not cached (RFC 2308 §5). */
}

// Approximate per-entry overhead (key string, Map slot, typed arrays).
const ENTRY_OVERHEAD = 160;

export class AnswerCache {
  private readonly entries = new Map<string, Entry>();
  private totalBytes = 0;

  constructor(private readonly opts: CacheOptions) {}

  get size(): number {
    return this.entries.size;
  }

  get bytes(): number {
    return this.totalBytes;
  }

  /**
   * Stores an upstream response if it is cacheable: NOERROR with answers
   * (lifetime = smallest answer TTL), or NXDOMAIN / NOERROR-empty with an SOA
   * in the authority section (lifetime = min(SOA TTL, SOA MINIMUM), RFC 2308).
   * Truncated answers and failures are never stored. Returns the lifetime in
   * seconds, 0 when not stored.
   */
  store(key: string, response: Buffer, nowMs: number): number {
    let summary;
    try {
      summary = summarizeResponse(response);
    } catch (err) {
      if (err instanceof WireError) return 0;
      throw err;
    }
    if (summary.truncated) return 0;
    let ttl: number | undefined;
    if (summary.rcode === RCODE_NOERROR && summary.answerCount > 0) ttl = summary.minAnswerTtl;
    else if (summary.rcode === RCODE_NXDOMAIN || summary.rcode === RCODE_NOERROR) ttl = summary.negativeTtl;
    if (ttl === undefined || ttl <= 0) return 0;
    ttl = Math.min(ttl, this.opts.maxTtlSeconds);
    const copy = Buffer.from(response);
    const ttlOffsets = Int32Array.from(summary.ttlOffsets);
    const originalTtls = Uint32Array.from(summary.ttlOffsets, (o) => copy.readUInt32BE(o));
    const bytes = copy.length + ttlOffsets.byteLength * 2 + key.length * 2 + ENTRY_OVERHEAD;
    if (bytes > this.opts.maxBytes) return 0;
    this.delete(key);
    this.entries.set(key, { response: copy, ttlOffsets, originalTtls, storedAtMs: nowMs, expiresAtMs: nowMs + ttl * 1000, bytes, referenced: false });
    this.totalBytes += bytes;
    this.evict();
    return ttl;
  }

  /**
   * A fresh copy of the cached response with the given ID and TTLs decreased
   * by the time spent in the cache; undefined on miss or expiry.
   */
  lookup(key: string, id: number, nowMs: number): Buffer | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    if (nowMs >= e.expiresAtMs) {
      this.delete(key);
      return undefined;
    }
    e.referenced = true;
    const out = Buffer.allocUnsafe(e.response.length);
    e.response.copy(out);
    out.writeUInt16BE(id, 0);
    const elapsed = Math.floor((nowMs - e.storedAtMs) / 1000);
    if (elapsed > 0) {
      for (let i = 0; i < e.ttlOffsets.length; i++) {
        const left = e.originalTtls[i] - elapsed;
        out.writeUInt32BE(left > 0 ? left : 0, e.ttlOffsets[i]);
      }
    }
    return out;
  }

  /** How long the entry for `key` stays servable, in ms (0 when absent or expired). */
  remainingMs(key: string, nowMs: number): number {
    const e = this.entries.get(key);
    return e && e.expiresAtMs > nowMs ? e.expiresAtMs - nowMs : 0;
  }

  clear(): void {
    this.entries.clear();
    this.totalBytes = 0;
  }

  private delete(key: string): void {
    const e = this.entries.get(key);
    if (!e) return;
    this.entries.delete(key);
    this.totalBytes -= e.bytes;
  }

  private evict(): void {
    while (this.entries.size > this.opts.maxEntries || this.totalBytes > this.opts.maxBytes) {
      const oldest = this.entries.entries().next();
      if (oldest.done) break;
      const [key, e] = oldest.value;
      if (e.referenced) {
        // Second chance: move behind everything else. Terminates because
        // the flag is cleared, so a full pass finds a victim.
        e.referenced = false;
        this.entries.delete(key);
        this.entries.set(key, e);
        continue;
      }
      this.delete(key);
    }
  }
}
