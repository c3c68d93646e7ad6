// Validation of a CompiledProxyConfig before the proxy applies it (the
// `--static-config` file; a control-plane push can use the same check to
// NACK). Every problem is a FieldError naming the JSON path to fix
// ("routes[0].virtualHosts[1].routes[2].match[0].uri.regex: ..."). Fields a
// translator always fills but a hand-written file may leave out get the
// same defaults the translator uses (connect timeout 10 s, idle 1 h,
// LEAST_REQUEST, no subset selector, auto TLS). Regexes are checked for
// what RE2 would refuse and for catastrophic backtracking.
import { FieldError } from '../../common/errors.js';
import type { CompiledCluster, CompiledHttpRoute, CompiledL4Service, CompiledProxyConfig, CompiledRouteTable, WeightedCluster } from '../../controlplane/resources.js';
import { checkRegex, regexesOf } from '../http/match.js';

type Obj = Record<string, unknown>;

const LB = ['LEAST_REQUEST', 'ROUND_ROBIN', 'RANDOM', 'PASSTHROUGH', 'CONSISTENT_HASH'];

function obj(field: string, v: unknown): Obj {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new FieldError(field, 'must be an object');
  return v as Obj;
}
function arr(field: string, v: unknown, dflt?: unknown[]): unknown[] {
  if (v === undefined && dflt) return dflt;
  if (!Array.isArray(v)) throw new FieldError(field, 'must be an array');
  return v;
}
function str(field: string, v: unknown): string {
  if (typeof v !== 'string' || v === '') throw new FieldError(field, 'must be a non-empty string');
  return v;
}
function num(field: string, v: unknown, min: number, max: number, dflt?: number): number {
  if (v === undefined && dflt !== undefined) return dflt;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) throw new FieldError(field, `must be a number ${min}-${max}`, JSON.stringify(v));
  return v;
}
function optNum(field: string, v: unknown, min: number, max: number): number | undefined {
  return v === undefined ? undefined : num(field, v, min, max);
}
function regex(field: string, pattern: string): void {
  try {
    checkRegex(pattern);
    new RegExp(pattern, 'u');
  } catch (e) {
    throw new FieldError(field, `invalid regex: ${(e as Error).message}`, pattern);
  }
}

// A route may name a cluster the config does not define (a subset without a
// DestinationRule): as in Envoy, that route answers 503 NC; the rest applies.
function weighted(field: string, v: unknown): WeightedCluster[] {
  const list = arr(field, v).map((x, i) => {
    const o = obj(`${field}[${i}]`, x);
    const cluster = str(`${field}[${i}].cluster`, o.cluster);
    return { ...o, cluster, weight: num(`${field}[${i}].weight`, o.weight, 0, 1_000_000, 100) } as WeightedCluster;
  });
  if (list.length === 0) throw new FieldError(field, 'must list at least one cluster');
  return list;
}

function stringMatch(field: string, v: unknown): void {
  const o = obj(field, v);
  const kinds = ['exact', 'prefix', 'regex'].filter((k) => o[k] !== undefined);
  if (kinds.length !== 1) throw new FieldError(field, 'must have exactly one of exact, prefix, regex');
  if (typeof o[kinds[0]] !== 'string') throw new FieldError(`${field}.${kinds[0]}`, 'must be a string');
}

function httpMatch(field: string, v: unknown): void {
  const m = obj(field, v);
  for (const k of ['uri', 'scheme', 'method', 'authority']) if (m[k] !== undefined) stringMatch(`${field}.${k}`, m[k]);
  for (const k of ['headers', 'queryParams', 'withoutHeaders']) {
    if (m[k] === undefined) continue;
    for (const [name, sm] of Object.entries(obj(`${field}.${k}`, m[k]))) stringMatch(`${field}.${k}.${name}`, sm);
  }
  if (m.sourceLabels !== undefined) {
    for (const [k, val] of Object.entries(obj(`${field}.sourceLabels`, m.sourceLabels))) if (typeof val !== 'string') throw new FieldError(`${field}.sourceLabels.${k}`, 'must be a string');
  }
  if (m.sourceNamespace !== undefined) str(`${field}.sourceNamespace`, m.sourceNamespace);
  if (m.ignoreUriCase !== undefined && typeof m.ignoreUriCase !== 'boolean') throw new FieldError(`${field}.ignoreUriCase`, 'must be true or false');
  optNum(`${field}.port`, m.port, 1, 65535);
}

