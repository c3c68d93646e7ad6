// VirtualService spec → typed, validated (Istio's field names and rules).
import type { Reader } from './schema.js';
import type { Destination, HeaderOps, HttpFault, HttpMatch, HttpRoute, L4Match, L4Route, StringMatch, WeightedDestination } from './types.js';

const HOST = /^(\*|(\*\.)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$/;

export function readStringMatch(r: Reader, field: string, v: unknown): StringMatch | undefined {
  const o = r.object(field, v, ['exact', 'prefix', 'regex']);
  if (!o) return undefined;
  const keys = Object.keys(o).filter((k) => ['exact', 'prefix', 'regex'].includes(k));
  if (keys.length !== 1) return r.error(field, 'must have exactly one of exact, prefix, regex');
  const k = keys[0] as 'exact' | 'prefix' | 'regex';
  const s = typeof o[k] === 'string' ? (o[k] as string) : r.error(`${field}.${k}`, 'must be a string');
  if (s === undefined) return undefined;
  if (k === 'regex') {
    try { new RegExp(s); } catch (e) { return r.error(`${field}.regex`, `invalid regular expression: ${(e as Error).message}`); }
  }
  return { [k]: s } as StringMatch;
}

function matchMap(r: Reader, field: string, v: unknown): Record<string, StringMatch> | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'object' || Array.isArray(v)) return r.error(field, 'must be a map of name → {exact|prefix|regex}');
  const out: Record<string, StringMatch> = {};
  for (const [k, m] of Object.entries(v as Record<string, unknown>)) {
    const sm = readStringMatch(r, `${field}.${k}`, m);
    if (sm) out[field.endsWith('queryParams') ? k : k.toLowerCase()] = sm;
  }
  return out;
}

export function readDestination(r: Reader, field: string, v: unknown): Destination | undefined {
  const o = r.object(field, v, ['host', 'subset', 'port']);
  if (!o) return r.error(field, 'is required');
  const host = r.string(`${field}.host`, o.host, { required: true, pattern: HOST, what: 'a host name' });
  const subset = r.string(`${field}.subset`, o.subset);
  let port: number | undefined;
  const p = r.object(`${field}.port`, o.port, ['number']);
  if (p) port = r.int(`${field}.port.number`, p.number, { min: 1, max: 65535, required: true });
  return host ? { host, subset, port } : undefined;
}

function readHeaderOps(r: Reader, field: string, v: unknown): HeaderOps | undefined {
  const o = r.object(field, v, ['request', 'response']);
  if (!o) return undefined;
  const side = (f: string, x: unknown) => {
    const s = r.object(f, x, ['set', 'add', 'remove']);
    return s ? { set: r.labels(`${f}.set`, s.set), add: r.labels(`${f}.add`, s.add), remove: s.remove === undefined ? undefined : r.strings(`${f}.remove`, s.remove) } : undefined;
  };
  return { request: side(`${field}.request`, o.request), response: side(`${field}.response`, o.response) };
}

function readRouteDestinations(r: Reader, field: string, v: unknown): WeightedDestination[] {
  const routes = r.array(field, v, (x, f) => {
    const o = r.object(f, x, ['destination', 'weight', 'headers']);
    if (!o) return undefined;
    const destination = readDestination(r, `${f}.destination`, o.destination);
    const weight = r.int(`${f}.weight`, o.weight, { min: 0, max: 100 });
    return destination ? { destination, weight: weight ?? -1, headers: readHeaderOps(r, `${f}.headers`, o.headers) } : undefined;
  });
  // Istio: a single destination may omit its weight (100); with several, weights must add up to 100.
  if (routes.length === 1 && routes[0].weight === -1) routes[0].weight = 100;
  else if (routes.length > 1) {
    if (routes.some((d) => d.weight === -1)) {
      routes.forEach((d, i) => { if (d.weight === -1) { r.error(`${field}[${i}].weight`, 'is required when a route has several destinations'); d.weight = 0; } });
    } else {
      const sum = routes.reduce((a, d) => a + d.weight, 0);
      if (sum !== 100) r.error(field, `weights add up to ${sum}, must be 100`);
    }
  }
  return routes;
}

