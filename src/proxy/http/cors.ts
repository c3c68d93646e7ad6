// VirtualService corsPolicy, as Envoy's CORS filter applies it: a
// preflight (OPTIONS with Origin and Access-Control-Request-Method) from an
// allowed origin is answered by the proxy; an actual request from an
// allowed origin gets Access-Control-Allow-Origin (and expose/credentials)
// on its response. Requests from other origins pass untouched (Envoy's
// default for unmatched preflights is to forward them).
import { parseDuration } from '../../common/duration.js';
import type { StringMatch } from '../../istio/types.js';
import { stringMatches } from './match.js';

interface Cors {
  allowOrigins?: StringMatch[];
  allowOrigin?: string[];
  allowMethods?: string[];
  allowHeaders?: string[];
  exposeHeaders?: string[];
  maxAge?: string;
  allowCredentials?: boolean;
}

type Headers = Record<string, string | string[] | undefined>;

function originAllowed(c: Cors, origin: string): boolean {
  if (c.allowOrigins?.some((m) => stringMatches(m, origin))) return true;
  return c.allowOrigin?.some((o) => o === '*' || o === origin) ?? false;
}

export interface CorsDecision {
  /** A preflight to answer here: the response headers. */
  preflight?: Record<string, string>;
  /** Headers to add to the upstream's response. */
  response?: Record<string, string>;
}

export function corsFor(policy: Record<string, unknown> | undefined, method: string, h: Headers): CorsDecision {
  if (!policy) return {};
  const c = policy as Cors;
  const origin = typeof h.origin === 'string' ? h.origin : undefined;
  if (!origin || !originAllowed(c, origin)) return {};
  const base: Record<string, string> = { 'access-control-allow-origin': origin };
  if (c.allowCredentials) base['access-control-allow-credentials'] = 'true';
  if (method === 'OPTIONS' && h['access-control-request-method'] !== undefined) {
    const out = { ...base };
    if (c.allowMethods?.length) out['access-control-allow-methods'] = c.allowMethods.join(',');
    if (c.allowHeaders?.length) out['access-control-allow-headers'] = c.allowHeaders.join(',');
    if (c.maxAge) {
      try { out['access-control-max-age'] = String(Math.round(parseDuration('corsPolicy.maxAge', c.maxAge) / 1000)); } catch { /* reported by the reader */ }
    }
    return { preflight: out };
  }
  if (c.exposeHeaders?.length) base['access-control-expose-headers'] = c.exposeHeaders.join(',');
  return { response: base };
}
