// The native accept path's glue (native/src/l4_accept*.cc): listening
// sockets the pump thread accepts on, the L4 route table JavaScript pushes,
// and the records it gets back in batches.
import { addonExports, nativeAvailable } from './addon.js';

export type L4RouteKind = 'js' | 'cluster' | 'original' | 'inbound';
/** `inbound`: dial the app on loopback (native/src/l4_inbound.cc); `peek`: hand a TLS first byte to JavaScript. */
export interface L4Route { kind: L4RouteKind; cluster?: string; reason?: string; peek?: boolean }

export interface L4RouteTable {
  /** "o|ip|port" → route (o = outbound, i = inbound). */
  exact: Record<string, L4Route>;
  /** "o|port" → route for destinations with no exact entry. */
  byPort: Record<string, L4Route>;
  ownPorts: number[];
  maxConnections: number;
  idleTimeoutMs: number;
  passthroughConnectTimeoutMs: number;
  /** Inbound routes: the IPv4 source address the app is dialled from (127.0.0.6). */
  inboundSourceV4?: string;
  inboundConnectTimeoutMs?: number;
  /** Inbound routes with `peek`: how long to wait for the client's first byte (then dialled anyway: a server-first app). */
  inboundPeekTimeoutMs?: number;
  /** Telemetry as aggregated series (l4TakeSeries) instead of a record per connection event; records still come for handoffs. */
  aggregate?: boolean;
}

interface Base { direction: 'outbound' | 'inbound'; id?: number }
interface Where { dstIp?: string; dstPort?: number; peerIp: string; peerPort: number; startMs: number }
interface Routed extends Where { cluster: string; detectReason: string; passthrough: boolean; attempts: number }
export type L4Record =
  | (Base & Where & { kind: 'handoff'; fd: number })
  | (Base & Routed & { kind: 'opened'; id: number; upstreamIp: string; upstreamPort: number; localIp?: string; localPort?: number })
  | (Base & { kind: 'connect-failed'; id: number; upstreamIp: string; upstreamPort: number; code: string; message: string; retrying: boolean })
  | (Base & { kind: 'progress'; id: number; bytesAtoB: number; bytesBtoA: number })
  | (Base & { kind: 'closed'; id: number; bytesAtoB: number; bytesBtoA: number; reason: string; error?: string; durationMs: number })
  | (Base & Routed & { kind: 'failed'; id: number; code: string; message: string; durationMs: number });

/** What aggregated native connections added up to, per series (key format: native/src/l4_native.h). */
export interface L4Series { key: string; opened: number; closed: number; failed: number; connectFailures: number; retries: number; aToB: number; bToA: number }

export interface L4Stats { accepted: number; native: number; handedOff: number; dropped: number; retries: number; active: number }

interface L4Addon {
  l4Listen(port: number, direction: 'outbound' | 'inbound', onBatch: (records: L4Record[]) => void): number;
  l4Unlisten(id: number): void;
  l4SetRoutes(table: L4RouteTable): void;
  l4AbortNative(opts: { reset: boolean }): void;
  l4Stats(): L4Stats;
  l4TakeSeries(): L4Series[];
}

function addon(): L4Addon {
  return addonExports() as unknown as L4Addon;
}

export function nativeAcceptAvailable(): boolean {
  return nativeAvailable() && typeof (addonExports() as Partial<L4Addon>).l4Listen === 'function';
}

/** Listen on [::]:port (dual stack); the pump thread accepts. All listeners share the first onBatch given. */
export function l4Listen(port: number, direction: 'outbound' | 'inbound', onBatch: (records: L4Record[]) => void): number {
  return addon().l4Listen(port, direction, onBatch);
}

export function l4Unlisten(id: number): void {
  addon().l4Unlisten(id);
}

/** Replace the route table (atomically; a bad entry throws a TypeError naming it and changes nothing). */
export function l4SetRoutes(table: L4RouteTable): void {
  addon().l4SetRoutes(table);
}

export function l4AbortNative(reset: boolean): void {
  addon().l4AbortNative({ reset });
}

export function l4Stats(): L4Stats {
  return addon().l4Stats();
}

/** What aggregated native connections added up to since the last call. */
export function l4TakeSeries(): L4Series[] {
  return addon().l4TakeSeries();
}
