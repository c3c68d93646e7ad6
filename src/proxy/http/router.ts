// The router filter: one downstream request → a route decision → an
// endpoint (LEAST_REQUEST) → an exchange over a pooled upstream connection,
// with Istio's default retry policy on the outbound side (2 retries on
// connect-failure, refused-stream, 503, gRPC unavailable/cancelled; another
// endpoint preferred) and, on both sides, one retry on a fresh connection
// when a kept-alive connection was closed under the request before any
// response (Envoy's "503 UC" with apps whose keep-alive is shorter than
// ours, e.g. Node's 5 s). The response streams back with its trailers;
// cancellation travels both ways (RST_STREAM CANCEL / closed connection).
import http2 from 'node:http2';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import type { Conn, ProxyDeps } from '../context.js';
import { endpointKey, LeastRequest } from '../lb.js';
import { decodePeer, encodePeer, PEER_HEADER } from '../telemetry/workload.js';
import { GrpcMessageCounter, ReplayableBody } from './body.js';
import { downstreamResponseHeaders, first, grpcTimeoutMs, headerBytes, PROTOCOL_HEADER, upstreamRequestHeaders } from './headers.js';
import { RequestTelemetry } from './request-telemetry.js';
import { decideRoute } from './route.js';
import { UpstreamError, UpstreamPools, type Exchange, type UpstreamResponse } from './upstream.js';

export type DownReq = IncomingMessage | Http2ServerRequest;
export type DownRes = ServerResponse | Http2ServerResponse;

/** HTTP status → gRPC status for local replies to gRPC clients (gRPC's own mapping). */
const GRPC_FOR_HTTP: Record<number, string> = { 400: '13', 401: '16', 403: '7', 404: '12', 429: '14', 502: '14', 503: '14', 504: '4' };

export class HttpRouter {
  readonly lb = new LeastRequest();
  readonly pools: UpstreamPools;

  constructor(private readonly d: ProxyDeps) {
    this.pools = new UpstreamPools(d.config.connectTimeoutMs, d.config.idleTimeoutMs, d.mesh?.tlsFor);
  }

