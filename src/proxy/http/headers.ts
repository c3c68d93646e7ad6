// Header rules between hops: hop-by-hop headers never cross the proxy
// (RFC 9110 §7.6.1, plus what HTTP/2 forbids), a request gets an
// x-request-id when it has none and x-forwarded-proto, and weir's own
// exchange headers are removed before the app or the client sees them.
// Trace context is the tracer's (telemetry/tracing): it rewrites B3 and
// traceparent so the next hop's parent is this proxy's span; tracestate
// and x-ot-span-context pass untouched.
import { randomUUID } from 'node:crypto';
import { PEER_HEADER } from '../telemetry/workload.js';

export const PROTOCOL_HEADER = 'x-weir-downstream-protocol';

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'http2-settings', 'te', 'trailer', 'expect', 'host', PEER_HEADER, PROTOCOL_HEADER]);

export type Headers = Record<string, string | string[]>;

/** Request headers for the upstream hop (pseudo-headers and hop-by-hop ones dropped, x-request-id ensured). */
export function upstreamRequestHeaders(h: Record<string, string | string[] | undefined>): Headers {
  const named = connectionTokens(h.connection);
  const out: Headers = {};
  // for-in over the (own, null-prototype or plain) header object: no entries array per request.
  for (const k in h) {
    const v = h[k];
    if (v === undefined || !Object.prototype.hasOwnProperty.call(h, k) || k.charCodeAt(0) === 58 /* : */ || HOP_BY_HOP.has(k) || named?.has(k)) continue;
    out[k] = v;
  }
  // gRPC needs "te: trailers" end to end; it is the only TE value HTTP/2 allows.
  if (typeof h.te === 'string' && /\btrailers\b/i.test(h.te)) out.te = 'trailers';
  if (!out['x-request-id']) out['x-request-id'] = randomUUID();
  if (!out['x-forwarded-proto']) out['x-forwarded-proto'] = 'http';
  return out;
}

/** Response headers for the downstream hop. */
export function downstreamResponseHeaders(h: Headers): Headers {
  const named = connectionTokens(h.connection);
  const out: Headers = {};
  for (const k in h) {
    if (!Object.prototype.hasOwnProperty.call(h, k) || k.charCodeAt(0) === 58 /* : */ || HOP_BY_HOP.has(k) || named?.has(k)) continue;
    out[k] = h[k];
  }
  return out;
}

/** Header names a Connection header lists (undefined when there is none: the common case costs nothing). */
function connectionTokens(v: string | string[] | undefined): Set<string> | undefined {
  if (v === undefined) return undefined;
  const s = new Set<string>();
  for (const part of [v].flat()) for (const t of part.split(',')) if (t.trim()) s.add(t.trim().toLowerCase());
  return s;
}

export function first(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/**
 * Approximate wire size of a header block, for istio_request_bytes /
 * istio_response_bytes; `name`/`value`, when given, count in place of that
 * header's received value (the x-request-id the proxy forwarded).
 */
export function headerBytes(h: Record<string, string | string[] | undefined>, name?: string, value?: string | string[]): number {
  let n = 0;
  const size = (k: string, v: string | string[] | undefined) => {
    if (typeof v === 'string') n += k.length + v.length + 4;
    else if (v) for (const x of v) n += k.length + x.length + 4;
  };
  for (const k in h) {
    if (!Object.prototype.hasOwnProperty.call(h, k) || (name !== undefined && value !== undefined && k === name)) continue;
    size(k, h[k]);
  }
  if (name !== undefined && value !== undefined) size(name, value);
  return n;
}

/** grpc-timeout ("100m", "5S", "1H"...) in ms; undefined if absent or malformed. */
export function grpcTimeoutMs(v: string | undefined): number | undefined {
  const m = v ? /^(\d{1,8})([HMSmun])$/.exec(v) : null;
  if (!m) return undefined;
  const mult = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 }[m[2] as 'H'];
  return Number(m[1]) * mult;
}
