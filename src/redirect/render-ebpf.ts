// RedirectPlan → the eBPF backend's per-pod map entry (struct weir_pod_plan
// in bpf/weir_maps.h), and back. The same plan that renders nft/iptables
// rules renders these bytes; the netns's own addresses complete it (they
// are facts of the netns, not of the plan: which destinations are
// pod-local, and which subnets sit behind an excluded interface).
//
// What the eBPF programs cannot see, and how the plan still holds:
// - Output interface (connect() runs before routing): excludeInterfaces
//   becomes "skip" CIDRs, the connected subnets of those interfaces in the
//   netns at apply time. Destinations routed THROUGH such an interface
//   beyond its own subnet are still captured (the nft backend would not).
// - Inbound: stays on nftables (see inboundOnlyPlan).
import { FieldError } from '../common/errors.js';
import { formatIpv6, parseIpv4, parseIpv6 } from './addr.js';
import { ANNOTATIONS } from './annotations.js';
import { planHash } from './plan.js';
import type { Cidr, PortRange, RedirectPlan } from './types.js';

export const EBPF_LAYOUT_VERSION = 1;
export const EBPF_MAX_PORT_RANGES = 32;
export const EBPF_MAX_CIDRS = 32;
export const EBPF_MAX_LOCAL_ADDRS = 16;
/** sizeof(struct weir_pod_plan); the loader addon reports its own (checked at load). */
export const EBPF_POD_PLAN_SIZE = 32 + 2 * 4 * EBPF_MAX_PORT_RANGES + 3 * 32 * EBPF_MAX_CIDRS + 16 * EBPF_MAX_LOCAL_ADDRS;

const F_DNS = 0x1;
const F_INCLUDE_ALL = 0x2;
const F_LINKERD = 0x4;
const F_SHORTCUT = 0x8;

/** An address of the pod's netns (from the loader's getifaddrs there). */
export interface NetnsAddress { ifname: string; family: 4 | 6; address: string; prefix: number }

/** The decoded entry: what the programs act on, field by field. */
export interface EbpfPodEntry {
  planHash: string;
  proxyUid: number;
  proxyGid: number;
  outboundPort: number;
  dns: { enabled: boolean; port: number };
  linkerd: boolean;
  /** The same-node sk_msg shortcut for the pod's loopback TCP (bpf/weir_shortcut.h). */
  shortcut: boolean;
  includeAll: boolean;
  includePorts: PortRange[];
  excludePorts: PortRange[];
  includeCidrs: Cidr[];
  excludeCidrs: Cidr[];
  skipCidrs: Cidr[];
  local: string[];
}

/** Refuses what the eBPF backend cannot do, naming the field. */
export function assertEbpfPlan(plan: RedirectPlan): void {
  if (plan.mode !== 'REDIRECT' || plan.tproxy) {
    throw new FieldError(ANNOTATIONS.interceptionMode, 'the ebpf backend supports REDIRECT only (TPROXY needs the nftables or iptables backend)', String(plan.mode));
  }
}

const hostBitsCleared = (c: Cidr): Cidr => {
  const bytes = addressBytes(c.address);
  const keep = c.family === 4 ? c.prefix + 96 : c.prefix;
  for (let i = 0; i < 16; i++) {
    const bits = Math.max(0, Math.min(8, keep - i * 8));
    bytes[i] &= (0xff << (8 - bits)) & 0xff;
  }
  return { family: c.family, address: formatAddress(bytes), prefix: c.prefix };
};

export interface EbpfEntryOptions {
  /** Splice the pod's loopback TCP (app ↔ proxy) with sk_msg; default off (splice(2) readers cannot see its bytes: docs/architecture.md). */
  shortcut?: boolean;
}

