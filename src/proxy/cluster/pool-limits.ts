// DestinationRule connectionPool as Envoy's circuit breakers apply it to a
// cluster: http2MaxRequests caps requests in flight (over → 503 UO at once);
// maxConnections caps connections, and since an HTTP/1.1 connection carries
// one request at a time, requests beyond it wait as pending, at most
// http1MaxPendingRequests of them (over → 503 UO); maxRetries caps retries
// in flight (over → the response is returned as it is, no retry). Limits
// absent from the DestinationRule are unlimited, as Istio sets them.
export interface PoolLimits { maxConnections?: number; http1MaxPendingRequests?: number; http2MaxRequests?: number; maxRetries?: number }

export type Release = () => void;

export class PoolGate {
  active = 0;
  retriesActive = 0;
  overflows = { pending: 0, requests: 0, retries: 0 };
  private readonly pending: (() => void)[] = [];

  constructor(private readonly limits: PoolLimits) {}

  get pendingCount(): number { return this.pending.length; }

  /** Whether admit() would make a request wait as pending now (only then does it need an abort signal). */
  mayQueue(): boolean {
    return this.limits.maxConnections !== undefined && this.active >= this.limits.maxConnections;
  }

  /**
   * Admission of one request: a release function, 'overflow' (answer 503
   * UO), or 'aborted' when the signal fired while it waited as pending (the
   * client left or the route timeout passed).
   */
  async admit(signal?: AbortSignal): Promise<Release | 'overflow' | 'aborted'> {
    const l = this.limits;
    if (l.http2MaxRequests !== undefined && this.active >= l.http2MaxRequests) { this.overflows.requests++; return 'overflow'; }
    if (l.maxConnections !== undefined && this.active >= l.maxConnections) {
      if (this.pending.length >= (l.http1MaxPendingRequests ?? Infinity)) { this.overflows.pending++; return 'overflow'; }
      const admitted = await new Promise<boolean>((resolve) => {
        const go = () => { signal?.removeEventListener('abort', stop); resolve(true); };
        const stop = () => { const i = this.pending.indexOf(go); if (i >= 0) this.pending.splice(i, 1); resolve(false); };
        this.pending.push(go);
        signal?.addEventListener('abort', stop, { once: true });
      });
      if (!admitted) return 'aborted';
    }
    this.active++;
    let done = false;
    return () => { if (done) return; done = true; this.active--; this.next(); };
  }

  private next(): void {
    const l = this.limits;
    if (this.pending.length > 0 && (l.maxConnections === undefined || this.active < l.maxConnections)) this.pending.shift()!();
  }

  /** A TCP connection (maxConnections, no queue: over the limit it is refused, Envoy's tcp_proxy UO). */
  admitConnection(): Release | undefined {
    const max = this.limits.maxConnections;
    if (max !== undefined && this.active >= max) { this.overflows.pending++; return undefined; }
    this.active++;
    let done = false;
    return () => { if (!done) { done = true; this.active--; this.next(); } };
  }

  /** One more retry in flight, if maxRetries allows. */
  retry(): Release | undefined {
    if (this.limits.maxRetries !== undefined && this.retriesActive >= this.limits.maxRetries) { this.overflows.retries++; return undefined; }
    this.retriesActive++;
    let done = false;
    return () => { if (!done) { done = true; this.retriesActive--; } };
  }
}
