// The router filter: one downstream request → a route decision → an
// endpoint → an exchange over a pooled upstream connection. The decision
// comes from the compiled Istio config when the dialled port has a route
// table and the Host names one of its virtual hosts (compiled-plan.ts:
// VirtualService matches, weights, subsets, rewrites, faults, mirrors,
// per-route retries and timeouts, DestinationRule load balancing, pool
// limits and outlier detection); otherwise from the registry's default
// route per service (route.ts), with Istio's default retry policy on the
// outbound side (2 retries on connect-failure, refused-stream, 503, gRPC
// unavailable/cancelled; another endpoint preferred). On both sides, one
// retry on a fresh connection when a kept-alive connection was closed
// under the request before any response (Envoy's "503 UC" with apps whose
// keep-alive is shorter than ours, e.g. Node's 5 s). The response streams
// back with its trailers; cancellation travels both ways.
import type { IncomingMessage } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import type { Conn, ProxyDeps } from '../context.js';
import { endpointKey, LeastRequest } from '../lb.js';
import { decodePeer, encodePeer, PEER_HEADER } from '../telemetry/workload.js';
import { ReplayableBody } from './body.js';
import { planCompiled, type ForwardPlan, type LocalAnswer } from './compiled-plan.js';
import { downstreamResponseHeaders, first, grpcTimeoutMs, PROTOCOL_HEADER, upstreamRequestHeaders } from './headers.js';
import { mirrorRequest } from './mirror.js';
import { addFlag, grpcReply, localReply, relayResponse, type DownRes } from './respond.js';
import { RequestTelemetry } from './request-telemetry.js';
import { applyHeaderOps } from './route-actions.js';
import { decideRoute, type RouteTarget } from './route.js';
import { defaultRetry, RetryPolicy, type AttemptFailure } from './retry-policy.js';
import { UpstreamError, UpstreamPools, type Exchange, type UpstreamHead, type UpstreamResponse } from './upstream.js';

export type DownReq = IncomingMessage | Http2ServerRequest;
export type { DownRes };

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
/** One function for every request (compiled-plan caches its decisions per h2Refused function). */
const poolRefusesH2 = (pools: UpstreamPools, t: { ip: string; port: number }) => pools.h2Refused(t);

export class HttpRouter {
  readonly lb = new LeastRequest();
  readonly pools: UpstreamPools;
  /** The default routes' retry policies (immutable; made once, not per request). */
  private readonly outboundRetry: RetryPolicy;
  private readonly inboundRetry = new RetryPolicy(defaultRetry(0));

  constructor(private readonly d: ProxyDeps) {
    this.outboundRetry = new RetryPolicy(defaultRetry(d.config.httpRetries));
    this.pools = new UpstreamPools(d.config.connectTimeoutMs, d.config.idleTimeoutMs, undefined, d.mesh?.tlsFor);
  }