/** The entry for `plan` in a netns with `addresses`. */
export function renderEbpfEntry(plan: RedirectPlan, addresses: NetnsAddress[], opts: EbpfEntryOptions = {}): EbpfPodEntry {
  assertEbpfPlan(plan);
  const o = plan.outbound;
  const excluded = new Set(plan.excludeInterfaces);
  const skip = addresses.filter((a) => excluded.has(a.ifname)).map((a) => hostBitsCleared({ family: a.family, address: a.address, prefix: a.prefix }));
  const local = [...new Set(addresses.filter((a) => !isLoopback(a.address)).map((a) => a.address))];
  const entry: EbpfPodEntry = {
    planHash: planHash(plan),
    proxyUid: plan.proxyUid,
    proxyGid: plan.proxyGid,
    outboundPort: plan.outboundPort,
    dns: { enabled: plan.dns.enabled, port: plan.dns.port },
    linkerd: plan.style === 'linkerd',
    shortcut: opts.shortcut ?? false,
    includeAll: o.includeCidrs === 'all',
    includePorts: o.includePorts,
    excludePorts: o.excludePorts,
    includeCidrs: o.includeCidrs === 'all' ? [] : o.includeCidrs,
    excludeCidrs: o.excludeCidrs,
    skipCidrs: dedupeCidrs(skip),
    local,
  };
  const limit = (field: string, n: number, max: number): void => {
    if (n > max) throw new FieldError(field, `the ebpf backend holds at most ${max} entries here (got ${n}); use the nftables backend for this pod`);
  };
  limit(ANNOTATIONS.includeOutboundPorts, entry.includePorts.length, EBPF_MAX_PORT_RANGES);
  limit(ANNOTATIONS.excludeOutboundPorts, entry.excludePorts.length, EBPF_MAX_PORT_RANGES);
  limit(ANNOTATIONS.includeOutboundIPRanges, entry.includeCidrs.length, EBPF_MAX_CIDRS);
  limit(ANNOTATIONS.excludeOutboundIPRanges, entry.excludeCidrs.length, EBPF_MAX_CIDRS);
  limit(`${ANNOTATIONS.excludeInterfaces} (their subnets)`, entry.skipCidrs.length, EBPF_MAX_CIDRS);
  limit('netns addresses', entry.local.length, EBPF_MAX_LOCAL_ADDRS);
  return entry;
}

function dedupeCidrs(list: Cidr[]): Cidr[] {
  const seen = new Map(list.map((c) => [`${c.address}/${c.prefix}`, c]));
  return [...seen.values()];
}

function isLoopback(address: string): boolean {
  return address === '::1' || address.startsWith('127.');
}

/** 16 bytes, IPv4 as ::ffff:a.b.c.d (the programs compare both families in one loop). */
export function addressBytes(address: string): Uint8Array {
  const out = new Uint8Array(16);
  const v4 = parseIpv4(address);
  if (v4) {
    out[10] = 0xff; out[11] = 0xff;
    out.set(v4, 12);
    return out;
  }
  const v6 = parseIpv6(address);
  if (!v6) throw new FieldError('address', 'not an IPv4 or IPv6 address', address);
  v6.forEach((g, i) => { out[i * 2] = g >> 8; out[i * 2 + 1] = g & 0xff; });
  return out;
}

