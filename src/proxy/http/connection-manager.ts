// The HTTP connection manager: takes a connection protocol selection called
// HTTP/1.x or h2c and runs Node's HTTP/1.1 or HTTP/2 server machinery on it
// (the sniffed bytes were put back into the socket). Codec limits live
// here: 60 KiB of request headers as Envoy (431 beyond, from Node's parser),
// conflicting Content-Length/Transfer-Encoding rejected by llhttp (400),
// bounded HTTP/2 concurrency and windows, and the rapid-reset guard.
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import http2, { type Http2ServerRequest, type Http2ServerResponse, type ServerHttp2Session } from 'node:http2';
import type { Duplex } from 'node:stream';
import type { Conn, ProxyDeps, Tracked } from '../context.js';
import { guardRapidReset } from './h2-guard.js';
import { NativeHttpPath } from './native-h1.js';
import { HttpRouter } from './router.js';
import { passUpgrade } from './websocket.js';

const CONN = Symbol('weir.conn');
type Tagged = { [CONN]?: Conn };

export const MAX_REQUEST_HEADER_BYTES = 60 * 1024;

export class HttpConnectionManager {
  readonly router: HttpRouter;
  /** HTTP/1.1 connections that need nothing more than it has go to the addon's native path (native-h1.ts). */
  readonly native: NativeHttpPath;
  private readonly h1: http.Server;
  private readonly h2: http2.Http2Server;
  private readonly sessions = new Set<ServerHttp2Session>();

  constructor(private readonly d: ProxyDeps, private readonly open: Set<Tracked>) {
    this.router = new HttpRouter(d);
    this.native = new NativeHttpPath(d, d.config.httpEngine);
    this.h1 = http.createServer({
      maxHeaderSize: MAX_REQUEST_HEADER_BYTES, requestTimeout: 0, headersTimeout: 60_000,
      keepAliveTimeout: d.config.idleTimeoutMs, noDelay: true,
    }, (req, res) => this.request(req, res, 'h1'));
    this.h1.on('upgrade', (req: IncomingMessage, sock: Duplex, head: Buffer) => {
      const conn = (sock as Tagged)[CONN];
      if (!conn) { sock.destroy(); return; }
      passUpgrade(d, this.router.lb, open, conn, req, sock, head).catch((err: unknown) => this.failed(err, () => sock.destroy()));
    });
    this.h2 = http2.createServer({
      settings: { maxConcurrentStreams: 1000, initialWindowSize: 1 << 20, maxHeaderListSize: MAX_REQUEST_HEADER_BYTES },
    }, (req, res) => this.request(req, res, 'h2'));
    this.h2.on('session', (s: ServerHttp2Session) => {
      this.sessions.add(s);
      s.once('close', () => this.sessions.delete(s));
      s.on('error', () => {});
      guardRapidReset(s, (why) => d.logger.warn({ why }, 'HTTP/2 client closed for resetting streams (rapid reset)'));
    });
  }

  /** Serve this connection until it closes. */
  handle(conn: Conn, proto: 'h1' | 'h2'): Promise<void> {
    // From here on the connection is the native path's (its requests are counted there: /stats nativeHttp).
    if (this.native.take(conn, proto)) return Promise.resolve();
    const sock = conn.down;
    (sock as Tagged)[CONN] = conn;
    // The listener's accept does not set TCP_NODELAY, and http.Server's noDelay applies only to sockets it
    // accepts itself (these are emitted to it): with Nagle on, the second small write of a response (an h2
    // DATA frame after HEADERS, frames of other streams) waits for the peer's delayed ACK, up to 40 ms.
    (sock as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
    this.d.counters.http++;
    const tracked: Tracked = { abort: () => sock.destroy() };
    this.open.add(tracked);
    return new Promise<void>((resolve) => {
      sock.once('close', () => { this.open.delete(tracked); resolve(); });
      if (proto === 'h2') {
        // The listener's sockets are half-open capable (the TCP chain needs that), so a client's FIN
        // alone would leave the session up: an HTTP/2 client that closes its side is gone (h2 has no
        // half-closed connections; Envoy closes on it too), and a stalled stream would never learn
        // it — its relay and upstream stream would live on.
        sock.once('end', () => sock.destroy());
        this.h2.emit('connection', sock);
      }
      else { this.h1.emit('connection', sock); sock.resume(); }
    });
  }

  /** Drain: idle keep-alive connections close now, HTTP/2 clients get GOAWAY and finish their streams. */
  drain(): void {
    this.native.drain();
    this.h1.closeIdleConnections();
    for (const s of this.sessions) s.close();
    this.router.pools.close();
  }

  private request(req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse, proto: 'h1' | 'h2'): void {
    const conn = (req.socket as unknown as Tagged)[CONN];
    if (!conn) { res.destroy(); return; }
    // AuthorizationPolicy on the inbound side, before anything reaches the app (Envoy's RBAC filter answers the same).
    if (conn.direction === 'inbound' && this.d.mesh && !this.d.mesh.authorizeHttp(conn, req)) {
      res.writeHead(403, { 'content-type': 'text/plain' }).end('RBAC: access denied');
      return;
    }
    this.router.serve(conn, req, res, proto).catch((err: unknown) => this.failed(err, () => res.destroy()));
  }

  private failed(err: unknown, cleanup: () => void): void {
    this.d.logger.error({ err: String(err), stack: (err as Error)?.stack }, 'HTTP request handler failed');
    try { cleanup(); } catch { /* already gone */ }
  }
}