  async serve(conn: Conn, req: DownReq, res: DownRes, downstream: 'h1' | 'h2'): Promise<void> {
    const d = this.d;
    d.counters.httpRequests++;
    // HTTP/2: let the rest of this read's frames be processed first, so a stream the client resets in the
    // same batch (rapid reset) is gone before any upstream work starts for it.
    if (downstream === 'h2') await new Promise<void>((r) => setImmediate(r));
    // A reset stream shows on the HTTP/2 stream itself (the compat request/response objects may not say so),
    // and its 'close' has fired already: a request let through here would never learn its client left.
    const h2stream = downstream === 'h2' ? (res as Http2ServerResponse).stream : undefined;
    if (res.destroyed || req.destroyed || h2stream?.destroyed || h2stream?.closed) return;
    const h = req.headers;
    const authority = first(h[':authority']) ?? first(h.host);
    const grpc = /^application\/grpc/i.test(first(h['content-type']) ?? '');
    const headers = upstreamRequestHeaders(h);
    const method = req.method ?? 'GET';
    const path = req.url ?? '/';
    const info = { method, path, protocol: downstream === 'h2' ? 'HTTP/2' : `HTTP/${req.httpVersion}`, authority, headers: h, requestId: headers['x-request-id'], grpc };
    const tel = new RequestTelemetry(d, conn, info);
    tel.span = d.tracer?.start(h, headers);
    const fromPeer = conn.direction === 'inbound' ? decodePeer(h[PEER_HEADER]) : undefined;
    tel.peer(fromPeer);
    const body = new ReplayableBody(req);
    const finish = () => { tel.requestBodyBytes = body.bytes; tel.requestMessages = body.messages.count; tel.finish(); };

    const compiled = conn.direction === 'outbound'
      ? planCompiled(d, d.clusters, conn, { method, path, authority, headers: h, grpc }, poolRefusesH2)
      : { kind: 'none' as const };
    if (compiled.kind === 'answer') { this.answer(res, tel, compiled.answer, grpc); finish(); return; }
    let plan: ForwardPlan;
    if (compiled.kind === 'forward') plan = compiled.plan;
    else {
      const route = decideRoute(d, conn, authority, downstream, grpc, fromPeer ? first(h[PROTOCOL_HEADER]) : undefined, (t) => this.pools.h2Refused(t));
      plan = { decision: route, retry: conn.direction === 'outbound' ? this.outboundRetry : this.inboundRetry, path, authority: authority ?? `${conn.dst.ip}:${conn.dst.port}`, requestOps: [], responseOps: [], responseHeaders: {}, mirrors: [] };
    }
    const route = plan.decision;
    tel.route(route);
    if (route.kind === 'passthrough' && !plan.runtime && d.compiled.outboundTrafficPolicy === 'REGISTRY_ONLY') {
      // Sidecar outboundTrafficPolicy REGISTRY_ONLY: what the registry does not know goes nowhere (Istio's BlackHoleCluster).
      tel.cluster = 'BlackHoleCluster'; tel.routeName = 'block_all';
      localReply(res, tel, 502, 'NR', 'destination not in the service registry (outboundTrafficPolicy REGISTRY_ONLY)', grpc);
      finish();
      return;
    }
    if (route.meshPeer) { headers[PEER_HEADER] = encodePeer(d.identity()); headers[PROTOCOL_HEADER] = downstream; }
    for (const ops of plan.requestOps) applyHeaderOps(headers, ops);
    if (plan.path !== path) headers['x-envoy-original-path'] = path;
    const head: UpstreamHead = { method, path: plan.path, authority: plan.authority, headers: headers as Record<string, string | string[]> };

    let current: Exchange | undefined;
    let downGone = false;
    // Ends a wait for the connection pool when the client leaves or the deadline passes (made only for such a wait).
    let gone: AbortController | undefined;
    res.on('close', () => { if (!res.writableFinished) { downGone = true; current?.abort(); gone?.abort(); } });
    let timedOut = false;
    const grpcDeadline = grpc ? grpcTimeoutMs(first(h['grpc-timeout'])) : undefined;
    const deadlineMs = [grpcDeadline, plan.timeoutMs].filter((x): x is number => x !== undefined).reduce((a, b) => Math.min(a, b), Infinity);
    const deadline = Number.isFinite(deadlineMs) ? setTimeout(() => { timedOut = true; current?.abort(); gone?.abort(); }, deadlineMs) : undefined;
    const end = () => { clearTimeout(deadline); finish(); };

    if (plan.fault?.delayMs !== undefined) {
      addFlag(tel, 'DI');
      await sleep(plan.fault.delayMs);
      if (downGone) { addFlag(tel, 'DC'); end(); return; }
      if (timedOut) { localReply(res, tel, 504, 'UT', 'upstream request timeout', grpc); end(); return; }
    }
    const abort = plan.fault?.abort;
    if (abort) {
      body.detach();
      if (abort.grpcStatus !== undefined) { addFlag(tel, 'FI'); grpcReply(res, tel, abort.grpcStatus, 'fault filter abort'); }
      else localReply(res, tel, abort.status, 'FI', 'fault filter abort', grpc);
      end();
      return;
    }
    if (plan.mirrors.length > 0) {
      req.once('end', () => {
        const copy = body.wholeBody();
        if (copy) for (const m of plan.mirrors) mirrorRequest(d, m, head, copy);
      });
    }
    const rt = plan.runtime;
    let admitted: (() => void) | undefined;
    if (rt) {
      if (rt.gate.mayQueue()) gone = new AbortController();
      const a = await rt.gate.admit(gone?.signal);
      if (a === 'overflow') {
        d.metrics.poolOverflow.inc({ cluster_name: rt.compiled.name, limit: 'connectionPool' });
        localReply(res, tel, 503, 'UO', 'upstream connect error or disconnect/reset before headers. reset reason: overflow', grpc);
        end();
        return;
      }
      if (a === 'aborted') {
        if (downGone) addFlag(tel, 'DC');
        else localReply(res, tel, 504, 'UT', 'upstream request timeout', grpc);
        end();
        return;
      }
      admitted = a;
    }
    try {
      await this.exchange(conn, plan, head, body, res, tel, grpc, fromPeer !== undefined, {
        down: () => downGone, timedOut: () => timedOut, set: (ex) => { current = ex; },
      });
    } finally {
      admitted?.();
      end();
    }
  }