  async serve(conn: Conn, req: DownReq, res: DownRes, downstream: 'h1' | 'h2'): Promise<void> {
    const d = this.d;
    d.counters.httpRequests++;
    // HTTP/2: let the rest of this read's frames be processed first, so a stream the client resets in the
    // same batch (rapid reset) is gone before any upstream work starts for it.
    if (downstream === 'h2') await new Promise<void>((r) => setImmediate(r));
    if (res.destroyed || req.destroyed) return;
    const h = req.headers;
    const authority = first(h[':authority']) ?? first(h.host);
    const grpc = /^application\/grpc/i.test(first(h['content-type']) ?? '');
    const headers = upstreamRequestHeaders(h);
    const method = req.method ?? 'GET';
    const path = req.url ?? '/';
    const info = { method, path, protocol: downstream === 'h2' ? 'HTTP/2' : `HTTP/${req.httpVersion}`, authority, headers: { ...h, 'x-request-id': headers['x-request-id'] }, grpc };
    const tel = new RequestTelemetry(d, conn, info);
    const fromPeer = conn.direction === 'inbound' ? decodePeer(h[PEER_HEADER]) : undefined;
    tel.peer(fromPeer);
    const route = decideRoute(d, conn, authority, downstream, grpc, fromPeer ? first(h[PROTOCOL_HEADER]) : undefined, (t) => this.pools.h2Refused(t));
    tel.route(route);
    if (route.meshPeer) { headers[PEER_HEADER] = encodePeer(d.identity()); headers[PROTOCOL_HEADER] = downstream; }

    const body = new ReplayableBody(req);
    let current: Exchange | undefined;
    let downGone = false;
    res.on('close', () => { if (!res.writableFinished) { downGone = true; current?.abort(); } });
    let timedOut = false;
    const deadlineMs = grpc ? grpcTimeoutMs(first(h['grpc-timeout'])) : undefined;
    const deadline = deadlineMs === undefined ? undefined : setTimeout(() => { timedOut = true; current?.abort(); }, deadlineMs);
    const finish = () => { clearTimeout(deadline); tel.requestBodyBytes = body.bytes; tel.requestMessages = body.messages.count; tel.finish(); };

    const maxRetries = conn.direction === 'outbound' ? d.config.httpRetries : 0;
    const tried = new Set<string>();
    let retries = 0;
    let fresh = false;
    let staleRetried = false;
    for (;;) {
      const t = this.lb.pick(route.targets, tried);
      if (!t) { this.localReply(res, tel, 503, 'UH', 'no healthy upstream', grpc); finish(); return; }
      tried.add(endpointKey(t));
      tel.target(t);
      const release = this.lb.acquire(t);
      const t1 = performance.now();
      let resp: UpstreamResponse;
      try {
        const ex = await this.pools.open(route.protocolFor(t), t, { method, path, authority: authority ?? `${conn.dst.ip}:${conn.dst.port}`, headers }, { localAddress: route.localAddress, fresh });
        current = ex;
        if (downGone || timedOut) ex.abort();
        else body.pipeTo(ex.sink);
        resp = await ex.response;
      } catch (err) {
        release();
        body.detach();
        current = undefined;
        if (downGone) { tel.flags = 'DC'; finish(); return; }
        if (timedOut) { this.localReply(res, tel, 504, 'UT', 'upstream request timeout', grpc); finish(); return; }
        const e = err instanceof UpstreamError ? err : new UpstreamError('reset', 'ERR', String(err));
        if (e.kind === 'h2-unsupported') { tried.delete(endpointKey(t)); continue; } // same endpoint over HTTP/1.1: not a retry
        if (e.kind === 'connect') d.metrics.connectFailures.inc({ direction: conn.direction, reason: e.code });
        if (e.kind === 'stale' && !staleRetried && body.replayable) {
          staleRetried = true; fresh = true; tried.delete(endpointKey(t));
          d.metrics.retries.inc({ direction: conn.direction, cause: 'stale-connection' });
          continue;
        }
        fresh = false;
        if ((e.kind === 'connect' || e.kind === 'refused-stream') && retries < maxRetries && body.replayable) {
          retries++; d.counters.httpRetries++;
          d.metrics.retries.inc({ direction: conn.direction, cause: e.kind });
          continue;
        }
        tel.transportFailure = `${e.code}: ${e.message}`;
        const flags = e.kind === 'connect' ? (retries > 0 ? 'UF,URX' : 'UF') : 'UC';
        this.localReply(res, tel, 503, flags, `upstream connect error or disconnect/reset before headers. reset reason: ${e.kind === 'connect' ? 'connection failure' : 'connection termination'}`, grpc);
        finish();
        return;
      }
      const ex = current!;
      tel.upstreamServiceMs = performance.now() - t1;
      tel.upstreamLocal = ex.localAddress();
      const gs = grpc ? first(resp.headers['grpc-status']) : undefined;
      if (retries < maxRetries && body.replayable && (resp.status === 503 || gs === '14' || gs === '1')) {
        retries++; d.counters.httpRetries++;
        d.metrics.retries.inc({ direction: conn.direction, cause: resp.status === 503 ? '503' : `grpc-${gs}` });
        body.detach(); ex.abort(); release(); current = undefined;
        continue;
      }
      await this.relayResponse(conn, route.meshPeer, fromPeer !== undefined, resp, res, tel, grpc, () => timedOut);
      release();
      finish();
      return;
    }
  }