function readHttpMatch(r: Reader, field: string, v: unknown): HttpMatch | undefined {
  const o = r.object(field, v, ['name', 'uri', 'scheme', 'method', 'authority', 'headers', 'queryParams', 'withoutHeaders', 'port', 'sourceLabels', 'sourceNamespace', 'ignoreUriCase', 'gateways'], ['statPrefix']);
  if (!o) return undefined;
  if (o.gateways !== undefined) r.unsupported(`${field}.gateways`, 'gateway matches do not apply to sidecars; ignored');
  return {
    name: r.string(`${field}.name`, o.name),
    uri: o.uri === undefined ? undefined : readStringMatch(r, `${field}.uri`, o.uri),
    scheme: o.scheme === undefined ? undefined : readStringMatch(r, `${field}.scheme`, o.scheme),
    method: o.method === undefined ? undefined : readStringMatch(r, `${field}.method`, o.method),
    authority: o.authority === undefined ? undefined : readStringMatch(r, `${field}.authority`, o.authority),
    headers: matchMap(r, `${field}.headers`, o.headers),
    queryParams: matchMap(r, `${field}.queryParams`, o.queryParams),
    withoutHeaders: matchMap(r, `${field}.withoutHeaders`, o.withoutHeaders),
    port: r.int(`${field}.port`, o.port, { min: 1, max: 65535 }),
    sourceLabels: r.labels(`${field}.sourceLabels`, o.sourceLabels),
    sourceNamespace: r.string(`${field}.sourceNamespace`, o.sourceNamespace),
    ignoreUriCase: r.bool(`${field}.ignoreUriCase`, o.ignoreUriCase),
  };
}

function readFault(r: Reader, field: string, v: unknown): HttpFault | undefined {
  const o = r.object(field, v, ['delay', 'abort']);
  if (!o) return undefined;
  const out: HttpFault = {};
  const d = r.object(`${field}.delay`, o.delay, ['fixedDelay', 'percentage', 'percent'], ['exponentialDelay']);
  if (d) {
    const fixedDelayMs = r.duration(`${field}.delay.fixedDelay`, d.fixedDelay) ?? r.error(`${field}.delay.fixedDelay`, 'is required');
    const pct = d.percentage !== undefined ? r.percent(`${field}.delay.percentage`, d.percentage) : (r.int(`${field}.delay.percent`, d.percent, { min: 0, max: 100 }) ?? 100);
    if (fixedDelayMs !== undefined) out.delay = { fixedDelayMs, percentage: pct ?? 100 };
  }
  const a = r.object(`${field}.abort`, o.abort, ['httpStatus', 'grpcStatus', 'percentage'], ['http2Error']);
  if (a) {
    const httpStatus = r.int(`${field}.abort.httpStatus`, a.httpStatus, { min: 200, max: 599 });
    const grpcStatus = r.string(`${field}.abort.grpcStatus`, a.grpcStatus);
    if (httpStatus === undefined && grpcStatus === undefined) r.error(`${field}.abort`, 'needs httpStatus or grpcStatus');
    out.abort = { httpStatus, grpcStatus, percentage: (a.percentage !== undefined ? r.percent(`${field}.abort.percentage`, a.percentage) : 100) ?? 100 };
  }
  return out;
}

