// The agent's side of the CNI protocol: HTTP/1.1 over a unix socket that only
// root can reach (socket 0600 in a 0700 directory). The plugin is a short
// process per sandbox; everything stateful happens here.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { mkdir, unlink, chmod, stat } from 'node:fs/promises';
import { connect } from 'node:net';
import path from 'node:path';
import { CNI_API_PREFIX, DEFAULT_AGENT_SOCKET, type AgentReadyResponse, type CniDelRequest, type CniErrorBody, type CniGcRequest, type CniLogLine, type CniPodRequest } from '../cni/agent-protocol.js';
import { CniCode } from '../cni/spec.js';
import { CaptureError, type CaptureController, type ControllerLogger } from './capture-controller.js';

export interface CniServerOptions {
  controller: CaptureController;
  socketPath?: string;
  /** Extra readiness (installer chained, informers synced). The server adds "serving". */
  ready?: () => { ready: boolean; reason: string };
  logger?: ControllerLogger;
  /** Called with each request's route, outcome and duration (metrics). */
  onRequest?: (route: string, outcome: 'ok' | 'error', durationMs: number, cniCode?: number) => void;
}

const MAX_BODY = 1 << 20;
const NOOP: ControllerLogger = { debug() {}, info() {}, warn() {}, error() {} };

class BadRequest extends Error {}

function readJson(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) { reject(new BadRequest(`body larger than ${MAX_BODY} bytes`)); req.destroy(); return; }
      chunks.push(c);
    });
    req.on('error', reject);
    req.on('end', () => {
      try { resolve(JSON.parse(Buffer.concat(chunks).toString('utf8'))); } catch (e) { reject(new BadRequest(`body is not JSON: ${(e as Error).message}`)); }
    });
  });
}

function str(o: Record<string, unknown>, field: string, required: boolean): string | undefined {
  const v = o[field];
  if (v === undefined || v === null || v === '') {
    if (required) throw new BadRequest(`${field}: missing`);
    return undefined;
  }
  if (typeof v !== 'string') throw new BadRequest(`${field}: must be a string`);
  return v;
}

function podRequest(body: unknown, netnsRequired: boolean): CniPodRequest {
  if (typeof body !== 'object' || body === null) throw new BadRequest('body: must be an object');
  const o = body as Record<string, unknown>;
  const ips = o.ips ?? [];
  if (!Array.isArray(ips) || ips.some((x) => typeof x !== 'string')) throw new BadRequest('ips: must be a list of strings');
  const netns = str(o, 'netns', netnsRequired) ?? '';
  if (netns && !path.isAbsolute(netns)) throw new BadRequest('netns: must be an absolute path');
  return {
    containerId: str(o, 'containerId', true)!,
    ifName: str(o, 'ifName', true)!,
    netns,
    podNamespace: str(o, 'podNamespace', false),
    podName: str(o, 'podName', false),
    podUid: str(o, 'podUid', false),
    ips: ips as string[],
    cniVersion: str(o, 'cniVersion', false) ?? '',
    network: str(o, 'network', false) ?? '',
    runtimeConfig: typeof o.runtimeConfig === 'object' && o.runtimeConfig !== null ? o.runtimeConfig as Record<string, unknown> : undefined,
  };
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
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await chmod(dir, 0o700);
    await this.removeStaleSocket();
    const server = createServer((req, res) => { void this.handle(req, res); });
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
      const body = await this.route(req, route);
      this.send(res, 200, body);
      this.opts.onRequest?.(route, 'ok', Date.now() - started);
    } catch (e) {
      let status = 500;
      let err: CniErrorBody;
      if (e instanceof BadRequest) { status = 400; err = { cniCode: CniCode.invalidConfig, msg: `weir agent: bad ${route} request: ${e.message}` }; }
      else if (e instanceof CaptureError) {
        status = e.cniCode === CniCode.captureDrift ? 409 : e.cniCode === CniCode.tryAgainLater ? 503 : 422;
        err = { cniCode: e.cniCode, msg: e.message, details: e.details };
      } else if (e instanceof NotFound) { status = 404; err = { cniCode: CniCode.incompatibleVersion, msg: `weir agent: unknown route ${route} (plugin and agent versions differ?)` }; }
      else { err = { cniCode: CniCode.tryAgainLater, msg: `weir agent internal error: ${(e as Error).message}` }; this.log.error({ route, err: (e as Error).stack }, 'CNI request failed'); }
      if (!res.headersSent) this.send(res, status, err);
      this.opts.onRequest?.(route, 'error', Date.now() - started, err.cniCode);
    }
  }

  private async route(req: IncomingMessage, route: string): Promise<unknown> {
    const c = this.opts.controller;
    const p = CNI_API_PREFIX;
    if (req.method === 'GET' && route === `${p}/ready`) return this.readiness();
    if (req.method !== 'POST') throw new NotFound();
    switch (route) {
      case `${p}/cni/add`: return c.add(podRequest(await readJson(req), true));
      case `${p}/cni/check`: return c.check(podRequest(await readJson(req), true));
      case `${p}/cni/del`: {
        const r: CniDelRequest = podRequest(await readJson(req), false);
        await c.del(r);
        return {};
      }
      case `${p}/cni/gc`: {
        const body = await readJson(req) as Partial<CniGcRequest>;
        const valid = body?.validAttachments;
        if (!Array.isArray(valid) || valid.some((v) => typeof v?.containerId !== 'string' || typeof v?.ifName !== 'string')) {
          throw new BadRequest('validAttachments: must be a list of {containerId, ifName}');
        }
        return { removed: await c.gc(valid) };
      }
      case `${p}/log`: {
        const line = await readJson(req) as Partial<CniLogLine>;
        const level = line.level && ['debug', 'info', 'warn', 'error'].includes(line.level) ? line.level : 'info';
        this.log[level]({ source: 'weir-cni', containerId: line.containerId, podNamespace: line.podNamespace, podName: line.podName, ...line.fields }, String(line.msg ?? ''));
        return {};
      }
      default: throw new NotFound();
    }
  }
}

class NotFound extends Error {}
