// Address normalisation: the kernel, Node and the registry spell the same
// address differently (::ffff:10.0.0.1 from a dual-stack socket, zero-padded
// IPv6 in /proc); every lookup goes through canonicalIp.
import { isIPv4, isIPv6 } from 'node:net';
import { networkInterfaces } from 'node:os';

export function canonicalIp(ip: string): string {
  if (ip.startsWith('::ffff:') && isIPv4(ip.slice(7))) return ip.slice(7);
  if (isIPv6(ip)) {
    // The URL parser compresses and lower-cases IPv6 the RFC 5952 way.
    return new URL(`http://[${ip}]/`).hostname.slice(1, -1);
  }
  return ip;
}

export function familyOf(ip: string): 4 | 6 {
  return isIPv4(ip) ? 4 : 6;
}

export function hostPort(ip: string, port: number): string {
  return familyOf(ip) === 6 ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/**
 * This host's (in a pod: the pod's) own addresses, canonical, loopback and
 * IPv6 link-local left out: the destinations inbound connections arrive for.
 */
export function localAddresses(): Set<string> {
  const out = new Set<string>();
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) {
      if (a.internal || a.address.toLowerCase().startsWith('fe80:')) continue;
      out.add(canonicalIp(a.address));
    }
  }
  return out;
}