function httpRoute(field: string, v: unknown): CompiledHttpRoute {
  const o = obj(field, v);
  const match = arr(`${field}.match`, o.match, []) as CompiledHttpRoute['match'];
  match.forEach((m, i) => httpMatch(`${field}.match[${i}]`, m));
  for (const r of regexesOf(match, `${field}.match`)) regex(r.field, r.pattern);
  const action = obj(`${field}.action`, o.action);
  const kinds = ['route', 'redirect', 'directResponse'].filter((k) => action[k] !== undefined);
  if (kinds.length !== 1) throw new FieldError(`${field}.action`, 'must have exactly one of route, redirect, directResponse');
  if (action.route !== undefined) action.route = weighted(`${field}.action.route`, action.route);
  if (action.redirect !== undefined) {
    const rd = obj(`${field}.action.redirect`, action.redirect);
    rd.redirectCode = num(`${field}.action.redirect.redirectCode`, rd.redirectCode, 300, 399, 301);
  }
  if (action.directResponse !== undefined) num(`${field}.action.directResponse.status`, obj(`${field}.action.directResponse`, action.directResponse).status, 200, 599);
  const rw = o.rewrite === undefined ? undefined : obj(`${field}.rewrite`, o.rewrite);
  if (rw?.uriRegexRewrite !== undefined) regex(`${field}.rewrite.uriRegexRewrite.match`, str(`${field}.rewrite.uriRegexRewrite.match`, obj(`${field}.rewrite.uriRegexRewrite`, rw.uriRegexRewrite).match));
  if (o.retries !== undefined) {
    const r = obj(`${field}.retries`, o.retries);
    num(`${field}.retries.attempts`, r.attempts, 0, 100);
    r.retryOn = arr(`${field}.retries.retryOn`, r.retryOn, []);
    r.retriableStatusCodes = arr(`${field}.retries.retriableStatusCodes`, r.retriableStatusCodes, []);
    r.backoffBaseMs = num(`${field}.retries.backoffBaseMs`, r.backoffBaseMs, 1, 60_000, 25);
  }
  optNum(`${field}.timeoutMs`, o.timeoutMs, 0, 7 * 86_400_000);
  if (o.fault !== undefined) {
    const f = obj(`${field}.fault`, o.fault);
    if (f.delay !== undefined) { const dl = obj(`${field}.fault.delay`, f.delay); num(`${field}.fault.delay.fixedDelayMs`, dl.fixedDelayMs, 0, 86_400_000); dl.percentage = num(`${field}.fault.delay.percentage`, dl.percentage, 0, 100, 100); }
    if (f.abort !== undefined) {
      const ab = obj(`${field}.fault.abort`, f.abort);
      if (ab.httpStatus === undefined && ab.grpcStatus === undefined) throw new FieldError(`${field}.fault.abort`, 'needs httpStatus or grpcStatus');
      optNum(`${field}.fault.abort.httpStatus`, ab.httpStatus, 200, 599);
      ab.percentage = num(`${field}.fault.abort.percentage`, ab.percentage, 0, 100, 100);
    }
  }
  const mirrors = arr(`${field}.mirrors`, o.mirrors, []).map((x, i) => {
    const m = obj(`${field}.mirrors[${i}]`, x);
    const cluster = str(`${field}.mirrors[${i}].cluster`, m.cluster);
    return { cluster, percentage: num(`${field}.mirrors[${i}].percentage`, m.percentage, 0, 100, 100) };
  });
  return { ...o, source: typeof o.source === 'string' ? o.source : field, match, action, mirrors } as unknown as CompiledHttpRoute;
}

