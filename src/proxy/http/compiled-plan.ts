// The compiled-config half of the routing decision for one outbound
// request: route table for the dialled port → virtual host by authority →
// first matching route → what to do: answer here (redirect, direct
// response, CORS preflight, no route) or forward to one weighted cluster
// with the route's rewrite, header ops, timeout, retries, fault and
// mirrors. Without a table or a virtual host for the request the router
// falls back to the registry's default route per service.
import type { CompiledHttpRoute, CompiledRouteTable } from '../../controlplane/resources.js';
import type { HeaderOps } from '../../istio/types.js';
import type { ClusterManager, ClusterRuntime } from '../cluster/manager.js';
import { hashKeyOf } from '../cluster/hash-key.js';
import type { Conn, ProxyDeps } from '../context.js';
import { corsFor } from './cors.js';
import { pickWeighted, routeFor, virtualHostFor } from './compiled-route.js';
import type { MatchInput } from './match.js';
import { fires, grpcStatusCode, redirectLocation, rewritePath } from './route-actions.js';
import type { RouteDecision } from './route.js';
import { RetryPolicy } from './retry-policy.js';
import type { UpstreamPools } from './upstream.js';

export interface LocalAnswer { status: number; flags: string; text: string; headers?: Record<string, string>; routeName: string; cluster: string }

export interface ForwardPlan {
  decision: RouteDecision;
  runtime?: ClusterRuntime;
  retry: RetryPolicy;
  timeoutMs?: number;
  path: string;
  authority: string;
  requestOps: NonNullable<HeaderOps['request']>[];
  responseOps: NonNullable<HeaderOps['response']>[];
  /** Added to the upstream's response (CORS, a generated hash cookie). */
  responseHeaders: Record<string, string>;
  hashKey?: string;
  fault?: { delayMs?: number; abort?: { status: number; grpcStatus?: string } };
  /** Clusters this request is mirrored to (percentages already drawn). */
  mirrors: ClusterRuntime[];
}

export type CompiledOutcome = { kind: 'none' } | { kind: 'answer'; answer: LocalAnswer } | { kind: 'forward'; plan: ForwardPlan };

export interface CompiledRequest { method: string; path: string; authority: string | undefined; headers: Record<string, string | string[] | undefined>; grpc: boolean }

function matchInput(d: ProxyDeps, conn: Conn, r: CompiledRequest): MatchInput {
  const q = r.path.indexOf('?');
  let query: URLSearchParams | undefined;
  return {
    // Parsed only if a route matches on query parameters or hashes by one (most requests: never).
    method: r.method, path: q < 0 ? r.path : r.path.slice(0, q), get query() { return (query ??= new URLSearchParams(q < 0 ? '' : r.path.slice(q + 1))); },
    scheme: 'http', authority: r.authority ?? '', headers: r.headers, port: conn.dst.port,
    sourceLabels: d.podLabels, sourceNamespace: d.identity().namespace,
  };
}

/** The route table applies to outbound requests on a port it exists for. */
export function tableFor(d: ProxyDeps, conn: Conn): CompiledRouteTable | undefined {
  return conn.direction === 'outbound' ? d.compiled.routeTable(conn.dst.port) : undefined;
}

export function planCompiled(d: ProxyDeps, clusters: ClusterManager, conn: Conn, r: CompiledRequest, h2Refused: (pools: UpstreamPools, t: { ip: string; port: number }) => boolean): CompiledOutcome {
  const table = tableFor(d, conn);
  const vh = table && virtualHostFor(table, r.authority);
  if (!vh) return { kind: 'none' };
  const input = matchInput(d, conn, r);
  const hit = routeFor(vh, input);
  if (!hit) return { kind: 'answer', answer: { status: 404, flags: 'NR', text: 'route not found', routeName: vh.name, cluster: '-' } };
  const { route } = hit;
  const routeName = route.name ?? (route.source === 'default' ? 'default' : route.source);
  const cors = corsFor(route.corsPolicy, r.method, r.headers);
  if (cors.preflight) return { kind: 'answer', answer: { status: 200, flags: '-', text: '', headers: cors.preflight, routeName, cluster: '-' } };
  const action = route.action;
  if ('redirect' in action) {
    const location = redirectLocation(action.redirect, { path: r.path, authority: r.authority ?? '', scheme: 'http' });
    return { kind: 'answer', answer: { status: action.redirect.redirectCode, flags: '-', text: '', headers: { location }, routeName, cluster: '-' } };
  }
  if ('directResponse' in action) {
    return { kind: 'answer', answer: { status: action.directResponse.status, flags: '-', text: action.directResponse.body ?? '', routeName, cluster: '-' } };
  }
  const wc = pickWeighted(action.route);
  if (!wc) return { kind: 'answer', answer: { status: 503, flags: 'NC', text: 'no cluster', routeName, cluster: '-' } };
  const runtime = clusters.get(wc.cluster);
  if (!runtime) return { kind: 'answer', answer: { status: 503, flags: 'NC', text: `cluster ${wc.cluster} not found`, routeName, cluster: wc.cluster } };
  const decision = decisionFor(runtime, routeName, conn, h2Refused);
  const hk = runtime.consistentHash ? hashKeyOf(runtime.consistentHash, { headers: r.headers, query: input.query, sourceIp: conn.peer.replace(/^\[?(.*?)\]?:\d+$/, '$1') }) : {};
  const responseHeaders: Record<string, string> = { ...cors.response };
  if (hk.setCookie) responseHeaders['set-cookie'] = hk.setCookie;
  return {
    kind: 'forward',
    plan: {
      decision, runtime, retry: retryPolicyOf(route), timeoutMs: route.timeoutMs || undefined,
      path: rewritePath(r.path, route.rewrite, hit.match), authority: route.rewrite?.authority ?? r.authority ?? '',
      ...headerOpsOf(route, wc),
      responseHeaders, hashKey: hk.key, fault: faultFor(route, r.grpc),
      mirrors: route.mirrors.filter((m) => fires(m.percentage)).map((m) => clusters.get(m.cluster)).filter((x): x is ClusterRuntime => !!x),
    },
  };
}

