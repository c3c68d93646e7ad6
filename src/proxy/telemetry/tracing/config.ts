// Where spans go and how many: `--zipkin-address host:port` and
// `--trace-sampling <percent>`, else Istio's own way of saying it — the
// proxy config the injector puts in the PROXY_CONFIG environment variable
// (meshConfig.defaultConfig / the proxy.istio.io/config annotation), JSON:
// {"tracing": {"zipkin": {"address": "zipkin.istio-system:9411"}, "sampling": 1}}.
// Istio's default sampling is 1 %. No address: no spans, but trace headers
// are still propagated (B3 and traceparent), as Envoy does.
import { FieldError } from '../../../common/errors.js';

export interface TracingConfig {
  zipkin?: { host: string; port: number };
  /** 0-100, the share of new traces (no caller decision) that are sampled. */
  samplingPercent: number;
}

export const DEFAULT_SAMPLING_PERCENT = 1;

export function parseHostPort(field: string, v: string): { host: string; port: number } {
  const t = v.trim();
  const m = /^\[([0-9a-fA-F:.]+)\]:(\d{1,5})$/.exec(t) ?? /^([A-Za-z0-9.-]+):(\d{1,5})$/.exec(t);
  if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) throw new FieldError(field, 'must be host:port (e.g. zipkin.istio-system:9411 or [fd00::1]:9411)', v);
  return { host: m[1], port: Number(m[2]) };
}

function sampling(field: string, v: unknown): number {
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^\d+(\.\d+)?$/.test(v.trim()) ? Number(v) : NaN;
  if (!Number.isFinite(n) || n < 0 || n > 100) throw new FieldError(field, 'must be a percentage 0-100', String(v));
  return n;
}

export function resolveTracing(flags: { zipkinAddress?: string; traceSampling?: string }, env: NodeJS.ProcessEnv): TracingConfig {
  let fromEnv: { address?: unknown; sampling?: unknown } = {};
  if (env.PROXY_CONFIG) {
    let pc: unknown;
    try { pc = JSON.parse(env.PROXY_CONFIG); } catch (e) { throw new FieldError('PROXY_CONFIG', `must be JSON (${(e as Error).message})`, env.PROXY_CONFIG.slice(0, 80)); }
    const tracing = (pc as { tracing?: { zipkin?: { address?: unknown }; sampling?: unknown } } | null)?.tracing;
    if (tracing !== undefined && (typeof tracing !== 'object' || tracing === null)) throw new FieldError('PROXY_CONFIG.tracing', 'must be an object', JSON.stringify(tracing));
    fromEnv = { address: tracing?.zipkin?.address, sampling: tracing?.sampling };
    if (fromEnv.address !== undefined && typeof fromEnv.address !== 'string') throw new FieldError('PROXY_CONFIG.tracing.zipkin.address', 'must be a host:port string', JSON.stringify(fromEnv.address));
  }
  const address = flags.zipkinAddress ?? (fromEnv.address as string | undefined);
  const field = flags.zipkinAddress !== undefined ? '--zipkin-address' : 'PROXY_CONFIG.tracing.zipkin.address';
  return {
    zipkin: address ? parseHostPort(field, address) : undefined,
    samplingPercent: flags.traceSampling !== undefined ? sampling('--trace-sampling', flags.traceSampling)
      : fromEnv.sampling !== undefined ? sampling('PROXY_CONFIG.tracing.sampling', fromEnv.sampling) : DEFAULT_SAMPLING_PERCENT,
  };
}
