// The agent's side of the CNI protocol: HTTP/1.1 over a unix socket that only
// root can reach (the socket is 0600). Its directory is the agent's run dir,
// which also holds proxy.sock for the proxies (UID 1337, which mount it), so
// the directory stays traversable (0755) and each socket carries its own mode.
// The plugin is a short process per sandbox (a C relay whose invocations run
// here, through /v1/cni/exec); everything stateful happens here.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { mkdir, unlink, chmod, stat } from 'node:fs/promises';
import { connect } from 'node:net';
import path from 'node:path';
import { CNI_API_PREFIX, DEFAULT_AGENT_SOCKET, type AgentReadyResponse, type CniDelRequest, type CniErrorBody, type CniLogLine } from '../cni/agent-protocol.js';
import { CniCode, CniError, LATEST_VERSION, errorJson, inputTooLarge } from '../cni/spec.js';
import { onClientError } from '../common/bad-peer.js';
import { BadRequest, execRequest, gcRequest, logLine, podRequest, MAX_EXEC_BODY_BYTES, MAX_OP_BODY_BYTES } from './cni-requests.js';
import { runPlugin } from '../cni/plugin.js';
import { PluginLog } from '../cni/plugin-log.js';
import type { CaptureController, ControllerLogger } from './capture-controller.js';

export interface CniServerOptions {
  controller: CaptureController;
  socketPath?: string;
  /** Extra readiness (installer chained, informers synced). The server adds "serving". */
  ready?: () => { ready: boolean; reason: string };
  logger?: ControllerLogger;
  /** Called with each request's route, outcome and duration (metrics). */
  onRequest?: (route: string, outcome: 'ok' | 'error', durationMs: number, cniCode?: number) => void;
  /** Called for each malformed request (bad HTTP, bad JSON, a body that fails its schema): weir_agent_bad_peer_messages_total. */
  onBadPeer?: (reason: string) => void;
}

const NOOP: ControllerLogger = { debug() {}, info() {}, warn() {}, error() {} };

class TooLarge extends BadRequest {}

/** Reads a JSON body up to `limit` bytes; past it, stops buffering (the rest is drained, not kept) and fails with TooLarge. */
function readJson(req: IncomingMessage, limit: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        chunks.length = 0;
        reject(new TooLarge(`body larger than ${limit} bytes`));
        return;
      }
      chunks.push(c);
    });
    req.on('error', reject);
    req.on('end', () => {
      if (size > limit) return;
      try { resolve(JSON.parse(Buffer.concat(chunks).toString('utf8'))); } catch (e) { reject(new BadRequest(`body is not JSON: ${(e as Error).message}`)); }
    });
  });
}

export class CniServer {
  readonly socketPath: string;
  private readonly opts: CniServerOptions;
  private readonly log: ControllerLogger;
  private server?: Server;
  private serving = false;

  constructor(opts: CniServerOptions) {
    this.opts = opts;
    this.socketPath = opts.socketPath ?? DEFAULT_AGENT_SOCKET;
    this.log = opts.logger ?? NOOP;
  }

  isServing(): boolean {
    return this.serving;
  }

  readiness(): AgentReadyResponse {
    if (!this.serving) return { ready: false, reason: 'CNI server not serving' };
    return this.opts.ready?.() ?? { ready: true, reason: 'serving' };
  }

