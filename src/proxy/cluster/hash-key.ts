// The consistent-hash key of one request (DestinationRule
// loadBalancer.consistentHash): a header, a cookie, the source IP or a query
// parameter. A cookie with a ttl that the request lacks is generated (as
// Envoy does) and set on the response, so the client sticks from its next
// request on.
import { randomBytes } from 'node:crypto';
import type { LoadBalancer } from '../../istio/types.js';

/** DestinationRule loadBalancer.consistentHash, as the reader types it (the compiled cluster carries it unchanged). */
export type ConsistentHash = NonNullable<LoadBalancer['consistentHash']>;

export interface HashKey { key?: string; setCookie?: string }

function cookie(header: string | string[] | undefined, name: string): string | undefined {
  const all = Array.isArray(header) ? header.join(';') : header ?? '';
  for (const part of all.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

export function hashKeyOf(ch: ConsistentHash, req: { headers: Record<string, string | string[] | undefined>; query: URLSearchParams; sourceIp: string }): HashKey {
  if (ch.httpHeaderName) {
    const v = req.headers[ch.httpHeaderName.toLowerCase()];
    return { key: Array.isArray(v) ? v.join(',') : v };
  }
  if (ch.httpCookie) {
    const v = cookie(req.headers.cookie, ch.httpCookie.name);
    if (v !== undefined) return { key: v };
    if (!ch.httpCookie.ttlMs) return {};
    const value = randomBytes(8).toString('hex');
    const attrs = [`${ch.httpCookie.name}=${value}`, `Max-Age=${Math.max(1, Math.round(ch.httpCookie.ttlMs / 1000))}`, ...(ch.httpCookie.path ? [`Path=${ch.httpCookie.path}`] : []), 'HttpOnly'];
    return { key: value, setCookie: attrs.join('; ') };
  }
  if (ch.useSourceIp) return { key: req.sourceIp };
  if (ch.httpQueryParameterName) return { key: req.query.get(ch.httpQueryParameterName) ?? undefined };
  return {};
}