function routeTable(field: string, v: unknown): CompiledRouteTable {
  const o = obj(field, v);
  return {
    port: num(`${field}.port`, o.port, 1, 65535),
    virtualHosts: arr(`${field}.virtualHosts`, o.virtualHosts).map((x, i) => {
      const f = `${field}.virtualHosts[${i}]`;
      const vh = obj(f, x);
      const domains = arr(`${f}.domains`, vh.domains).map((d, j) => str(`${f}.domains[${j}]`, d));
      return { name: str(`${f}.name`, vh.name), domains, routes: arr(`${f}.routes`, vh.routes).map((r, j) => httpRoute(`${f}.routes[${j}]`, r)) };
    }),
  };
}

function cluster(field: string, v: unknown): CompiledCluster {
  const o = obj(field, v);
  const lb = o.loadBalancer === undefined ? { simple: 'LEAST_REQUEST' } : obj(`${field}.loadBalancer`, o.loadBalancer);
  if (lb.consistentHash !== undefined) { obj(`${field}.loadBalancer.consistentHash`, lb.consistentHash); lb.simple ??= 'CONSISTENT_HASH'; }
  lb.simple ??= 'LEAST_REQUEST';
  if (!LB.includes(lb.simple as string)) throw new FieldError(`${field}.loadBalancer.simple`, `must be one of ${LB.join(', ')}`, String(lb.simple));
  const cp = o.connectionPool === undefined ? {} : obj(`${field}.connectionPool`, o.connectionPool);
  const pool = {
    ...cp,
    connectTimeoutMs: num(`${field}.connectionPool.connectTimeoutMs`, cp.connectTimeoutMs, 1, 86_400_000, 10_000),
    idleTimeoutMs: num(`${field}.connectionPool.idleTimeoutMs`, cp.idleTimeoutMs, 1, 7 * 86_400_000, 3_600_000),
  };
  for (const k of ['maxConnections', 'http1MaxPendingRequests', 'http2MaxRequests', 'maxRequestsPerConnection', 'maxRetries']) optNum(`${field}.connectionPool.${k}`, cp[k], k === 'maxRetries' || k === 'http1MaxPendingRequests' ? 0 : 1, 2 ** 32);
  let od: CompiledCluster['outlierDetection'];
  if (o.outlierDetection !== undefined) {
    const x = obj(`${field}.outlierDetection`, o.outlierDetection);
    const f = `${field}.outlierDetection`;
    od = {
      consecutive5xxErrors: num(`${f}.consecutive5xxErrors`, x.consecutive5xxErrors, 0, 2 ** 32, 5),
      consecutiveGatewayErrors: optNum(`${f}.consecutiveGatewayErrors`, x.consecutiveGatewayErrors, 0, 2 ** 32),
      intervalMs: num(`${f}.intervalMs`, x.intervalMs, 1, 86_400_000, 10_000),
      baseEjectionTimeMs: num(`${f}.baseEjectionTimeMs`, x.baseEjectionTimeMs, 1, 86_400_000, 30_000),
      maxEjectionPercent: num(`${f}.maxEjectionPercent`, x.maxEjectionPercent, 0, 100, 10),
      minHealthPercent: num(`${f}.minHealthPercent`, x.minHealthPercent, 0, 100, 0),
    };
  }
  const selector = o.selector === undefined ? {} : obj(`${field}.selector`, o.selector);
  for (const [k, val] of Object.entries(selector)) if (typeof val !== 'string') throw new FieldError(`${field}.selector.${k}`, 'must be a string');
  return {
    ...o, name: str(`${field}.name`, o.name), host: str(`${field}.host`, o.host), port: num(`${field}.port`, o.port, 1, 65535),
    service: o.service === undefined ? undefined : str(`${field}.service`, o.service),
    protocol: (o.protocol ?? 'http') as CompiledCluster['protocol'], selector: selector as Record<string, string>,
    loadBalancer: lb as CompiledCluster['loadBalancer'], connectionPool: pool, outlierDetection: od,
    tls: clusterTls(`${field}.tls`, o.tls),
  } as CompiledCluster;
}