  async start(): Promise<void> {
    const dir = path.dirname(this.socketPath);
    await mkdir(dir, { recursive: true, mode: 0o755 });
    await chmod(dir, 0o755);
    await this.removeStaleSocket();
    const server = createServer((req, res) => {
      this.handle(req, res).catch((e: unknown) => {
        // handle() answers every error itself; reaching here is a bug: log it, drop this one request only.
        this.log.error({ err: (e as Error)?.stack ?? String(e) }, 'CNI request handler failed');
        res.destroy();
      });
    });
    // Garbage that is not HTTP: count it and close that connection only.
    server.on('clientError', onClientError((r) => this.opts.onBadPeer?.(r)));
    // Plugins send one request per connection; keep-alive only wastes fds.
    server.keepAliveTimeout = 1000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.socketPath, () => { server.off('error', reject); resolve(); });
    });
    await chmod(this.socketPath, 0o600);
    this.server = server;
    this.serving = true;
    this.log.info({ socket: this.socketPath }, 'CNI server listening');
  }

  /** A socket file left by a dead agent is removed; a live one means another agent runs: refuse. */
  private async removeStaleSocket(): Promise<void> {
    try {
      const st = await stat(this.socketPath);
      if (!st.isSocket()) throw new Error(`${this.socketPath} exists and is not a socket`);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw e;
    }
    const live = await new Promise<boolean>((resolve) => {
      const s = connect(this.socketPath);
      s.once('connect', () => { s.destroy(); resolve(true); });
      s.once('error', () => resolve(false));
    });
    if (live) throw new Error(`${this.socketPath}: another agent is serving on this socket`);
    await unlink(this.socketPath);
  }

  /** Stop accepting, let in-flight requests finish, remove the socket. */
  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.serving = false;
    this.server = undefined;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeIdleConnections();
    });
    await unlink(this.socketPath).catch(() => undefined);
  }

  private send(res: ServerResponse, status: number, body: unknown): void {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), connection: 'close' });
    res.end(text);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = Date.now();
    const route = (req.url ?? '').split('?')[0];
    try {
      if (req.method === 'POST' && route === `${CNI_API_PREFIX}/cni/exec`) { await this.exec(req, res); return; }
      const body = await this.route(req, route);
      this.send(res, 200, body);
      this.opts.onRequest?.(route, 'ok', Date.now() - started);
    } catch (e) {
      let status = 500;
      let err: CniErrorBody;
      if (e instanceof BadRequest) this.opts.onBadPeer?.(e.message);
      if (e instanceof TooLarge) { status = 413; err = { cniCode: CniCode.invalidEnv, msg: `weir agent: ${route} request ${e.message}` }; }
      else if (e instanceof BadRequest) { status = 400; err = { cniCode: CniCode.invalidConfig, msg: `weir agent: bad ${route} request: ${e.message}` }; }
      else if (e instanceof CniError) {
        status = e.code === CniCode.captureDrift ? 409 : e.code === CniCode.tryAgainLater ? 503 : 422;
        err = { cniCode: e.code, msg: e.message, details: e.details };
      } else if (e instanceof NotFound) { status = 404; err = { cniCode: CniCode.incompatibleVersion, msg: `weir agent: unknown route ${route} (plugin and agent versions differ?)` }; }
      else { err = { cniCode: CniCode.tryAgainLater, msg: `weir agent internal error: ${(e as Error).message}` }; this.log.error({ route, err: (e as Error).stack }, 'CNI request failed'); }
      if (!res.headersSent) this.send(res, status, err);
      this.opts.onRequest?.(route, 'error', Date.now() - started, err.cniCode);
    }
  }

  private async route(req: IncomingMessage, route: string): Promise<unknown> {
    const p = CNI_API_PREFIX;
    if (!route.startsWith(`${p}/`)) throw new NotFound();
    const op = route.slice(p.length);
    if (op === '/ready') {
      if (req.method !== 'GET') throw new NotFound();
      return this.readiness();
    }
    if (req.method !== 'POST') throw new NotFound();
    return this.dispatch(op, await readJson(req, MAX_OP_BODY_BYTES));
  }

  /** One protocol operation: shared by the HTTP routes and by the in-process calls made while serving /v1/cni/exec. */
  private async dispatch(op: string, body: unknown): Promise<unknown> {
    const c = this.opts.controller;
    switch (op) {
      case '/ready': return this.readiness();
      case '/cni/add': return c.add(podRequest(body, true));
      case '/cni/check': return c.check(podRequest(body, true));
      case '/cni/del': {
        const r: CniDelRequest = podRequest(body, false);
        await c.del(r);
        return {};
      }
      case '/cni/gc': return { removed: await c.gc(gcRequest(body).validAttachments) };
      case '/log': {
        this.relog(logLine(body));
        return {};
      }
      default: throw new NotFound();
    }
  }

  private relog(line: CniLogLine): void {
    this.log[line.level]({ ...line.fields, source: 'weir-cni', containerId: line.containerId, podNamespace: line.podNamespace, podName: line.podName }, line.msg);
  }

  /**
   * POST /v1/cni/exec: one whole plugin invocation relayed by the C weir-cni
   * (cni/relay/weir-cni.c): `{env: {CNI_*: string}, stdin: string}`. The
   * plugin logic (src/cni/plugin.ts: validation, versions, errors naming
   * fields) runs here, in-process, so the executable a runtime starts per
   * sandbox stays a few-ms C program. Answer: the plugin's stdout as the body,
   * its exit code in `x-weir-exit-code`.
   */
  private async exec(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let body: unknown;
    try {
      body = await readJson(req, MAX_EXEC_BODY_BYTES);
    } catch (e) {
      if (!(e instanceof TooLarge)) throw e;
      // Answered as the plugin's own result (exit 1, code 4 naming the limit), so the relay prints it instead of "did not answer".
      this.opts.onBadPeer?.(e.message);
      const text = errorJson(LATEST_VERSION, inputTooLarge(`more than ${MAX_EXEC_BODY_BYTES} body`));
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'x-weir-exit-code': '1', connection: 'close' });
      res.end(text);
      return;
    }
    const { env, stdin } = execRequest(body);
    const log = new PluginLog((line) => this.relog(line));
    const outcome = await runPlugin(env, stdin, log, <T>(_opts: unknown, op: string, b?: unknown) => this.inProcess<T>(op, b));
    const text = outcome.stdout;
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'x-weir-exit-code': String(outcome.exitCode), connection: 'close' });
    res.end(text);
  }

  /** An operation called by the in-process plugin logic: errors become the CniErrors the plugin would have decoded from HTTP. */
  private async inProcess<T>(op: string, body: unknown): Promise<T> {
    const started = Date.now();
    const route = `${CNI_API_PREFIX}${op}`;
    try {
      const r = await this.dispatch(op, body ?? {}) as T;
      if (op !== '/log') this.opts.onRequest?.(route, 'ok', Date.now() - started);
      return r;
    } catch (e) {
      const err = e instanceof CniError ? e
        : e instanceof BadRequest ? new CniError(CniCode.invalidConfig, `weir agent: bad ${route} request: ${e.message}`)
        : new CniError(CniCode.tryAgainLater, `weir agent internal error: ${(e as Error).message}`);
      if (!(e instanceof CniError) && !(e instanceof BadRequest)) this.log.error({ route, err: (e as Error).stack }, 'CNI request failed');
      this.opts.onRequest?.(route, 'error', Date.now() - started, err.code);
      throw err;
    }
  }
}

class NotFound extends Error {}
