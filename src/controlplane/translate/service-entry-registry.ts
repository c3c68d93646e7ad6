// ServiceEntries → registry entries, one per host, so the DNS proxy answers
// ServiceEntry hosts like Services and the L4 path can route their
// addresses. A host without addresses gets a VIP from 240.240.0.0/16, as
// Istio's DNS auto-allocation does (not for wildcard hosts, nor for
// resolution NONE, which passes traffic through to the original address).
// Remote-cluster VIPs use 240.241.0.0/16 (registry-builder.ts): no overlap.
// A VIP is stable for a host while the agent runs, and derived from a hash
// of the host, so a restarted agent hands out the same one unless two hosts
// collide.
import { isIP } from 'node:net';
import type { ServiceEntry } from '../../istio/types.js';
import type { RegistryEndpoint, RegistryService } from '../types.js';

export const AUTO_VIP_RANGE = '240.240.0.0/16';
const SIZE = 65_534;

export class VipAllocator {
  private readonly byHost = new Map<string, string>();
  private readonly taken = new Set<string>();

  vipFor(host: string): string {
    const have = this.byHost.get(host);
    if (have) return have;
    let h = 2166136261;
    for (let i = 0; i < host.length; i++) h = Math.imul(h ^ host.charCodeAt(i), 16777619) >>> 0;
    for (let i = 0; i < SIZE; i++) {
      const n = ((h + i) % SIZE) + 1; // 240.240.0.1 … 240.240.255.254
      const vip = `240.240.${n >> 8}.${n & 255}`;
      if (!this.taken.has(vip)) { this.byHost.set(host, vip); this.taken.add(vip); return vip; }
    }
    throw new Error(`auto-allocated VIP range ${AUTO_VIP_RANGE} exhausted`);
  }

  /** Hosts no longer defined give their VIP back. */
  retain(hosts: Set<string>): void {
    for (const [h, vip] of this.byHost) if (!hosts.has(h)) { this.byHost.delete(h); this.taken.delete(vip); }
  }
}

/** Oldest first (Istio's order for conflicting definitions of one host); the first definition of a host wins. */
export function serviceEntryRegistry(entries: ServiceEntry[], vips: VipAllocator): RegistryService[] {
  const sorted = [...entries].sort((a, b) => a.meta.created - b.meta.created || `${a.meta.namespace}/${a.meta.name}`.localeCompare(`${b.meta.namespace}/${b.meta.name}`));
  const out = new Map<string, RegistryService>();
  const seen = new Set<string>();
  for (const se of sorted) {
    const ips = se.addresses.filter((a) => isIP(a) !== 0); // CIDR ranges match traffic, they are not DNS answers
    for (const raw of se.hosts) {
      const host = raw.toLowerCase();
      const key = `${se.meta.namespace}/${host}`;
      if (out.has(key)) continue;
      const wildcard = host.startsWith('*');
      const auto = ips.length === 0 && !wildcard && se.resolution !== 'NONE' && se.addresses.length === 0;
      const ports = se.ports.map((p) => ({ name: p.name, port: p.number, protocol: 'TCP' as const, ...(p.protocol ? { appProtocol: p.protocol.toLowerCase() } : {}) }));
      const endpoints: RegistryEndpoint[] = se.resolution === 'STATIC'
        ? se.endpoints.filter((e) => isIP(e.address) !== 0).map((e) => ({
          ip: e.address, ready: true, serving: true, terminating: false,
          ports: se.ports.map((p) => ({ name: p.name, port: e.ports?.[p.name] ?? p.targetPort ?? p.number, protocol: 'TCP' as const })),
          ...(e.labels ? { labels: e.labels } : {}),
        }))
        : [];
      seen.add(host);
      out.set(key, {
        namespace: se.meta.namespace, name: host, kind: 'ClusterIP',
        clusterIPs: auto ? [vips.vipFor(host)] : ips, ports, endpoints,
        serviceEntry: { host, exportTo: se.exportTo, resolution: se.resolution, location: se.location, ...(auto ? { autoAllocated: true } : {}) },
      });
    }
  }
  vips.retain(seen);
  return [...out.values()];
}