export function readHttpRoute(r: Reader, field: string, v: unknown): HttpRoute | undefined {
  const o = r.object(field, v, ['name', 'match', 'route', 'redirect', 'directResponse', 'rewrite', 'timeout', 'retries', 'fault', 'mirror', 'mirrorPercentage', 'mirrors', 'headers', 'corsPolicy'], ['delegate', 'mirrorPercent']);
  if (!o) return undefined;
  const route: HttpRoute = {
    name: r.string(`${field}.name`, o.name),
    match: r.array(`${field}.match`, o.match, (x, f) => readHttpMatch(r, f, x)),
    route: readRouteDestinations(r, `${field}.route`, o.route),
    timeoutMs: r.duration(`${field}.timeout`, o.timeout),
    mirrors: [],
    headers: readHeaderOps(r, `${field}.headers`, o.headers),
  };
  const actions = ['route', 'redirect', 'directResponse'].filter((k) => o[k] !== undefined);
  if (actions.length !== 1 && o.delegate === undefined) r.error(field, `must have exactly one of route, redirect, directResponse (has ${actions.join(', ') || 'none'})`);
  const rd = r.object(`${field}.redirect`, o.redirect, ['uri', 'authority', 'port', 'scheme', 'redirectCode'], ['derivePort']);
  if (rd) route.redirect = { uri: r.string(`${field}.redirect.uri`, rd.uri), authority: r.string(`${field}.redirect.authority`, rd.authority), port: r.int(`${field}.redirect.port`, rd.port, { min: 1, max: 65535 }), scheme: r.string(`${field}.redirect.scheme`, rd.scheme), redirectCode: r.int(`${field}.redirect.redirectCode`, rd.redirectCode, { min: 300, max: 399 }) ?? 301 };
  const dr = r.object(`${field}.directResponse`, o.directResponse, ['status', 'body']);
  if (dr) {
    const b = r.object(`${field}.directResponse.body`, dr.body, ['string'], ['bytes']);
    route.directResponse = { status: r.int(`${field}.directResponse.status`, dr.status, { min: 200, max: 599, required: true }) ?? 200, body: b ? r.string(`${field}.directResponse.body.string`, b.string) : undefined };
  }
  const rw = r.object(`${field}.rewrite`, o.rewrite, ['uri', 'authority', 'uriRegexRewrite']);
  if (rw) {
    const rr = r.object(`${field}.rewrite.uriRegexRewrite`, rw.uriRegexRewrite, ['match', 'rewrite']);
    route.rewrite = { uri: r.string(`${field}.rewrite.uri`, rw.uri), authority: r.string(`${field}.rewrite.authority`, rw.authority), uriRegexRewrite: rr ? { match: r.string(`${field}.rewrite.uriRegexRewrite.match`, rr.match, { required: true }) ?? '', rewrite: r.string(`${field}.rewrite.uriRegexRewrite.rewrite`, rr.rewrite) ?? '' } : undefined };
    if (rw.uri !== undefined && rw.uriRegexRewrite !== undefined) r.error(`${field}.rewrite`, 'uri and uriRegexRewrite cannot both be set');
  }
  const rt = r.object(`${field}.retries`, o.retries, ['attempts', 'perTryTimeout', 'retryOn', 'retryRemoteLocalities'], ['retryIgnorePreviousHosts', 'backoff']);
  if (rt) {
    route.retries = {
      attempts: r.int(`${field}.retries.attempts`, rt.attempts, { min: 0 }) ?? 0,
      perTryTimeoutMs: r.duration(`${field}.retries.perTryTimeout`, rt.perTryTimeout),
      retryOn: rt.retryOn === undefined ? undefined : (r.string(`${field}.retries.retryOn`, rt.retryOn) ?? '').split(',').map((s) => s.trim()).filter(Boolean),
      retryRemoteLocalities: r.bool(`${field}.retries.retryRemoteLocalities`, rt.retryRemoteLocalities),
    };
  }
  if (o.fault !== undefined) route.fault = readFault(r, `${field}.fault`, o.fault);
  if (o.mirror !== undefined) {
    const d = readDestination(r, `${field}.mirror`, o.mirror);
    const pct = o.mirrorPercentage !== undefined ? r.percent(`${field}.mirrorPercentage`, o.mirrorPercentage) : 100;
    if (d) route.mirrors.push({ destination: d, percentage: pct ?? 100 });
  }
  route.mirrors.push(...r.array(`${field}.mirrors`, o.mirrors, (x, f) => {
    const m = r.object(f, x, ['destination', 'percentage']);
    if (!m) return undefined;
    const d = readDestination(r, `${f}.destination`, m.destination);
    const pct = m.percentage !== undefined ? r.percent(`${f}.percentage`, m.percentage) : 100;
    return d ? { destination: d, percentage: pct ?? 100 } : undefined;
  }));
  if (o.corsPolicy !== undefined) {
    const c = r.object(`${field}.corsPolicy`, o.corsPolicy, ['allowOrigins', 'allowMethods', 'allowHeaders', 'exposeHeaders', 'maxAge', 'allowCredentials'], ['allowOrigin', 'unmatchedPreflights']);
    if (c) route.corsPolicy = c;
  }
  return route;
}

export function readL4Route(r: Reader, field: string, v: unknown, tls: boolean): L4Route | undefined {
  const o = r.object(field, v, ['match', 'route']);
  if (!o) return undefined;
  const match = r.array(`${field}.match`, o.match, (x, f): L4Match | undefined => {
    const m = r.object(f, x, ['port', 'destinationSubnets', 'sourceLabels', 'sourceNamespace', 'gateways', ...(tls ? ['sniHosts'] : [])], ['sourceSubnet']);
    if (!m) return undefined;
    const sniHosts = tls ? r.strings(`${f}.sniHosts`, m.sniHosts) : undefined;
    if (tls && (!sniHosts || sniHosts.length === 0)) r.error(`${f}.sniHosts`, 'is required for tls routes');
    return { port: r.int(`${f}.port`, m.port, { min: 1, max: 65535 }), destinationSubnets: m.destinationSubnets === undefined ? undefined : r.strings(`${f}.destinationSubnets`, m.destinationSubnets), sourceLabels: r.labels(`${f}.sourceLabels`, m.sourceLabels), sourceNamespace: r.string(`${f}.sourceNamespace`, m.sourceNamespace), sniHosts };
  });
  if (tls && match.length === 0) r.error(`${field}.match`, 'is required for tls routes');
  return { match, route: readRouteDestinations(r, `${field}.route`, o.route) };
}

export { HOST as HOST_PATTERN };
