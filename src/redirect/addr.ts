// Parsing and normalising the address and port tokens annotations carry.
// Everything is numeric: no name lookups ever happen while planning (NSS
// lookups inside a pod netns made Istio's ADD take 30-40 s).
import type { Cidr, PortRange } from './types.js';

/** Returns the 4 bytes of a dotted-quad IPv4 address, or undefined. */
export function parseIpv4(text: string): number[] | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  const bytes: number[] = [];
  for (const p of parts) {
    // Leading zeros are rejected: some tools read them as octal.
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return undefined;
    const n = Number(p);
    if (n > 255) return undefined;
    bytes.push(n);
  }
  return bytes;
}

/** Returns the 8 16-bit groups of an IPv6 address (with optional embedded IPv4 tail), or undefined. */
export function parseIpv6(text: string): number[] | undefined {
  if (!/^[0-9a-fA-F:.]+$/.test(text)) return undefined;
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const groupsOf = (s: string): number[] | undefined => {
    if (s === '') return [];
    const out: number[] = [];
    const items = s.split(':');
    for (let i = 0; i < items.length; i++) {
      const it = items[i];
      if (i === items.length - 1 && it.includes('.')) {
        const v4 = parseIpv4(it);
        if (!v4) return undefined;
        out.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(it)) return undefined;
        out.push(parseInt(it, 16));
      }
    }
    return out;
  };
  const head = groupsOf(halves[0]);
  const tail = halves.length === 2 ? groupsOf(halves[1]) : [];
  if (!head || !tail) return undefined;
  if (halves.length === 1) return head.length === 8 ? head : undefined;
  const missing = 8 - head.length - tail.length;
  if (missing < 1) return undefined;
  return [...head, ...new Array<number>(missing).fill(0), ...tail];
}

/** RFC 5952 text: lowercase, longest run (≥ 2) of zero groups as `::`. */
export function formatIpv6(groups: number[]): string {
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) { bestStart = i; bestLen = j - i; }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

function maskBits(values: number[], width: number, prefix: number): number[] {
  return values.map((v, i) => {
    const keep = Math.max(0, Math.min(width, prefix - i * width));
    const mask = keep === 0 ? 0 : ((0xffff_ffff << (width - keep)) >>> 0) & ((1 << width) - 1);
    return v & mask;
  });
}

/**
 * Parses `a.b.c.d[/n]` or `x:y::z[/n]`. Host bits are cleared, as iptables
 * and nft do. Returns undefined for anything else.
 */
export function parseCidr(token: string): Cidr | undefined {
  const slash = token.indexOf('/');
  const addr = slash < 0 ? token : token.slice(0, slash);
  const prefixText = slash < 0 ? undefined : token.slice(slash + 1);
  if (prefixText !== undefined && !/^(0|[1-9][0-9]{0,2})$/.test(prefixText)) return undefined;
  const v4 = parseIpv4(addr);
  if (v4) {
    const prefix = prefixText === undefined ? 32 : Number(prefixText);
    if (prefix > 32) return undefined;
    return { family: 4, address: maskBits(v4, 8, prefix).join('.'), prefix };
  }
  const v6 = parseIpv6(addr);
  if (v6) {
    const prefix = prefixText === undefined ? 128 : Number(prefixText);
    if (prefix > 128) return undefined;
    return { family: 6, address: formatIpv6(maskBits(v6, 16, prefix)), prefix };
  }
  return undefined;
}

function cidrBits(c: Cidr): bigint {
  if (c.family === 4) return parseIpv4(c.address)!.reduce((acc, b) => (acc << 8n) | BigInt(b), 0n);
  return parseIpv6(c.address)!.reduce((acc, g) => (acc << 16n) | BigInt(g), 0n);
}

/** True when `outer` contains `inner` (same family). */
export function cidrContains(outer: Cidr, inner: Cidr): boolean {
  if (outer.family !== inner.family || outer.prefix > inner.prefix) return false;
  const width = outer.family === 4 ? 32 : 128;
  const shift = BigInt(width - outer.prefix);
  return cidrBits(outer) >> shift === cidrBits(inner) >> shift;
}

/**
 * Drops CIDRs contained in others and sorts the rest. Two prefixes are either
 * nested or disjoint, so the result never overlaps: nft interval sets reject
 * overlapping elements, and duplicates would only bloat the ruleset.
 */
export function normaliseCidrs(cidrs: Cidr[]): Cidr[] {
  const key = (c: Cidr): string => `${c.address}/${c.prefix}`;
  const unique = cidrs.filter((c, i) => cidrs.findIndex((o) => key(o) === key(c)) === i);
  const kept = unique.filter((c) => !unique.some((o) => o.prefix < c.prefix && cidrContains(o, c)));
  return kept.sort((a, b) => a.family - b.family || (cidrBits(a) < cidrBits(b) ? -1 : cidrBits(a) > cidrBits(b) ? 1 : a.prefix - b.prefix));
}

export function formatCidr(c: Cidr): string {
  return `${c.address}/${c.prefix}`;
}

/** `80`, `25-30`; undefined if malformed, 0, > 65535 or reversed. */
export function parsePortRange(token: string): PortRange | undefined {
  const m = /^([0-9]{1,5})(?:-([0-9]{1,5}))?$/.exec(token);
  if (!m) return undefined;
  const from = Number(m[1]);
  const to = m[2] === undefined ? from : Number(m[2]);
  if (from < 1 || to > 65535 || from > to) return undefined;
  return { from, to };
}

/** Sorted, with overlapping and adjacent ranges merged. */
export function normalisePorts(ranges: PortRange[]): PortRange[] {
  const sorted = [...ranges].sort((a, b) => a.from - b.from || a.to - b.to);
  const out: PortRange[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r.from <= last.to + 1) last.to = Math.max(last.to, r.to);
    else out.push({ ...r });
  }
  return out;
}

export function formatPortRange(r: PortRange, sep = '-'): string {
  return r.from === r.to ? String(r.from) : `${r.from}${sep}${r.to}`;
}
