// The native accept path, JavaScript's side: whether this proxy uses it,
// the table pushes (registry clusters + L4 routes) on every registry or
// compiled-config update, the outbound listener the pump thread accepts
// on, and the record batches: handoffs go to the JavaScript listener as
// accepted sockets, everything else to NativeOutcomes (metrics, access log).
import { closeSync } from 'node:fs';
import { Socket } from 'node:net';
import type { Logger } from '../../common/log.js';
import { clusterTableAvailable, replaceClusters } from '../../native/cluster-table.js';
import { l4AbortNative, l4Listen, l4SetRoutes, l4Stats, l4TakeSeries, l4Unlisten, nativeAcceptAvailable, type L4Record, type L4Stats } from '../../native/l4-accept.js';
import { connectPumpAvailable } from '../../native/splice-pump.js';
import { canonicalIp } from '../addr.js';
import type { Direction, ProxyDeps } from '../context.js';
import type { OriginalDst } from '../original-dst.js';
import { pumpMode } from '../relay.js';
import type { RouteTable } from '../routing.js';
import type { RegistryCluster } from './clusters.js';
import { NativeOutcomes } from './outcomes.js';
import type { NativeInbound } from './inbound.js';
import { planNativeL4, type NativeService } from './table.js';

/** A connection the native side did not keep: the listener takes it from here (dst undefined = none could be read). */
export type HandoffHandler = (direction: Direction, sock: Socket, dst: OriginalDst | undefined) => void;

/** Whether this proxy accepts outbound natively: asked for (default), the splice pump dials, the addon has the path. */
export function nativeAcceptWanted(d: ProxyDeps): boolean {
  const cfg = d.config;
  if (cfg.nativeAccept === 'off') return false;
  try {
    return pumpMode(cfg.pump) === 'splice' && connectPumpAvailable() && nativeAcceptAvailable() && clusterTableAvailable();
  } catch {
    return false;
  }
}

export class NativeL4 {
  readonly outcomes: NativeOutcomes;
  private clusters = new Map<string, RegistryCluster>();
  private services = new Map<string, NativeService>();
  private inbound = new Map<string, NativeInbound>();
  private listeners: number[] = [];
  private pushedFor: RouteTable | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** Routes the last push made native (for the config dump and tests). */
  nativeRoutes = 0;
  /** Aggregated series folded into the metrics so far (telemetry without a record per connection). */
  private foldedSeries = 0;

  constructor(private readonly d: ProxyDeps, private readonly logger: Logger, private readonly onHandoff: HandoffHandler) {
    this.outcomes = new NativeOutcomes(d, () => this.clusters, () => this.services, () => this.inbound);
    // A new PeerAuthentication or AuthorizationPolicy changes which inbound ports may be native: re-plan at once.
    d.mesh?.onSecurityChange(() => this.push(true));
  }

  /**
   * Whether the inbound listener is the pump thread's too: REDIRECT capture only
   * (a TPROXY listener must be IP_TRANSPARENT, and its connections keep the client's address to the app).
   */
  inboundNative(): boolean {
    return this.d.config.interceptionMode === 'REDIRECT';
  }

  /**
   * Push the tables for the current registry and compiled config. Called on
   * every update; a failure (a bug: the inputs come from validated state)
   * leaves the previous tables and is logged, never thrown at the caller.
   */
  push(force = false): void {
    const routes = this.d.routes();
    if (!force && routes === this.pushedFor) return;
    try {
      const plan = planNativeL4(this.d, routes);
      // Clusters first: a route must never name a cluster the table does not have yet.
      replaceClusters([...plan.clusters.values()].map((c) => c.spec));
      this.clusters = plan.clusters;
      this.services = plan.services;
      this.inbound = plan.inbound;
      l4SetRoutes(plan.table);
      this.nativeRoutes = plan.nativeRoutes;
      this.pushedFor = routes;
    } catch (err) {
      this.logger.error({ err: String(err) }, 'native accept: cannot push the route table; keeping the previous one');
    }
  }

  listen(port: number, direction: Direction): void {
    this.push(true);
    this.listeners.push(l4Listen(port, direction, (records) => this.onBatch(records)));
    // Aggregated telemetry comes back on this schedule, and before every scrape (fold()).
    this.timer ??= setInterval(() => this.fold(), 1000).unref();
  }

  /** Stop accepting (connections stay). */
  close(): void {
    for (const id of this.listeners) l4Unlisten(id);
    this.listeners = [];
  }

  /** Takes what aggregated native connections added up to into the metrics (a timer, every scrape, /stats, shutdown). */
  fold(): void {
    try {
      const series = l4TakeSeries();
      this.foldedSeries += series.length;
      this.outcomes.fold(series);
    } catch (err) {
      // Metrics must never take the proxy down (this runs from a timer): the batch is lost, and said so.
      this.logger.error({ err: String(err), stack: (err as Error)?.stack }, 'native accept: could not fold a metrics batch');
    }
  }

  /** The last fold: after the connections ended (drain), nothing comes later. */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.fold();
  }

  /** Native connections open now (connecting or pumping). */
  active(): number {
    return l4Stats().active;
  }

  abortAll(): void {
    l4AbortNative(true);
  }

  stats(): L4Stats & { routes: number; foldedSeries: number } {
    return { ...l4Stats(), routes: this.nativeRoutes, foldedSeries: this.foldedSeries };
  }

  private onBatch(records: L4Record[]): void {
    for (const r of records) {
      try {
        if (r.kind === 'handoff') this.handoff(r);
        else this.outcomes.handle(r);
      } catch (err) {
        // One record's bug must cost its telemetry only (the connection itself is native or already handed off).
        this.logger.error({ err: String(err), stack: (err as Error)?.stack, kind: r.kind }, 'native accept: record handling failed');
      }
    }
  }

  private handoff(r: Extract<L4Record, { kind: 'handoff' }>): void {
    let sock: Socket;
    try {
      // pauseOnCreate: as Node's own listener with pauseOnConnect, nothing is read before protocol selection asks.
      sock = new Socket({ fd: r.fd, allowHalfOpen: true, readable: true, writable: true, pauseOnCreate: true } as ConstructorParameters<typeof Socket>[0]);
    } catch (err) {
      this.logger.warn({ err: String(err) }, 'native accept: cannot adopt a handed-off connection');
      try { closeSync(r.fd); } catch { /* already gone */ }
      return;
    }
    const dst = r.dstIp !== undefined ? { ip: canonicalIp(r.dstIp), port: r.dstPort ?? 0 } : undefined;
    this.onHandoff(r.direction, sock, dst);
  }
}
