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
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined || k.startsWith(':') || HOP_BY_HOP.has(k) || named.has(k)) continue;
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
  for (const [k, v] of Object.entries(h)) {
    if (k.startsWith(':') || HOP_BY_HOP.has(k) || named.has(k)) continue;
    out[k] = v;
  }
  return out;
}

function connectionTokens(v: string | string[] | undefined): Set<string> {
  const s = new Set<string>();
  for (const part of [v ?? []].flat()) for (const t of part.split(',')) if (t.trim()) s.add(t.trim().toLowerCase());
  return s;
}

export function first(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/** Approximate wire size of a header block, for istio_request_bytes / istio_response_bytes. */
export function headerBytes(h: Record<string, string | string[] | undefined>): number {
  let n = 0;
  for (const [k, v] of Object.entries(h)) for (const x of [v ?? []].flat()) n += k.length + x.length + 4;
  return n;
}

/** grpc-timeout ("100m", "5S", "1H"...) in ms; undefined if absent or malformed. */
export function grpcTimeoutMs(v: string | undefined): number | undefined {
  const m = v ? /^(\d{1,8})([HMSmun])$/.exec(v) : null;
  if (!m) return undefined;
  const mult = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 }[m[2] as 'H'];
  return Number(m[1]) * mult;
}