  /** Attempts until a response is relayed or the retry policy gives up. */
  private async exchange(conn: Conn, plan: ForwardPlan, head: UpstreamHead, body: ReplayableBody, res: DownRes, tel: RequestTelemetry, grpc: boolean, requestFromPeer: boolean,
    st: { down(): boolean; timedOut(): boolean; set(ex: Exchange | undefined): void }): Promise<void> {
    const d = this.d;
    const route = plan.decision;
    const rt = plan.runtime;
    const pools = rt?.pools ?? this.pools;
    const tried = new Set<string>();
    let retries = 0;
    let fresh = false;
    let staleRetried = false;
    let retryRelease: (() => void) | undefined;
    const canRetry = (): boolean => {
      if (retries >= plan.retry.maxRetries || !body.replayable) return false;
      if (!rt) return true;
      retryRelease?.();
      retryRelease = rt.gate.retry();
      if (!retryRelease) d.metrics.retryOverflow.inc({ cluster_name: rt.compiled.name });
      return retryRelease !== undefined;
    };
    const backoff = async (cause: string) => {
      retries++; d.counters.httpRetries++;
      d.metrics.retries.inc({ direction: conn.direction, cause });
      await sleep(plan.retry.backoffMs(retries));
    };
    try {
      for (;;) {
        const t = this.pick(plan, tried);
        if (!t) { localReply(res, tel, 503, 'UH', 'no healthy upstream', grpc); return; }
        tried.add(endpointKey(t));
        tel.target(t);
        const release = rt ? rt.balancer.acquire(t) : this.lb.acquire(t);
        const t1 = performance.now();
        let perTryTimedOut = false;
        let current: Exchange | undefined;
        const perTry = plan.retry.perTryTimeoutMs !== undefined ? setTimeout(() => { perTryTimedOut = true; current?.abort(); }, plan.retry.perTryTimeoutMs) : undefined;
        let resp: UpstreamResponse;
        try {
          const ex = await this.dial(pools, route.protocolFor(t), t, head, { localAddress: route.localAddress, fresh });
          current = ex;
          st.set(ex);
          if (st.down() || st.timedOut() || perTryTimedOut) ex.abort();
          else body.pipeTo(ex.sink);
          resp = await ex.response;
          clearTimeout(perTry);
        } catch (err) {
          clearTimeout(perTry);
          release();
          body.detach();
          st.set(undefined);
          if (st.down()) { addFlag(tel, 'DC'); return; }
          if (st.timedOut()) { localReply(res, tel, 504, 'UT', 'upstream request timeout', grpc); return; }
          const e = err instanceof UpstreamError ? err : new UpstreamError('reset', 'ERR', String(err));
          if (e.kind === 'h2-unsupported') { tried.delete(endpointKey(t)); continue; } // same endpoint over HTTP/1.1: not a retry
          const kind: AttemptFailure = perTryTimedOut ? 'per-try-timeout' : e.kind;
          rt?.outlier?.record(endpointKey(t), { failure: kind === 'connect' ? 'connect' : kind === 'per-try-timeout' ? 'timeout' : 'reset' }, rt.targets(d.routes()).length);
          if (kind === 'connect') d.metrics.connectFailures.inc({ direction: conn.direction, reason: e.code });
          if (kind === 'stale' && !staleRetried && body.replayable) {
            staleRetried = true; fresh = true; tried.delete(endpointKey(t));
            d.metrics.retries.inc({ direction: conn.direction, cause: 'stale-connection' });
            continue;
          }
          fresh = false;
          if (plan.retry.retriesFailure(kind) && canRetry()) { await backoff(kind); continue; }
          const exhausted = retries > 0 && plan.retry.retriesFailure(kind);
          if (kind === 'per-try-timeout') { localReply(res, tel, 504, exhausted ? 'UT,URX' : 'UT', 'upstream request timeout', grpc); return; }
          tel.transportFailure = `${e.code}: ${e.message}`;
          const flags = kind === 'connect' ? (exhausted ? 'UF,URX' : 'UF') : (exhausted ? 'UC,URX' : 'UC');
          localReply(res, tel, 503, flags, `upstream connect error or disconnect/reset before headers. reset reason: ${kind === 'connect' ? 'connection failure' : 'connection termination'}`, grpc);
          return;
        }
        const ex = current!;
        if (st.down()) {
          // The client left while the response headers were on their way (a reset racing the answer):
          // its 'close' has fired already, so nothing would ever end the relay below.
          ex.abort(); resp.body.destroy(); release(); body.detach(); st.set(undefined);
          addFlag(tel, 'DC'); return;
        }
        tel.upstreamServiceMs = performance.now() - t1;
        // Only the access log shows it, and asking costs a getsockname() per request.
        if (d.accessLog.enabled) tel.upstreamLocal = ex.localAddress();
        rt?.outlier?.record(endpointKey(t), { status: resp.status }, rt.targets(d.routes()).length);
        const gs = grpc ? first(resp.headers['grpc-status']) : undefined;
        const retriable = plan.retry.retriesResponse(resp.status, gs);
        if (retriable && canRetry()) {
          body.detach(); ex.abort(); release(); st.set(undefined);
          await backoff(resp.status >= 500 || !gs ? String(resp.status) : `grpc-${gs}`);
          continue;
        }
        if (retriable && retries > 0) addFlag(tel, 'URX');
        if (route.meshPeer) tel.peer(decodePeer(resp.headers[PEER_HEADER]));
        const out = downstreamResponseHeaders(resp.headers);
        // Metadata exchange answer: only to a weir peer that asked.
        if (conn.direction === 'inbound' && requestFromPeer) out[PEER_HEADER] = encodePeer(d.identity());
        for (const ops of plan.responseOps) applyHeaderOps(out, ops);
        Object.assign(out, plan.responseHeaders);
        await relayResponse(resp, out, res, tel, grpc, st.timedOut);
        release();
        return;
      }
    } finally {
      retryRelease?.();
    }
  }

