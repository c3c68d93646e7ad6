// Answers to the downstream: the upstream's response relayed (headers,
// body with flow control, trailers; a reset mirrored as a reset), and local
// replies the proxy makes itself (errors with their Envoy response flags,
// redirects, direct responses), in gRPC's Trailers-Only form to gRPC
// clients.
import http2 from 'node:http2';
import type { ServerResponse } from 'node:http';
import type { Http2ServerResponse } from 'node:http2';
import { GrpcMessageCounter } from './body.js';
import { downstreamResponseHeaders, first, headerBytes } from './headers.js';
import type { RequestTelemetry } from './request-telemetry.js';
import type { UpstreamResponse } from './upstream.js';

export type DownRes = ServerResponse | Http2ServerResponse;

/** HTTP status → gRPC status for local replies to gRPC clients (gRPC's own mapping). */
const GRPC_FOR_HTTP: Record<number, string> = { 400: '13', 401: '16', 403: '7', 404: '12', 429: '14', 502: '14', 503: '14', 504: '4' };

/** Append a response flag (Envoy lists several comma-separated, e.g. "DI,UT"). */
export function addFlag(tel: RequestTelemetry, flag: string): void {
  tel.flags = tel.flags === '-' || tel.flags === '' ? flag : tel.flags.split(',').includes(flag) ? tel.flags : `${tel.flags},${flag}`;
}

/** Relay an upstream response; `out` are the downstream headers already prepared (decorated by the route). */
export async function relayResponse(resp: UpstreamResponse, out: Record<string, string | string[]>, res: DownRes, tel: RequestTelemetry, grpc: boolean, timedOut: () => boolean): Promise<void> {
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
    localReply(res, tel, 502, 'UPE', `upstream response headers invalid: ${String(err)}`, grpc);
    return;
  }
  const messages = grpc ? new GrpcMessageCounter() : undefined;
  const cl = first(resp.headers['content-length']);
  const length = cl !== undefined && /^\d+$/.test(cl) ? Number(cl) : undefined;
  const src = resp.body;
  const cut = () => addFlag(tel, timedOut() ? 'UT' : (res.destroyed ? 'DC' : 'UR'));
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
      cut();
      resetDownstream(res, (src as { rstCode?: number }).rstCode);
      done();
    });
    src.once('close', () => {
      if (!src.readableEnded && !settled) {
        cut();
        resetDownstream(res, (src as { rstCode?: number }).rstCode);
        done();
      }
    });
    res.once('close', () => {
      if (settled) return;
      // A client may close as soon as it has Content-Length bytes, before the upstream's END_STREAM: that is a complete response, not DC.
      if (!res.writableFinished && !(length !== undefined && tel.responseBodyBytes >= length)) addFlag(tel, 'DC');
      src.destroy();
      done();
    });
  });
  if (messages) tel.responseMessages = messages.count;
}

/** An error the proxy answers itself: text body and response flag (gRPC clients get the mapped grpc-status). */
export function localReply(res: DownRes, tel: RequestTelemetry, status: number, flags: string, text: string, grpc: boolean, extra: Record<string, string> = {}): void {
  if (flags !== '-') addFlag(tel, flags);
  tel.details = text.replace(/[^\w]+/g, '_').slice(0, 64);
  if (res.headersSent || res.destroyed) { resetDownstream(res, undefined); return; }
  if (grpc && status >= 400) {
    // gRPC clients read the status from headers ("Trailers-Only"), not the HTTP code.
    grpcReply(res, tel, GRPC_FOR_HTTP[status] ?? '2', text);
    return;
  }
  tel.code = status;
  const b = Buffer.from(text);
  tel.responseBodyBytes = b.length;
  res.writeHead(status, { 'content-type': 'text/plain', 'content-length': String(b.length), ...extra } as never);
  res.end(b);
}

/** A gRPC status answered by the proxy (errors, fault aborts). */
export function grpcReply(res: DownRes, tel: RequestTelemetry, grpcStatus: string, text: string): void {
  tel.code = 200;
  tel.grpcStatus = grpcStatus;
  if (res.headersSent || res.destroyed) { resetDownstream(res, undefined); return; }
  trailersOnly(res, 200, { 'content-type': 'application/grpc', 'grpc-status': grpcStatus, 'grpc-message': encodeURIComponent(text) });
}

/** One HEADERS frame with END_STREAM on HTTP/2 (what gRPC clients need); a bodiless response on HTTP/1.1. */
export function trailersOnly(res: DownRes, status: number, headers: Record<string, string | string[]>): void {
  const stream = (res as Http2ServerResponse).stream as http2.ServerHttp2Stream | undefined;
  if (stream && typeof stream.respond === 'function') {
    if (!stream.destroyed && !stream.headersSent) stream.respond({ ...headers, ':status': status }, { endStream: true });
    return;
  }
  (res as ServerResponse).writeHead(status, headers);
  res.end();
}

/** RST_STREAM with the upstream's code (CANCEL stays CANCEL) on HTTP/2; a closed connection on HTTP/1.1. */
export function resetDownstream(res: DownRes, rstCode: number | undefined): void {
  const stream = (res as Http2ServerResponse).stream as http2.ServerHttp2Stream | undefined;
  if (stream && typeof stream.close === 'function') {
    if (!stream.destroyed) stream.close(rstCode && rstCode !== 0 ? rstCode : http2.constants.NGHTTP2_INTERNAL_ERROR);
    return;
  }
  (res as ServerResponse).destroy();
}
