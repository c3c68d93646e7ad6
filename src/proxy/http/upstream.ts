// Connection pools to upstream endpoints and one request exchange over
// them. HTTP/1.1: a keep-alive agent per source address (LIFO, so the
// socket reused is the one most recently proven alive). HTTP/2: one
// multiplexed session per endpoint, used only once the peer's SETTINGS
// arrived — a peer that answers the preface with anything else does not
// speak h2c (an app without a weir proxy), and is remembered as HTTP/1.1
// for a while. Failures are classified the way the retry policy needs them.
import http, { type IncomingMessage } from 'node:http';
import http2, { type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders } from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import type { RegistryEndpoint } from '../../controlplane/types.js';
import type { Readable, Writable } from 'node:stream';
import { hostPort } from '../addr.js';

export type UpstreamProtocol = 'h1' | 'h2';

export interface UpstreamHead {
  method: string;
  path: string;
  authority: string;
  headers: Record<string, string | string[]>;
}

export interface UpstreamResponse {
  status: number;
  headers: Record<string, string | string[]>;
  body: Readable;
  /** Trailers, once the body ended (empty if none). */
  trailers(): Record<string, string | string[]>;
}

export interface Exchange {
  sink: Writable;
  response: Promise<UpstreamResponse>;
  /** Cancel: RST_STREAM(CANCEL) on h2, the connection closed on HTTP/1.1. */
  abort(): void;
  localAddress(): string | undefined;
}

/** connect: never reached the endpoint; refused-stream: h2 refused it unprocessed; stale: a kept-alive connection closed under the request before any response; reset: anything after the request went out. */
export type FailureKind = 'connect' | 'refused-stream' | 'stale' | 'reset' | 'h2-unsupported';

export class UpstreamError extends Error {
  constructor(readonly kind: FailureKind, readonly code: string, message: string) { super(message); }
}

export interface Endpoint { ip: string; port: number; endpoint?: RegistryEndpoint }
export type MeshTls = (ep: Endpoint, proto: UpstreamProtocol) => tls.ConnectionOptions | undefined;

const H2_UNSUPPORTED_MS = 60_000;
/** How long a new h2c connection may wait for the peer's SETTINGS before the endpoint counts as not speaking h2c. */
const SETTINGS_WAIT_MS = 3000;

export class UpstreamPools {
  private readonly agents = new Map<string, http.Agent>();
  private readonly sessions = new Map<string, Promise<ClientHttp2Session>>();
  private readonly noH2 = new Map<string, number>();

  /** Requests per connection so far (maxRequestsPerConnection: a connection is retired after that many). */
  private readonly uses = new WeakMap<object, number>();

  /** `meshTls`: TLS options for an endpoint that gets auto mTLS (src/proxy/mtls/outbound.ts), undefined = plaintext. */
  constructor(private readonly connectTimeoutMs: number, private readonly idleTimeoutMs: number, private readonly maxRequestsPerConnection?: number, private readonly meshTls?: MeshTls) {}

  /** Count one request on a connection; true when it is the connection's last. */
  private spent(conn: object): boolean {
    if (this.maxRequestsPerConnection === undefined) return false; // no limit: nothing to count per request
    const n = (this.uses.get(conn) ?? 0) + 1;
    this.uses.set(conn, n);
    return this.maxRequestsPerConnection !== undefined && n >= this.maxRequestsPerConnection;
  }

  /** Whether an endpoint is known not to speak h2c (recently failed the preface). */
  h2Refused(ep: Endpoint): boolean {
    const until = this.noH2.get(hostPort(ep.ip, ep.port));
    return until !== undefined && until > Date.now();
  }

  open(proto: UpstreamProtocol, ep: Endpoint, head: UpstreamHead, opts: { localAddress?: string; fresh?: boolean }): Promise<Exchange> {
    return proto === 'h2' ? this.openH2(ep, head, opts.localAddress) : Promise.resolve(this.openH1(ep, head, opts.localAddress, opts.fresh === true));
  }

  stats(): { h1Agents: number; h2Sessions: number; h2RefusedEndpoints: number } {
    return { h1Agents: this.agents.size, h2Sessions: this.sessions.size, h2RefusedEndpoints: [...this.noH2.values()].filter((t) => t > Date.now()).length };
  }

  close(): void {
    for (const a of this.agents.values()) a.destroy();
    for (const s of this.sessions.values()) void s.then((x) => x.destroy(), () => {});
  }