const TLS_MODES = ['AUTO', 'DISABLE', 'SIMPLE', 'MUTUAL', 'ISTIO_MUTUAL'];

/** The cluster's client TLS (DestinationRule tls). MUTUAL without files (credentialName) is valid config: its connections fail, saying why. */
function clusterTls(field: string, v: unknown): CompiledCluster['tls'] {
  if (v === undefined) return { mode: 'AUTO' };
  const o = obj(field, v);
  if (typeof o.mode !== 'string' || !TLS_MODES.includes(o.mode)) throw new FieldError(`${field}.mode`, `must be one of ${TLS_MODES.join(', ')}`);
  if (o.sni !== undefined) str(`${field}.sni`, o.sni);
  if (o.subjectAltNames !== undefined) arr(`${field}.subjectAltNames`, o.subjectAltNames).forEach((x, i) => str(`${field}.subjectAltNames[${i}]`, x));
  for (const k of ['caCertificates', 'clientCertificate', 'privateKey']) {
    if (o[k] !== undefined && !str(`${field}.${k}`, o[k]).startsWith('/')) throw new FieldError(`${field}.${k}`, 'must be an absolute path');
  }
  if (o.insecureSkipVerify !== undefined && typeof o.insecureSkipVerify !== 'boolean') throw new FieldError(`${field}.insecureSkipVerify`, 'must be a boolean');
  return o as CompiledCluster['tls'];
}

function l4Service(field: string, v: unknown): CompiledL4Service {
  const o = obj(field, v);
  return {
    host: str(`${field}.host`, o.host), port: num(`${field}.port`, o.port, 1, 65535), protocol: (o.protocol ?? 'tcp') as CompiledL4Service['protocol'],
    addresses: arr(`${field}.addresses`, o.addresses, []).map((a, i) => str(`${field}.addresses[${i}]`, a)),
    routes: arr(`${field}.routes`, o.routes).map((x, i) => {
      const r = obj(`${field}.routes[${i}]`, x);
      return { source: typeof r.source === 'string' ? r.source : `${field}.routes[${i}]`, match: arr(`${field}.routes[${i}].match`, r.match, []) as CompiledL4Service['routes'][number]['match'], route: weighted(`${field}.routes[${i}].route`, r.route) };
    }),
  };
}

export interface StaticConfig { config: CompiledProxyConfig; outboundTrafficPolicy?: 'ALLOW_ANY' | 'REGISTRY_ONLY' }

/** Validates and normalises; throws FieldError naming the first bad field. */
export function validateCompiledConfig(v: unknown): StaticConfig {
  const o = obj('(config)', v);
  const clusters = arr('clusters', o.clusters, []).map((x, i) => cluster(`clusters[${i}]`, x));
  const names = new Set<string>();
  clusters.forEach((c, i) => { if (names.has(c.name)) throw new FieldError(`clusters[${i}].name`, 'is a duplicate', c.name); names.add(c.name); });
  const routes = arr('routes', o.routes, []).map((x, i) => routeTable(`routes[${i}]`, x));
  const l4 = arr('l4', o.l4, []).map((x, i) => l4Service(`l4[${i}]`, x));
  const ignored = arr('ignored', o.ignored, []) as CompiledProxyConfig['ignored'];
  let mode: StaticConfig['outboundTrafficPolicy'];
  if (o.outboundTrafficPolicy !== undefined) {
    const m = obj('outboundTrafficPolicy', o.outboundTrafficPolicy).mode;
    if (m !== 'ALLOW_ANY' && m !== 'REGISTRY_ONLY') throw new FieldError('outboundTrafficPolicy.mode', 'must be ALLOW_ANY or REGISTRY_ONLY', String(m));
    mode = m;
  }
  return { config: { routes, l4, clusters, ignored }, outboundTrafficPolicy: mode };
}
