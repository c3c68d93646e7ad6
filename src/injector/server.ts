// `weir injector`: the HTTPS endpoint the API server calls for every pod
// CREATE in a selected namespace. A handler never lets an exception out:
// a malformed review is a 400 naming the field, a bug is a 500 with the
// message, and the process keeps serving either way.
import * as https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../common/log.js';
import { review, reviewResponse, ReviewError } from './admission.js';
import type { InjectorConfig } from './config.js';
import type { ServingCerts } from './serving-certs.js';

export const MAX_REVIEW_BYTES = 16 << 20;

export interface InjectorServerOptions {
  host: string;
  port: number;
  config: () => InjectorConfig;
  certs: ServingCerts;
  logger: Logger;
}

export interface InjectorServer {
  port: number;
  counters: Record<string, number>;
  close(): Promise<void>;
}

class HttpError extends Error {
  constructor(readonly code: number, message: string) { super(message); }
}

function send(res: ServerResponse, code: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const ctype = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
  if (ctype !== 'application/json') throw new HttpError(415, `content-type must be application/json (got ${JSON.stringify(ctype)})`);
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of req) {
    n += (c as Buffer).length;
    if (n > MAX_REVIEW_BYTES) throw new HttpError(413, `AdmissionReview larger than ${MAX_REVIEW_BYTES} bytes`);
    chunks.push(c as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  try { return JSON.parse(text); } catch (err) { throw new HttpError(400, `body: not JSON: ${(err as Error).message}`); }
}

export async function startInjectorServer(o: InjectorServerOptions): Promise<InjectorServer> {
  const counters: Record<string, number> = {};
  const count = (k: string) => { counters[k] = (counters[k] ?? 0) + 1; };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method === 'GET' && (path === '/healthz' || path === '/readyz')) { send(res, 200, { ok: true }); return; }
    if (req.method === 'GET' && path === '/stats') { send(res, 200, { counters, certNotAfter: o.certs.current.notAfter }); return; }
    // Istio's path is /inject (revisions append /:ENV:… segments); accept both.
    if (path !== '/inject' && !path.startsWith('/inject/')) throw new HttpError(404, `no ${req.method} ${path} (the webhook is POST /inject)`);
    if (req.method !== 'POST') throw new HttpError(405, `${req.method} ${path}: use POST`);
    const body = await readJson(req);
    const out = review(body, o.config());
    const r = out.result;
    count(out.skipped ? 'skipped' : !out.response.allowed ? 'refused' : r?.injected ? 'injected' : `not-injected:${r?.reason}`);
    const req0 = (body as { request?: { namespace?: string; name?: string; uid?: string; object?: { metadata?: { name?: string; generateName?: string } } } }).request;
    o.logger.info({
      uid: req0?.uid, namespace: req0?.namespace, pod: req0?.object?.metadata?.name || req0?.object?.metadata?.generateName,
      injected: r?.injected ?? false, reason: out.skipped ?? r?.reason ?? out.response.status?.message,
    }, 'admission review');
    send(res, 200, reviewResponse(out.response));
  };

  const cert = o.certs.current;
  const server = https.createServer({ cert: cert.certPem, key: cert.keyPem, minVersion: 'TLSv1.2' }, (req, res) => {
    handle(req, res).catch((err: unknown) => {
      const code = err instanceof HttpError ? err.code : err instanceof ReviewError ? 400 : 500;
      count(`http-${code}`);
      if (code === 500) o.logger.error({ err: err instanceof Error ? err.stack : String(err) }, 'admission handler failed');
      else o.logger.warn({ code, err: (err as Error).message }, 'bad admission request');
      if (res.headersSent) { res.destroy(); return; }
      // Drain what the client still sends, or it sees a reset instead of our answer.
      req.resume();
      send(res, code, { error: (err as Error).message ?? String(err) });
    });
  });
  server.on('tlsClientError', (err) => o.logger.debug({ err: err.message }, 'TLS handshake failed'));
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  o.certs.onRenew((c) => server.setSecureContext({ cert: c.certPem, key: c.keyPem, minVersion: 'TLSv1.2' }));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: o.host, port: o.port }, () => { server.off('error', reject); resolve(); });
  });
  return {
    port: (server.address() as AddressInfo).port,
    counters,
    close: () => new Promise<void>((r) => { server.close(() => r()); server.closeAllConnections(); }),
  };
}
