// The pod annotations weir honours, by name, and the parsers for their
// values. Every parser throws FieldError naming the annotation and the bad
// token: a malformed value must stop the pod, never half-program it.
import { FieldError } from '../common/errors.js';
import { normaliseCidrs, normalisePorts, parseCidr, parsePortRange } from './addr.js';
import type { Cidr, InterceptionMode, PortRange } from './types.js';

export const ANNOTATIONS = {
  interceptionMode: 'sidecar.istio.io/interceptionMode',
  includeInboundPorts: 'traffic.sidecar.istio.io/includeInboundPorts',
  excludeInboundPorts: 'traffic.sidecar.istio.io/excludeInboundPorts',
  includeOutboundPorts: 'traffic.sidecar.istio.io/includeOutboundPorts',
  excludeOutboundPorts: 'traffic.sidecar.istio.io/excludeOutboundPorts',
  includeOutboundIPRanges: 'traffic.sidecar.istio.io/includeOutboundIPRanges',
  excludeOutboundIPRanges: 'traffic.sidecar.istio.io/excludeOutboundIPRanges',
  excludeInterfaces: 'traffic.sidecar.istio.io/excludeInterfaces',
  linkerdProxyUid: 'config.linkerd.io/proxy-uid',
  linkerdSkipInboundPorts: 'config.linkerd.io/skip-inbound-ports',
  linkerdSkipOutboundPorts: 'config.linkerd.io/skip-outbound-ports',
  linkerdSkipSubnets: 'config.linkerd.io/skip-subnets',
  /** weir's own: "false" turns DNS capture (to 15053) off for the pod. */
  dnsCapture: 'weir.io/dns-capture',
  /** weir's own: the capture backend for this pod ("ebpf", "nftables", "iptables"); absent = the agent's default. */
  backend: 'weir.io/backend',
} as const;

export const CAPTURE_BACKENDS = ['nftables', 'iptables', 'ebpf'] as const;

export function parseBackend(value: string): (typeof CAPTURE_BACKENDS)[number] {
  const v = value.trim().toLowerCase();
  if ((CAPTURE_BACKENDS as readonly string[]).includes(v)) return v as (typeof CAPTURE_BACKENDS)[number];
  throw new FieldError(ANNOTATIONS.backend, `must be one of ${CAPTURE_BACKENDS.join(', ')}`, value);
}

/** Comma-separated, whitespace around items ignored; empty items are junk ("80,,81"). */
function items(annotation: string, value: string): string[] {
  const trimmed = value.trim();
  if (trimmed === '') return [];
  return trimmed.split(',').map((t) => {
    const item = t.trim();
    if (item === '') throw new FieldError(annotation, 'empty item in comma-separated list', value);
    return item;
  });
}

export function parsePortList(annotation: string, value: string): PortRange[] {
  return normalisePorts(items(annotation, value).map((tok) => {
    const r = parsePortRange(tok);
    if (!r) throw new FieldError(annotation, 'not a port (1-65535) or ascending range like 25-30', tok);
    return r;
  }));
}

/** `*` = every port; '' = none; else a list. */
export function parsePortSelector(annotation: string, value: string): 'all' | PortRange[] {
  if (value.trim() === '*') return 'all';
  return parsePortList(annotation, value);
}

export function parseCidrList(annotation: string, value: string): Cidr[] {
  return normaliseCidrs(items(annotation, value).map((tok) => {
    const c = parseCidr(tok);
    if (!c) throw new FieldError(annotation, 'not an IPv4 or IPv6 address or CIDR', tok);
    return c;
  }));
}

/** `*` = all destinations; '' = none; else a list. */
export function parseCidrSelector(annotation: string, value: string): 'all' | Cidr[] {
  if (value.trim() === '*') return 'all';
  return parseCidrList(annotation, value);
}

/** Linux interface names: 1-15 bytes, no '/', whitespace, ':' or quotes (they end up in rules). */
export function parseInterfaceList(annotation: string, value: string): string[] {
  const names = items(annotation, value).map((tok) => {
    if (!/^[A-Za-z0-9_.@+-]{1,15}$/.test(tok) || tok === '.' || tok === '..') {
      throw new FieldError(annotation, 'not an interface name (1-15 of A-Z a-z 0-9 _ . @ + -)', tok);
    }
    return tok;
  });
  return [...new Set(names)].sort();
}

export function parseInterceptionMode(value: string): InterceptionMode {
  const v = value.trim();
  if (v === 'REDIRECT' || v === 'TPROXY') return v;
  throw new FieldError(ANNOTATIONS.interceptionMode, 'must be REDIRECT or TPROXY', value);
}

/**
 * A proxy uid/gid. 0 is refused: root's own traffic (kubelet probes through
 * exec, the app if it runs as root) would all bypass capture.
 */
export function parseId(field: string, value: string | number): number {
  const text = String(value).trim();
  if (!/^[0-9]{1,10}$/.test(text)) throw new FieldError(field, 'not a numeric id', String(value));
  const n = Number(text);
  if (n === 0) throw new FieldError(field, 'must not be 0 (all of root\'s traffic would bypass capture)', String(value));
  if (n > 0xffff_fffe) throw new FieldError(field, 'out of range (max 4294967294)', String(value));
  return n;
}

export function parseBoolean(annotation: string, value: string): boolean {
  const v = value.trim().toLowerCase();
  if (v === 'true') return true;
  if (v === 'false') return false;
  throw new FieldError(annotation, 'must be "true" or "false"', value);
}
