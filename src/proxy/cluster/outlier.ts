// DestinationRule outlierDetection (Envoy's consecutive 5xx / gateway
// error detectors): an endpoint that answers consecutive5xxErrors 5xx in a
// row (connect failures and resets count, as locally originated errors do
// in Envoy by default) or consecutiveGatewayErrors 502/503/504 in a row is
// ejected for baseEjectionTime × the number of times it was ejected, unless
// that would eject more than maxEjectionPercent of the endpoints (one may
// always be ejected). Every interval ejected endpoints whose time is up come
// back, and the multiplier of endpoints not ejected decays. Below
// minHealthPercent healthy endpoints, ejection is ignored (all endpoints
// take traffic) so a cluster is never routed to nothing.
export interface OutlierConfig { consecutive5xxErrors: number; consecutiveGatewayErrors?: number; intervalMs: number; baseEjectionTimeMs: number; maxEjectionPercent: number; minHealthPercent: number }

export type Outcome = { status: number } | { failure: 'connect' | 'reset' | 'timeout' };

interface HostState { consecutive5xx: number; consecutiveGateway: number; ejections: number; ejectedUntil?: number }

/** Envoy's cap on baseEjectionTime × count. */
const MAX_EJECTION_MS = 300_000;

export class OutlierDetector {
  private readonly hosts = new Map<string, HostState>();
  private readonly timer: NodeJS.Timeout;
  ejectionsTotal = 0;

  constructor(readonly cfg: OutlierConfig, private readonly onChange: (ejectedNow: number) => void = () => {}) {
    this.timer = setInterval(() => this.sweep(), Math.max(10, cfg.intervalMs));
    this.timer.unref();
  }

  stop(): void { clearInterval(this.timer); }

  private state(key: string): HostState {
    let s = this.hosts.get(key);
    if (!s) this.hosts.set(key, (s = { consecutive5xx: 0, consecutiveGateway: 0, ejections: 0 }));
    return s;
  }

  record(key: string, o: Outcome, clusterSize: number): void {
    const s = this.state(key);
    const gateway = 'failure' in o || o.status === 502 || o.status === 503 || o.status === 504;
    const fivexx = 'failure' in o || o.status >= 500;
    if (!fivexx) { s.consecutive5xx = 0; s.consecutiveGateway = 0; return; }
    s.consecutive5xx++;
    if (gateway) s.consecutiveGateway++; else s.consecutiveGateway = 0;
    if (s.ejectedUntil !== undefined) return;
    const hit5xx = this.cfg.consecutive5xxErrors > 0 && s.consecutive5xx >= this.cfg.consecutive5xxErrors;
    const hitGw = this.cfg.consecutiveGatewayErrors !== undefined && this.cfg.consecutiveGatewayErrors > 0 && s.consecutiveGateway >= this.cfg.consecutiveGatewayErrors;
    if (!hit5xx && !hitGw) return;
    const ejected = this.ejectedCount();
    if (ejected > 0 && ((ejected + 1) * 100) / Math.max(1, clusterSize) > this.cfg.maxEjectionPercent) return;
    s.ejections++;
    s.ejectedUntil = Date.now() + Math.min(this.cfg.baseEjectionTimeMs * s.ejections, Math.max(MAX_EJECTION_MS, this.cfg.baseEjectionTimeMs));
    s.consecutive5xx = 0;
    s.consecutiveGateway = 0;
    this.ejectionsTotal++;
    this.onChange(this.ejectedCount());
  }

  isEjected(key: string): boolean {
    return this.hosts.get(key)?.ejectedUntil !== undefined;
  }

  ejectedCount(): number {
    let n = 0;
    for (const s of this.hosts.values()) if (s.ejectedUntil !== undefined) n++;
    return n;
  }

  /** The endpoints that take traffic: all but the ejected, unless too few would remain healthy. */
  filter<T>(targets: T[], keyOf: (t: T) => string): T[] {
    const ok = targets.filter((t) => !this.isEjected(keyOf(t)));
    if (ok.length === targets.length) return targets;
    if (ok.length === 0 || (ok.length * 100) / targets.length < this.cfg.minHealthPercent) return targets;
    return ok;
  }

  hostStats(key: string): { ejected: boolean; ejections: number; consecutive5xx: number; ejectedForMs?: number } {
    const s = this.hosts.get(key);
    return { ejected: s?.ejectedUntil !== undefined, ejections: s?.ejections ?? 0, consecutive5xx: s?.consecutive5xx ?? 0, ...(s?.ejectedUntil ? { ejectedForMs: Math.max(0, s.ejectedUntil - Date.now()) } : {}) };
  }

  private sweep(): void {
    const now = Date.now();
    let changed = false;
    for (const s of this.hosts.values()) {
      if (s.ejectedUntil !== undefined) {
        if (s.ejectedUntil <= now) { s.ejectedUntil = undefined; changed = true; }
      } else if (s.ejections > 0 && s.consecutive5xx === 0) {
        s.ejections--; // healthy for an interval: the next ejection is shorter again
      }
    }
    if (changed) this.onChange(this.ejectedCount());
  }
}