  private agent(localAddress: string | undefined, mtls?: tls.ConnectionOptions): http.Agent {
    // mTLS connections pool apart: a kept-alive plaintext socket must never carry a request meant for mTLS.
    const k = `${localAddress ?? ''}${mtls ? '|mtls' : ''}`;
    let a = this.agents.get(k);
    if (!a) {
      a = new http.Agent({ keepAlive: true, scheduling: 'lifo', maxSockets: Infinity, timeout: this.idleTimeoutMs });
      if (mtls) withMeshTls(a);
      this.agents.set(k, a);
    }
    return a;
  }

  private openH1(ep: Endpoint, head: UpstreamHead, localAddress: string | undefined, fresh: boolean): Exchange {
    const mtls = this.meshTls?.(ep, 'h1');
    const req = http.request({
      host: ep.ip, port: ep.port, method: head.method, path: head.path, localAddress,
      headers: { ...head.headers, host: head.authority }, setHost: false,
      // The one retry after a stale keep-alive connection goes on a connection of its own.
      agent: fresh ? (mtls ? withMeshTls(new http.Agent()) : false) : this.agent(localAddress, mtls),
      ...(mtls ? { [MESH_TLS]: mtls } : {}),
    });
    req.setNoDelay(true);
    let connected = false;
    let gotResponse = false;
    req.on('socket', (s: net.Socket) => {
      // The last request a connection may carry: retire it once the response is read (the agent forgets closed sockets).
      if (this.spent(s)) req.once('response', (res: IncomingMessage) => res.once('end', () => s.destroy()));
      if (!s.connecting) { connected = true; return; }
      const t = setTimeout(() => s.destroy(Object.assign(new Error(`connect to ${hostPort(ep.ip, ep.port)} timed out`), { code: 'ETIMEDOUT' })), this.connectTimeoutMs);
      s.once('connect', () => { connected = true; clearTimeout(t); });
      s.once('close', () => clearTimeout(t));
    });
    const response = new Promise<UpstreamResponse>((resolve, reject) => {
      req.once('response', (res: IncomingMessage) => {
        gotResponse = true;
        resolve({ status: res.statusCode ?? 502, headers: res.headers as Record<string, string | string[]>, body: res, trailers: () => res.trailers as Record<string, string> });
      });
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (gotResponse) return;
        const code = err.code ?? 'ERR';
        if (!connected) reject(new UpstreamError('connect', code, err.message));
        else if (req.reusedSocket) reject(new UpstreamError('stale', code, err.message));
        else reject(new UpstreamError('reset', code, err.message));
      });
    });
    response.catch(() => {});
    return { sink: req, response, abort: () => req.destroy(), localAddress: () => req.socket?.localAddress ? hostPort(req.socket.localAddress, req.socket.localPort ?? 0) : undefined };
  }

  private session(ep: Endpoint, localAddress: string | undefined): Promise<ClientHttp2Session> {
    const mtls = this.meshTls?.(ep, 'h2');
    const k = `${hostPort(ep.ip, ep.port)}|${localAddress ?? ''}${mtls ? '|mtls' : ''}`;
    const have = this.sessions.get(k);
    if (have) return have;
    const p = new Promise<ClientHttp2Session>((resolve, reject) => {
      let connected = false;
      let settings = false;
      const s = http2.connect(`http://${hostPort(ep.ip, ep.port)}`, {
        createConnection: () => (mtls ? tls.connect({ ...mtls, host: ep.ip, port: ep.port, localAddress } as tls.ConnectionOptions) : net.connect({ host: ep.ip, port: ep.port, localAddress, noDelay: true })),
        // Generous windows: a proxy must not be the flow-control bottleneck, but stays bounded.
        settings: { initialWindowSize: 1 << 20, enablePush: false },
      });
      let timer = setTimeout(() => s.destroy(Object.assign(new Error('h2 connect timed out'), { code: 'ETIMEDOUT' })), this.connectTimeoutMs);
      s.once('connect', () => {
        connected = true;
        // A weir peer answers the preface with SETTINGS at once; silence means something else is listening.
        clearTimeout(timer);
        timer = setTimeout(() => s.destroy(), Math.min(this.connectTimeoutMs, SETTINGS_WAIT_MS));
      });
      s.once('remoteSettings', () => { settings = true; clearTimeout(timer); s.setLocalWindowSize?.(8 << 20); resolve(s); });
      const forget = () => { if (this.sessions.get(k) === p) this.sessions.delete(k); };
      s.on('goaway', forget);
      s.on('error', () => {});
      s.once('close', () => {
        clearTimeout(timer);
        forget();
        if (settings) return;
        if (connected) {
          this.noH2.set(hostPort(ep.ip, ep.port), Date.now() + H2_UNSUPPORTED_MS);
          reject(new UpstreamError('h2-unsupported', 'EPROTO', `${hostPort(ep.ip, ep.port)} does not speak h2c`));
        } else {
          reject(new UpstreamError('connect', 'ECONNFAILED', `connect to ${hostPort(ep.ip, ep.port)} failed`));
        }
      });
      // The connect error itself (ECONNREFUSED...) for a better message.
      s.once('error', (err: NodeJS.ErrnoException) => {
        if (!connected) { forget(); reject(new UpstreamError('connect', err.code ?? 'ECONNFAILED', err.message)); }
      });
      s.setTimeout(this.idleTimeoutMs, () => s.close());
    });
    p.catch(() => {});
    this.sessions.set(k, p);
    return p;
  }

  private async openH2(ep: Endpoint, head: UpstreamHead, localAddress: string | undefined): Promise<Exchange> {
    const session = await this.session(ep, localAddress);
    if (this.spent(session)) {
      // Its last stream: no new ones go on it; it closes once the open streams finish.
      this.sessions.delete(`${hostPort(ep.ip, ep.port)}|${localAddress ?? ''}`);
      setImmediate(() => session.close());
    }
    let stream: ClientHttp2Stream;
    try {
      stream = session.request({ ...head.headers, ':method': head.method, ':path': head.path, ':authority': head.authority, ':scheme': 'http' }, { endStream: false });
    } catch (err) {
      // The session went away between the pool lookup and now: nothing was sent.
      throw new UpstreamError('refused-stream', (err as NodeJS.ErrnoException).code ?? 'ERR_HTTP2', String(err));
    }
    let trailers: Record<string, string | string[]> = {};
    let gotResponse = false;
    stream.on('trailers', (t: IncomingHttpHeaders) => { trailers = stripPseudo(t); });
    const response = new Promise<UpstreamResponse>((resolve, reject) => {
      stream.once('response', (h: IncomingHttpHeaders) => {
        gotResponse = true;
        resolve({ status: Number(h[':status'] ?? 502), headers: stripPseudo(h), body: stream, trailers: () => trailers });
      });
      const fail = (err?: NodeJS.ErrnoException) => {
        if (gotResponse) return;
        const refused = stream.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM || err?.code === 'ERR_HTTP2_GOAWAY_SESSION';
        reject(new UpstreamError(refused ? 'refused-stream' : 'reset', err?.code ?? `RST_STREAM(${stream.rstCode})`, err?.message ?? `stream reset (code ${stream.rstCode})`));
      };
      stream.on('error', fail);
      stream.once('close', () => fail());
    });
    response.catch(() => {});
    const sock = session.socket;
    return {
      sink: stream, response,
      abort: () => { if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_CANCEL); },
      localAddress: () => (sock?.localAddress ? hostPort(sock.localAddress, sock.localPort ?? 0) : undefined),
    };
  }
}

export function stripPseudo(h: IncomingHttpHeaders | Record<string, unknown>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const k in h) {
    const v = (h as Record<string, unknown>)[k];
    if (k.charCodeAt(0) !== 58 /* : */ && v !== undefined && Object.prototype.hasOwnProperty.call(h, k)) out[k] = v as string | string[];
  }
  return out;
}

/** Request option carrying the mTLS settings to the agent's socket factory. */
const MESH_TLS = 'weirMeshTls';

/** An agent whose sockets are mesh mTLS when the request carries MESH_TLS options (plaintext otherwise). */
function withMeshTls(a: http.Agent): http.Agent {
  const plain = a.createConnection.bind(a);
  (a as unknown as { createConnection: (o: Record<string, unknown>, cb: unknown) => net.Socket }).createConnection = (o, cb) => {
    const m = o[MESH_TLS] as tls.ConnectionOptions | undefined;
    return m ? tls.connect({ ...m, host: o.host as string, port: o.port as number, localAddress: o.localAddress as string | undefined } as tls.ConnectionOptions) : (plain as (o: unknown, cb: unknown) => net.Socket)(o, cb);
  };
  return a;
}