export function formatAddress(bytes: Uint8Array): string {
  const mapped = bytes.subarray(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff;
  if (mapped) return [...bytes.subarray(12)].join('.');
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((bytes[i] << 8) | bytes[i + 1]);
  return formatIpv6(groups);
}

function maskBytes(c: Cidr): Uint8Array {
  const keep = c.family === 4 ? c.prefix + 96 : c.prefix;
  const out = new Uint8Array(16);
  for (let i = 0; i < 16; i++) out[i] = (0xff << (8 - Math.max(0, Math.min(8, keep - i * 8)))) & 0xff;
  return out;
}

// Offsets in struct weir_pod_plan.
const OFF = {
  layout: 0, flags: 4, uid: 8, gid: 12, outboundPort: 16, dnsPort: 18,
  nIncludePorts: 20, nExcludePorts: 21, nIncludeCidrs: 22, nExcludeCidrs: 23, nSkipCidrs: 24, nLocal: 25, planHash: 26,
  includePorts: 32,
} as const;
const PORTS_BYTES = 4 * EBPF_MAX_PORT_RANGES;
const CIDRS_BYTES = 32 * EBPF_MAX_CIDRS;
const O_EXCLUDE_PORTS = OFF.includePorts + PORTS_BYTES;
const O_INCLUDE_CIDRS = O_EXCLUDE_PORTS + PORTS_BYTES;
const O_EXCLUDE_CIDRS = O_INCLUDE_CIDRS + CIDRS_BYTES;
const O_SKIP_CIDRS = O_EXCLUDE_CIDRS + CIDRS_BYTES;
const O_LOCAL = O_SKIP_CIDRS + CIDRS_BYTES;

/** The entry as the map value's bytes (host byte order where the header says so: little-endian here). */
export function encodeEbpfEntry(e: EbpfPodEntry): Buffer {
  const buf = Buffer.alloc(EBPF_POD_PLAN_SIZE);
  buf.writeUInt32LE(EBPF_LAYOUT_VERSION, OFF.layout);
  buf.writeUInt32LE((e.dns.enabled ? F_DNS : 0) | (e.includeAll ? F_INCLUDE_ALL : 0) | (e.linkerd ? F_LINKERD : 0) | (e.shortcut ? F_SHORTCUT : 0), OFF.flags);
  buf.writeUInt32LE(e.proxyUid, OFF.uid);
  buf.writeUInt32LE(e.proxyGid, OFF.gid);
  buf.writeUInt16LE(e.outboundPort, OFF.outboundPort);
  buf.writeUInt16LE(e.dns.port, OFF.dnsPort);
  buf.writeUInt8(e.includePorts.length, OFF.nIncludePorts);
  buf.writeUInt8(e.excludePorts.length, OFF.nExcludePorts);
  buf.writeUInt8(e.includeCidrs.length, OFF.nIncludeCidrs);
  buf.writeUInt8(e.excludeCidrs.length, OFF.nExcludeCidrs);
  buf.writeUInt8(e.skipCidrs.length, OFF.nSkipCidrs);
  buf.writeUInt8(e.local.length, OFF.nLocal);
  Buffer.from(e.planHash, 'hex').copy(buf, OFF.planHash, 0, 6);
  const ports = (list: PortRange[], at: number): void => list.forEach((r, i) => { buf.writeUInt16LE(r.from, at + i * 4); buf.writeUInt16LE(r.to, at + i * 4 + 2); });
  const cidrs = (list: Cidr[], at: number): void => list.forEach((c, i) => { buf.set(addressBytes(c.address), at + i * 32); buf.set(maskBytes(c), at + i * 32 + 16); });
  ports(e.includePorts, OFF.includePorts);
  ports(e.excludePorts, O_EXCLUDE_PORTS);
  cidrs(e.includeCidrs, O_INCLUDE_CIDRS);
  cidrs(e.excludeCidrs, O_EXCLUDE_CIDRS);
  cidrs(e.skipCidrs, O_SKIP_CIDRS);
  e.local.forEach((a, i) => buf.set(addressBytes(a), O_LOCAL + i * 16));
  return buf;
}

/** A map value back to an entry; throws on a value of another layout. */
export function decodeEbpfEntry(buf: Uint8Array): EbpfPodEntry {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (b.length !== EBPF_POD_PLAN_SIZE) throw new Error(`ebpf map value: ${b.length} bytes, expected ${EBPF_POD_PLAN_SIZE}`);
  const layout = b.readUInt32LE(OFF.layout);
  if (layout !== EBPF_LAYOUT_VERSION) throw new Error(`ebpf map value: layout ${layout}, this weir reads ${EBPF_LAYOUT_VERSION}`);
  const flags = b.readUInt32LE(OFF.flags);
  const count = (off: number, max: number): number => Math.min(b.readUInt8(off), max);
  const ports = (at: number, n: number): PortRange[] => Array.from({ length: n }, (_, i) => ({ from: b.readUInt16LE(at + i * 4), to: b.readUInt16LE(at + i * 4 + 2) }));
  const cidrs = (at: number, n: number): Cidr[] => Array.from({ length: n }, (_, i) => {
    const addr = b.subarray(at + i * 32, at + i * 32 + 16);
    const mask = b.subarray(at + i * 32 + 16, at + i * 32 + 32);
    const bits = [...mask].reduce((s, m) => s + popcount(m), 0);
    const address = formatAddress(addr);
    const family = address.includes(':') ? 6 : 4;
    return { family, address, prefix: family === 4 ? bits - 96 : bits };
  });
  return {
    planHash: b.subarray(OFF.planHash, OFF.planHash + 6).toString('hex'),
    proxyUid: b.readUInt32LE(OFF.uid),
    proxyGid: b.readUInt32LE(OFF.gid),
    outboundPort: b.readUInt16LE(OFF.outboundPort),
    dns: { enabled: (flags & F_DNS) !== 0, port: b.readUInt16LE(OFF.dnsPort) },
    linkerd: (flags & F_LINKERD) !== 0,
    shortcut: (flags & F_SHORTCUT) !== 0,
    includeAll: (flags & F_INCLUDE_ALL) !== 0,
    includePorts: ports(OFF.includePorts, count(OFF.nIncludePorts, EBPF_MAX_PORT_RANGES)),
    excludePorts: ports(O_EXCLUDE_PORTS, count(OFF.nExcludePorts, EBPF_MAX_PORT_RANGES)),
    includeCidrs: cidrs(O_INCLUDE_CIDRS, count(OFF.nIncludeCidrs, EBPF_MAX_CIDRS)),
    excludeCidrs: cidrs(O_EXCLUDE_CIDRS, count(OFF.nExcludeCidrs, EBPF_MAX_CIDRS)),
    skipCidrs: cidrs(O_SKIP_CIDRS, count(OFF.nSkipCidrs, EBPF_MAX_CIDRS)),
    local: Array.from({ length: count(OFF.nLocal, EBPF_MAX_LOCAL_ADDRS) }, (_, i) => formatAddress(b.subarray(O_LOCAL + i * 16, O_LOCAL + i * 16 + 16))),
  };
}

function popcount(n: number): number {
  let c = 0;
  for (let v = n; v; v >>= 1) c += v & 1;
  return c;
}

const fmtPorts = (r: PortRange[]): string => (r.length === 0 ? '-' : r.map((p) => (p.from === p.to ? `${p.from}` : `${p.from}-${p.to}`)).join(','));
const fmtCidrs = (c: Cidr[]): string => (c.length === 0 ? '-' : c.map((x) => `${x.address}/${x.prefix}`).join(','));

/** Canonical text of one entry: what `weir rules show` prints and verify compares. */
export function formatEbpfEntry(e: EbpfPodEntry): string {
  return [
    `ebpf pod plan=${e.planHash}`,
    `\tproxy uid ${e.proxyUid} gid ${e.proxyGid} (exempt)`,
    `\toutbound tcp -> :${e.outboundPort} style ${e.linkerd ? 'linkerd' : 'istio'}`,
    `\t\tinclude cidrs ${e.includeAll ? '*' : fmtCidrs(e.includeCidrs)}`,
    `\t\texclude cidrs ${fmtCidrs(e.excludeCidrs)}`,
    `\t\tinclude ports ${fmtPorts(e.includePorts)}`,
    `\t\texclude ports ${fmtPorts(e.excludePorts)}`,
    `\tdns ${e.dns.enabled ? `:53 (udp, tcp) -> :${e.dns.port}` : 'off'}`,
    `\tnever captured (excluded interfaces' subnets) ${fmtCidrs(e.skipCidrs)}`,
    `\tpod-local addresses ${e.local.length === 0 ? '-' : e.local.join(',')}`,
    `\tsame-node shortcut ${e.shortcut ? 'sk_msg (loopback tcp)' : 'off'}`,
  ].join('\n') + '\n';
}

/**
 * The plan the eBPF backend leaves to nftables: inbound capture (packets
 * from other hosts never pass a socket hook of this pod), the proxy's
 * hand-off to its own pod address over lo, nothing outbound, and no
 * conntrack for lo traffic between localhost addresses. The nat hooks of the
 * inbound table would otherwise track every packet of the app ↔ proxy hops
 * (app → 127.0.0.1:15001 after connect4, proxy 127.0.0.6 → app), which this
 * plan never NATs.
 */
export function inboundOnlyPlan(plan: RedirectPlan): RedirectPlan {
  return {
    ...plan,
    dns: { ...plan.dns, enabled: false },
    outbound: { includeCidrs: [], excludeCidrs: [], includePorts: [], excludePorts: [] },
    untrackLoopback: true,
  };
}