type H2Refused = (pools: UpstreamPools, t: { ip: string; port: number }) => boolean;

/**
 * The routing decision for a cluster and route name. It depends only on
 * them (and on the caller's h2Refused), except a PASSTHROUGH cluster's
 * target, which is the connection's original destination: those are made
 * per request, the others once. Callers only read it.
 */
const decisions = new WeakMap<H2Refused, WeakMap<ClusterRuntime, Map<string, RouteDecision>>>();
function decisionFor(runtime: ClusterRuntime, routeName: string, conn: Conn, h2Refused: H2Refused): RouteDecision {
  const c = runtime.compiled;
  const passthrough = c.loadBalancer.simple === 'PASSTHROUGH';
  let byRuntime = decisions.get(h2Refused);
  if (!byRuntime) { byRuntime = new WeakMap(); decisions.set(h2Refused, byRuntime); }
  let byName = byRuntime.get(runtime);
  if (!byName) { byName = new Map(); byRuntime.set(runtime, byName); }
  const have = passthrough ? undefined : byName.get(routeName);
  if (have) return have;
  const [ns, name] = (c.service ?? '/').split('/');
  const decision: RouteDecision = {
    kind: passthrough ? 'passthrough' : 'service', cluster: c.name, routeName,
    targets: passthrough ? [{ ip: conn.dst.ip, port: conn.dst.port }] : [],
    service: c.service ? { name, namespace: ns, fqdn: c.host } : undefined,
    protocolFor: (t) => (h2Refused(runtime.pools, t) ? 'h1' : 'h2'),
    meshPeer: true,
  };
  if (!passthrough) byName.set(routeName, decision);
  return decision;
}

/** The header operations of a route and its weighted cluster, in order (made once per pair; only read). */
const headerOps = new WeakMap<CompiledHttpRoute, WeakMap<object, Pick<ForwardPlan, 'requestOps' | 'responseOps'>>>();
function headerOpsOf(route: CompiledHttpRoute, wc: { headers?: HeaderOps }): Pick<ForwardPlan, 'requestOps' | 'responseOps'> {
  let byWc = headerOps.get(route);
  if (!byWc) { byWc = new WeakMap(); headerOps.set(route, byWc); }
  let ops = byWc.get(wc);
  if (!ops) {
    ops = {
      requestOps: [route.headers?.request, wc.headers?.request].filter((x): x is NonNullable<typeof x> => !!x),
      responseOps: [route.headers?.response, wc.headers?.response].filter((x): x is NonNullable<typeof x> => !!x),
    };
    byWc.set(wc, ops);
  }
  return ops;
}

/** A route's retry policy, made once per compiled route (the route objects live until the next push replaces them). */
const retryPolicies = new WeakMap<CompiledHttpRoute, RetryPolicy>();
function retryPolicyOf(route: CompiledHttpRoute): RetryPolicy {
  let p = retryPolicies.get(route);
  if (!p) { p = new RetryPolicy(route.retries); retryPolicies.set(route, p); }
  return p;
}

function faultFor(route: CompiledHttpRoute, grpc: boolean): ForwardPlan['fault'] {
  const f = route.fault;
  if (!f) return undefined;
  const delayMs = f.delay && fires(f.delay.percentage) ? f.delay.fixedDelayMs : undefined;
  let abort: { status: number; grpcStatus?: string } | undefined;
  if (f.abort && fires(f.abort.percentage)) {
    // A gRPC abort is a gRPC status to gRPC clients; to others, the HTTP status (or 500 when only a gRPC status is given).
    abort = f.abort.grpcStatus !== undefined && grpc ? { status: 200, grpcStatus: grpcStatusCode(f.abort.grpcStatus) } : { status: f.abort.httpStatus ?? 500 };
  }
  return delayMs === undefined && !abort ? undefined : { delayMs, abort };
}
