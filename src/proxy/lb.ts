// Per-request load balancing: Envoy's LEAST_REQUEST (Istio's default) with
// equal weights is "power of two choices" — pick two endpoints at random,
// take the one with fewer requests in flight. It needs no global scan and
// does not herd every proxy onto the same endpoint. Endpoints a retry
// already tried are skipped while others remain (Istio's retry host
// predicate "previous hosts").
export interface Pickable { ip: string; port: number }

const key = (t: Pickable) => `${t.ip}|${t.port}`;

/** Things in flight per endpoint (connections or requests), released exactly once. */
export class InFlight {
  private readonly active = new Map<string, number>();
  private readonly total = new Map<string, number>();

  acquire(t: Pickable): () => void {
    const k = key(t);
    this.active.set(k, (this.active.get(k) ?? 0) + 1);
    this.total.set(k, (this.total.get(k) ?? 0) + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const n = (this.active.get(k) ?? 1) - 1;
      if (n <= 0) this.active.delete(k); else this.active.set(k, n);
    };
  }

  activeOf(k: string): number {
    return this.active.get(k) ?? 0;
  }

  totalOf(k: string): number {
    return this.total.get(k) ?? 0;
  }
}

export class LeastRequest {
  private readonly inFlight = new InFlight();

  pick<T extends Pickable>(targets: T[], tried: Set<string>): T | undefined {
    const fresh = targets.filter((t) => !tried.has(key(t)));
    const pool = fresh.length > 0 ? fresh : targets;
    if (pool.length === 0) return undefined;
    if (pool.length === 1) return pool[0];
    const a = pool[Math.floor(Math.random() * pool.length)];
    let b = pool[Math.floor(Math.random() * (pool.length - 1))];
    if (b === a) b = pool[pool.length - 1];
    return this.inFlight.activeOf(key(b)) < this.inFlight.activeOf(key(a)) ? b : a;
  }

  /** Count a request in flight; call the returned function once when it is done. */
  acquire(t: Pickable): () => void {
    return this.inFlight.acquire(t);
  }

  stats(ip: string, port: number): { activeRequests: number; totalRequests: number } {
    const k = key({ ip, port });
    return { activeRequests: this.inFlight.activeOf(k), totalRequests: this.inFlight.totalOf(k) };
  }
}

export function endpointKey(t: Pickable): string {
  return key(t);
}
