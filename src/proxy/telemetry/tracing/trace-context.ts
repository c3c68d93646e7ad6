// Trace context on the wire: what a request arrives with (W3C traceparent,
// B3 multi-header x-b3-*, or B3 single "b3"), and what the proxy sends on
// after opening its own span. Envoy as Istio configures it reads and
// writes B3; W3C traceparent is read too (apps instrumented with
// OpenTelemetry send only that) and always written, so both kinds of
// downstream instrumentation see the proxy's span as their parent.
// Malformed headers are ignored (a new trace starts), never an error:
// tracing must not fail a request.
import { randomFillSync } from 'node:crypto';

export interface TraceContext {
  /** 32 hex (or 16 for 64-bit B3 traces, kept as received). */
  traceId: string;
  /** The caller's span, which the proxy's span is a child of; absent for a new trace. */
  parentId?: string;
  /** undefined: the caller made no decision (the proxy samples). */
  sampled?: boolean;
  /** Whether the caller used B3's single-header form (answered in kind). */
  b3Single?: boolean;
}

type Headers = Record<string, string | string[] | undefined>;

const HEX16 = /^[0-9a-f]{16}$/;
const TRACE = /^([0-9a-f]{16}|[0-9a-f]{32})$/;
const ZERO = /^0+$/;

function one(h: Headers, k: string): string | undefined {
  const v = h[k];
  return (Array.isArray(v) ? v[0] : v)?.trim().toLowerCase();
}

function sampledFrom(v: string | undefined): boolean | undefined {
  if (v === '1' || v === 'true' || v === 'd') return true;
  if (v === '0' || v === 'false') return false;
  return undefined;
}

/** The incoming context, B3 first (what a weir or Envoy peer sends), then traceparent. */
export function readContext(h: Headers): TraceContext | undefined {
  const tid = one(h, 'x-b3-traceid');
  const sid = one(h, 'x-b3-spanid');
  if (tid && sid && TRACE.test(tid) && HEX16.test(sid) && !ZERO.test(tid)) {
    return { traceId: tid, parentId: sid, sampled: one(h, 'x-b3-flags') === '1' ? true : sampledFrom(one(h, 'x-b3-sampled')) };
  }
  const single = one(h, 'b3');
  if (single) {
    const [t, s, smp] = single.split('-');
    if (t && s && TRACE.test(t) && HEX16.test(s) && !ZERO.test(t)) return { traceId: t, parentId: s, sampled: sampledFrom(smp), b3Single: true };
    if (single === '0' || single === '1' || single === 'd') return { traceId: newTraceId(), sampled: sampledFrom(single), b3Single: true };
  }
  const tp = one(h, 'traceparent');
  const m = tp ? /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/.exec(tp) : null;
  if (m && m[1] !== 'ff' && !ZERO.test(m[2]) && !ZERO.test(m[3])) {
    return { traceId: m[2], parentId: m[3], sampled: (parseInt(m[4], 16) & 1) === 1 };
  }
  // Only a sampling decision (x-b3-sampled: 0 without ids is how callers opt out).
  const bare = sampledFrom(one(h, 'x-b3-sampled'));
  return bare === undefined ? undefined : { traceId: newTraceId(), sampled: bare };
}

// Ids come from a pool of CSPRNG bytes refilled 4 KiB at a time: randomBytes()
// per id was one native call and one Buffer per id, two ids per request
// (3-4 % of the proxy's busy time at saturation).
const POOL = Buffer.allocUnsafe(4096);
let poolAt = POOL.length;
function randomHex(bytes: number): string {
  if (poolAt + bytes > POOL.length) { randomFillSync(POOL); poolAt = 0; }
  const s = POOL.toString('hex', poolAt, poolAt + bytes);
  poolAt += bytes;
  return s;
}

export function newTraceId(): string {
  return randomHex(16);
}

export function newSpanId(): string {
  for (;;) {
    const id = randomHex(8);
    if (!ZERO.test(id)) return id;
  }
}

/** Headers for the next hop: the proxy's span is the parent there. Overwrites whatever trace headers were copied over. */
export function writeContext(out: Record<string, string | string[]>, ctx: TraceContext, spanId: string, sampled: boolean): void {
  out['x-b3-traceid'] = ctx.traceId;
  out['x-b3-spanid'] = spanId;
  if (ctx.parentId) out['x-b3-parentspanid'] = ctx.parentId; else delete out['x-b3-parentspanid'];
  out['x-b3-sampled'] = sampled ? '1' : '0';
  delete out['x-b3-flags'];
  if (ctx.b3Single) out.b3 = `${ctx.traceId}-${spanId}-${sampled ? '1' : '0'}${ctx.parentId ? `-${ctx.parentId}` : ''}`;
  else delete out.b3;
  // W3C needs a 128-bit trace id: a 64-bit B3 id is left-padded, as the B3/W3C interop note says.
  out.traceparent = `00-${ctx.traceId.padStart(32, '0')}-${spanId}-${sampled ? '01' : '00'}`;
}