  /** The endpoint for the next attempt: the cluster's balancer (compiled), else least-request over the default route. */
  private pick(plan: ForwardPlan, tried: Set<string>): RouteTarget | undefined {
    const rt = plan.runtime;
    if (!rt || plan.decision.kind === 'passthrough') return this.lb.pick(plan.decision.targets, tried);
    return rt.balancer.pick(rt.targets(this.d.routes()), tried, plan.hashKey);
  }

  /**
   * The one place a request reaches an endpoint: a new or pooled connection
   * and one exchange on it. (mTLS dialing wraps this step.)
   */
  private dial(pools: UpstreamPools, proto: 'h1' | 'h2', t: RouteTarget, head: UpstreamHead, opts: { localAddress?: string; fresh?: boolean }): Promise<Exchange> {
    return pools.open(proto, t, head, opts);
  }

  private answer(res: DownRes, tel: RequestTelemetry, a: LocalAnswer, grpc: boolean): void {
    tel.routeName = a.routeName;
    tel.cluster = a.cluster;
    if (a.status >= 400 && a.flags !== '-') { localReply(res, tel, a.status, a.flags, a.text, grpc); return; }
    tel.code = a.status;
    const b = Buffer.from(a.text);
    tel.responseBodyBytes = b.length;
    if (res.headersSent || res.destroyed) return;
    res.writeHead(a.status, { ...(b.length ? { 'content-type': 'text/plain' } : {}), 'content-length': String(b.length), ...a.headers } as never);
    res.end(b);
  }
}
