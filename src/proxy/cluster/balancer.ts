// A cluster's load balancer (DestinationRule trafficPolicy.loadBalancer):
// LEAST_REQUEST (Istio's default; power of two choices over requests in
// flight), ROUND_ROBIN, RANDOM, and consistent hashing over a ring or a
// maglev table when the request carries a hash key. PASSTHROUGH is decided
// by the caller (the original destination; no endpoint set). Endpoints a
// retry already tried are avoided while others remain ("previous hosts").
import { InFlight, LeastRequest, endpointKey, type Pickable } from '../lb.js';
import { hash48, Maglev, RingHash, type HashTable } from './hash-ring.js';

export type SimplePolicy = 'LEAST_REQUEST' | 'ROUND_ROBIN' | 'RANDOM' | 'PASSTHROUGH' | 'CONSISTENT_HASH';

export interface HashConfig { kind: 'ring' | 'maglev'; minimumRingSize?: number; tableSize?: number }

export class Balancer {
  private readonly leastRequest = new LeastRequest();
  private readonly inFlight = new InFlight();
  private rr = Math.floor(Math.random() * 1024);
  private table?: { keys: string; table: HashTable };

  constructor(readonly policy: SimplePolicy, private readonly hash?: HashConfig) {}

  pick<T extends Pickable>(targets: T[], tried: Set<string>, hashKey?: string): T | undefined {
    if (targets.length === 0) return undefined;
    const fresh = targets.filter((t) => !tried.has(endpointKey(t)));
    const pool = fresh.length > 0 ? fresh : targets;
    if (this.hash && hashKey !== undefined) return this.byHash(targets, pool, hashKey);
    switch (this.policy) {
      case 'ROUND_ROBIN': return pool[this.rr++ % pool.length];
      case 'RANDOM': return pool[Math.floor(Math.random() * pool.length)];
      default: return this.leastRequest.pick(pool, new Set());
    }
  }

  /** The table is over the whole endpoint set (so keys stay put when a retry excludes one). */
  private byHash<T extends Pickable>(all: T[], allowed: T[], key: string): T | undefined {
    const keys = all.map(endpointKey);
    const sig = keys.join(',');
    if (this.table?.keys !== sig) {
      this.table = { keys: sig, table: this.hash!.kind === 'maglev' ? new Maglev(keys, this.hash!.tableSize) : new RingHash(keys, this.hash!.minimumRingSize) };
    }
    const ok = new Set(allowed.map(endpointKey));
    const i = this.table.table.pick(hash48(key), (j) => !ok.has(keys[j]));
    return i === undefined ? undefined : all[i];
  }

  acquire(t: Pickable): () => void {
    const a = this.leastRequest.acquire(t);
    const b = this.inFlight.acquire(t);
    return () => { a(); b(); };
  }

  stats(t: Pickable): { activeRequests: number; totalRequests: number } {
    const k = endpointKey(t);
    return { activeRequests: this.inFlight.activeOf(k), totalRequests: this.inFlight.totalOf(k) };
  }
}
