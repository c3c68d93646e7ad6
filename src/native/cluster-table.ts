// The native cluster table (native/src/cluster_table.h): cluster name →
// endpoints with weights and health/ejection flags, pushed from here, with
// in-flight counts kept natively so native connection paths (the L4 accept
// path, the native HTTP path) pick endpoints without calling JavaScript.
// JavaScript is the only writer; every push replaces what it names
// atomically (a bad entry throws a TypeError naming the field and changes
// nothing).
import { addonExports, nativeAvailable } from './addon.js';

export type LbPolicy = 'LEAST_REQUEST' | 'ROUND_ROBIN' | 'RANDOM';

export interface ClusterEndpointSpec {
  /** Numeric IPv4 / IPv6. */
  ip: string;
  port: number;
  /** 1..2^24; default 1. */
  weight?: number;
  /** false: picked only when no endpoint is healthy (panic mode). Default true. */
  healthy?: boolean;
  /** Outlier detection ejected it: not picked (unless every endpoint is). Default false. */
  ejected?: boolean;
}

export interface ClusterSpec {
  name: string;
  /** Default LEAST_REQUEST (power of two choices, Istio's default). */
  lbPolicy?: LbPolicy;
  connectTimeoutMs?: number;
  /** Connect attempts in all (first + retries to other endpoints on connect failure); default 3. */
  maxAttempts?: number;
  endpoints: ClusterEndpointSpec[];
}

export interface ClusterEndpointStats { ip: string; port: number; weight: number; healthy: boolean; ejected: boolean; active: number; picked: number }

interface ClusterTableAddon {
  clusterTableReplace(clusters: ClusterSpec[]): number;
  clusterTableUpsert(cluster: ClusterSpec): number;
  clusterTableRemove(name: string): number;
  clusterTablePick(name: string, opts?: { tried?: number[]; hold?: boolean }): { index: number; ip: string; port: number; lease?: number } | undefined;
  clusterTableRelease(lease: number): boolean;
  clusterTableStats(): { version: number; clusters: Record<string, ClusterEndpointStats[]> };
}

function addon(): ClusterTableAddon {
  const a = addonExports() as Partial<ClusterTableAddon>;
  if (typeof a.clusterTableReplace !== 'function') throw Object.assign(new Error('weir native addon has no cluster table (built before it existed): run `npm run build:native`'), { code: 'ENOCLUSTERTABLE' });
  return a as ClusterTableAddon;
}

export function clusterTableAvailable(): boolean {
  return nativeAvailable() && typeof (addonExports() as Partial<ClusterTableAddon>).clusterTableReplace === 'function';
}

/** Replace every cluster; in-flight counts of endpoints that stay are kept. Returns the table version. */
export function replaceClusters(clusters: ClusterSpec[]): number {
  return addon().clusterTableReplace(clusters);
}

export function upsertCluster(cluster: ClusterSpec): number {
  return addon().clusterTableUpsert(cluster);
}

export function removeCluster(name: string): number {
  return addon().clusterTableRemove(name);
}

/** Pick as a native path would (tests, admin): `tried` = endpoint indexes to skip; `hold` keeps it in flight until releaseLease. */
export function pickEndpoint(name: string, opts?: { tried?: number[]; hold?: boolean }): { index: number; ip: string; port: number; lease?: number } | undefined {
  return addon().clusterTablePick(name, opts);
}

export function releaseLease(lease: number): boolean {
  return addon().clusterTableRelease(lease);
}

export function clusterTableStats(): { version: number; clusters: Record<string, ClusterEndpointStats[]> } {
  return addon().clusterTableStats();
}