  private async relayResponse(conn: Conn, meshPeer: boolean, requestFromPeer: boolean, resp: UpstreamResponse, res: DownRes, tel: RequestTelemetry, grpc: boolean, timedOut: () => boolean): Promise<void> {
    if (meshPeer) tel.peer(decodePeer(resp.headers[PEER_HEADER]));
    const out = downstreamResponseHeaders(resp.headers);
    // Metadata exchange answer: only to a weir peer that asked.
    if (conn.direction === 'inbound' && requestFromPeer) out[PEER_HEADER] = encodePeer(this.d.identity());
    tel.code = resp.status;
    tel.responseHeaderBytes = headerBytes(resp.headers);
    const gs = first(resp.headers['grpc-status']);
    if (grpc && gs) tel.grpcStatus = gs;
    if (grpc && gs !== undefined) {
      // gRPC "Trailers-Only": status in the one HEADERS frame that ends the stream; nothing else may follow.
      resp.body.resume();
      trailersOnly(res, resp.status, out);
      return;
    }
    try {
      res.writeHead(resp.status, out as never);
    } catch (err) {
      // A header the downstream protocol refuses (HTTP/2 is strict): fail this request, not the connection.
      resp.body.destroy();
      tel.flags = 'UPE';
      this.localReply(res, tel, 502, 'UPE', `upstream response headers invalid: ${String(err)}`, grpc);
      return;
    }
    const messages = grpc ? new GrpcMessageCounter() : undefined;
    const cl = first(resp.headers['content-length']);
    const length = cl !== undefined && /^\d+$/.test(cl) ? Number(cl) : undefined;
    const src = resp.body;
    await new Promise<void>((resolve) => {
      let settled = false;
      const done = () => { if (!settled) { settled = true; resolve(); } };
      src.on('data', (c: Buffer) => {
        tel.responseBodyBytes += c.length;
        messages?.push(c);
        if (!(res as ServerResponse).write(c)) src.pause();
      });
      res.on('drain', () => src.resume());
      src.once('end', () => {
        const trailers = resp.trailers();
        if (grpc && trailers['grpc-status'] !== undefined) tel.grpcStatus = String(first(trailers['grpc-status']));
        if (Object.keys(trailers).length > 0) res.addTrailers(downstreamResponseHeaders(trailers) as never);
        res.end();
        done();
      });
      src.once('error', () => {
        // The upstream reset mid-response: the client must see a reset, not a clean (truncated) end.
        tel.flags = timedOut() ? 'UT' : (res.destroyed ? 'DC' : 'UR');
        resetDownstream(res, (src as { rstCode?: number }).rstCode);
        done();
      });
      src.once('close', () => {
        if (!src.readableEnded && !settled) {
          tel.flags = timedOut() ? 'UT' : (res.destroyed ? 'DC' : 'UR');
          resetDownstream(res, (src as { rstCode?: number }).rstCode);
          done();
        }
      });
      res.once('close', () => {
        if (settled) return;
        // A client may close as soon as it has Content-Length bytes, before the upstream's END_STREAM: that is a complete response, not DC.
        if (!res.writableFinished && !(length !== undefined && tel.responseBodyBytes >= length)) tel.flags = 'DC';
        src.destroy();
        done();
      });
    });
    if (messages) tel.responseMessages = messages.count;
  }

  private localReply(res: DownRes, tel: RequestTelemetry, status: number, flags: string, text: string, grpc: boolean): void {
    tel.flags = flags;
    tel.details = text.replace(/[^\w]+/g, '_').slice(0, 64);
    if (res.headersSent || res.destroyed) { resetDownstream(res, undefined); return; }
    if (grpc) {
      // gRPC clients read the status from headers ("Trailers-Only"), not the HTTP code.
      tel.code = 200;
      tel.grpcStatus = GRPC_FOR_HTTP[status] ?? '2';
      trailersOnly(res, 200, { 'content-type': 'application/grpc', 'grpc-status': tel.grpcStatus, 'grpc-message': encodeURIComponent(text) });
      return;
    }
    tel.code = status;
    const b = Buffer.from(text);
    tel.responseBodyBytes = b.length;
    res.writeHead(status, { 'content-type': 'text/plain', 'content-length': String(b.length) } as never);
    res.end(b);
  }
}

/** One HEADERS frame with END_STREAM on HTTP/2 (what gRPC clients need); a bodiless response on HTTP/1.1. */
function trailersOnly(res: DownRes, status: number, headers: Record<string, string | string[]>): void {
  const stream = (res as Http2ServerResponse).stream as http2.ServerHttp2Stream | undefined;
  if (stream && typeof stream.respond === 'function') {
    if (!stream.destroyed && !stream.headersSent) stream.respond({ ...headers, ':status': status }, { endStream: true });
    return;
  }
  (res as ServerResponse).writeHead(status, headers);
  res.end();
}

/** RST_STREAM with the upstream's code (CANCEL stays CANCEL) on HTTP/2; a closed connection on HTTP/1.1. */
function resetDownstream(res: DownRes, rstCode: number | undefined): void {
  const stream = (res as Http2ServerResponse).stream as http2.ServerHttp2Stream | undefined;
  if (stream && typeof stream.close === 'function') {
    if (!stream.destroyed) stream.close(rstCode && rstCode !== 0 ? rstCode : http2.constants.NGHTTP2_INTERNAL_ERROR);
    return;
  }
  (res as ServerResponse).destroy();
}
