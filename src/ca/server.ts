// `weir ca`'s HTTPS API. One call does the work:
//   POST /v1/certificates   Authorization: Bearer <node agent's token>
//     {"csr": PEM, "pod": {"namespace", "name", "uid"?}, "ttlSeconds"?}
//   → 200 {"certChain": [leaf, intermediates…], "roots": [PEM], "spiffeId", "notAfter"}
//   → 400/401/403/404/503 {"error", "reason", "field"?}
//   GET /v1/roots (the trust bundle), GET /healthz/ready, GET /metrics.
// The serving certificate is issued by the CA itself for the Service's DNS
// names and re-issued at half-life; no handler lets an exception escape.
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { webcrypto } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { Counter, Registry } from 'prom-client';
import { FieldError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { checkCsr } from './csr.js';
import { CaRequestError, type Caller, type IssuedIdentity, type PodRef } from './node-auth.js';
import { WORKLOAD_KEY, certToPem, keyToPem, signLeaf, type CaMaterial } from './pki.js';

export const MAX_REQUEST_BYTES = 64 * 1024;

export interface Authority {
  authenticate(token: string): Promise<Caller>;
  authorize(caller: Caller, target: PodRef): Promise<IssuedIdentity>;
}

export interface CaServerOptions {
  authority: Authority;
  material: CaMaterial;
  host: string;
  port: number;
  /** Names on the serving certificate (the Service's DNS names, loopback for tests). */
  dnsNames: string[];
  ips?: string[];
  /** Default workload certificate lifetime (Istio: 24 h) and the most a request may ask for. */
  certTtlMs: number;
  maxCertTtlMs: number;
  logger: Logger;
}

interface CertificateRequest { csr: string; pod: PodRef; ttlSeconds?: number }

const NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

function parseRequest(body: unknown): CertificateRequest {
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw new FieldError('body', 'must be a JSON object');
  const b = body as Record<string, unknown>;
  if (typeof b.csr !== 'string') throw new FieldError('csr', 'must be a PEM string');
  const pod = b.pod as Record<string, unknown> | undefined;
  if (!pod || typeof pod !== 'object' || Array.isArray(pod)) throw new FieldError('pod', 'must be an object {namespace, name, uid?}');
  for (const k of ['namespace', 'name'] as const) {
    if (typeof pod[k] !== 'string' || !NAME.test(pod[k] as string)) throw new FieldError(`pod.${k}`, 'must be a DNS-1123 name', String(pod[k]));
  }
  if (pod.uid !== undefined && (typeof pod.uid !== 'string' || pod.uid.length > 64)) throw new FieldError('pod.uid', 'must be a string');
  if (b.ttlSeconds !== undefined && (!Number.isInteger(b.ttlSeconds) || (b.ttlSeconds as number) < 60)) {
    throw new FieldError('ttlSeconds', 'must be an integer ≥ 60', String(b.ttlSeconds));
  }
  return { csr: b.csr, pod: { namespace: pod.namespace as string, name: pod.name as string, uid: pod.uid as string | undefined }, ttlSeconds: b.ttlSeconds as number | undefined };
}

export class CaServer {
  readonly metrics = new Registry();
  private readonly issued = new Counter({ name: 'weir_ca_certificates_issued_total', help: 'Workload certificates issued', registers: [this.metrics] });
  private readonly refused = new Counter({ name: 'weir_ca_requests_refused_total', help: 'Certificate requests refused, by reason', labelNames: ['reason'], registers: [this.metrics] });
  private server?: Server;
  private rotateTimer?: NodeJS.Timeout;

  private constructor(private readonly opts: CaServerOptions) {}

  static async start(opts: CaServerOptions): Promise<CaServer> {
    const ca = new CaServer(opts);
    const tls = await ca.servingCredentials();
    ca.server = createServer({ ...tls, minVersion: 'TLSv1.2' }, (req, res) => { void ca.handle(req, res); });
    ca.server.requestTimeout = 10_000;
    ca.server.headersTimeout = 5_000;
    ca.server.on('tlsClientError', () => { /* a bad handshake is the peer's problem, not the CA's */ });
    await new Promise<void>((resolve, reject) => {
      ca.server!.once('error', reject);
      ca.server!.listen(opts.port, opts.host, () => resolve());
    });
    ca.scheduleRotation(tls.notAfter);
    return ca;
  }

  get port(): number { return (this.server!.address() as AddressInfo).port; }

  /** The trust bundle as PEM (what a client uses to verify this server and the mesh). */
  rootsPem(): string { return this.opts.material.roots.map(certToPem).join(''); }

  async close(): Promise<void> {
    if (this.rotateTimer) clearTimeout(this.rotateTimer);
    const s = this.server;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  private async servingCredentials(): Promise<{ key: string; cert: string; notAfter: Date }> {
    const keys = await webcrypto.subtle.generateKey(WORKLOAD_KEY, true, ['sign', 'verify']) as CryptoKeyPair;
    const leaf = await signLeaf(this.opts.material, {
      publicKey: keys.publicKey as unknown as CryptoKey,
      dnsNames: this.opts.dnsNames, ips: this.opts.ips,
      notAfter: new Date(Date.now() + 24 * 3_600_000),
    });
    const cert = [leaf, ...this.opts.material.chain].map(certToPem).join('');
    return { key: await keyToPem(keys.privateKey as unknown as CryptoKey), cert, notAfter: leaf.notAfter };
  }

  private scheduleRotation(notAfter: Date): void {
    const halfLife = Math.max(60_000, (notAfter.getTime() - Date.now()) / 2);
    this.rotateTimer = setTimeout(() => {
      this.servingCredentials().then((tls) => {
        this.server?.setSecureContext({ key: tls.key, cert: tls.cert });
        this.scheduleRotation(tls.notAfter);
      }, (e: unknown) => {
        this.opts.logger.error({ err: String(e) }, 'serving certificate rotation failed; retrying in 1 min');
        this.rotateTimer = setTimeout(() => this.scheduleRotation(new Date(Date.now() + 120_000)), 60_000).unref();
      });
    }, Math.min(halfLife, 2 ** 31 - 1)).unref();
  }

  private send(res: ServerResponse, code: number, body: unknown, type = 'application/json'): void {
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    if (res.headersSent) { res.end(); return; }
    res.writeHead(code, { 'content-type': type, 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }

  private async readJson(req: IncomingMessage): Promise<unknown> {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const c of req) {
      size += (c as Buffer).length;
      if (size > MAX_REQUEST_BYTES) throw new FieldError('body', `larger than ${MAX_REQUEST_BYTES} bytes`);
      chunks.push(c as Buffer);
    }
    try {
      return JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      throw new FieldError('body', 'not valid JSON');
    }
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const path = (req.url ?? '/').split('?')[0];
      if (req.method === 'GET' && path === '/healthz/ready') return this.send(res, 200, 'ok\n', 'text/plain');
      if (req.method === 'GET' && path === '/v1/roots') return this.send(res, 200, { roots: this.opts.material.roots.map(certToPem) });
      if (req.method === 'GET' && path === '/metrics') return this.send(res, 200, await this.metrics.metrics(), this.metrics.contentType);
      if (path === '/v1/certificates') {
        if (req.method !== 'POST') return this.send(res, 405, { error: 'use POST', reason: 'MethodNotAllowed' });
        return this.send(res, 200, await this.issue(req));
      }
      return this.send(res, 404, { error: `no such path ${path}`, reason: 'NotFound' });
    } catch (e) {
      this.refuse(res, e);
    }
  }

  private async issue(req: IncomingMessage): Promise<object> {
    const auth = req.headers.authorization ?? '';
    const token = /^Bearer\s+(\S+)$/i.exec(auth)?.[1] ?? '';
    // Authenticate before reading the body: an anonymous peer costs no parsing.
    const caller = await this.opts.authority.authenticate(token);
    const body = parseRequest(await this.readJson(req));
    const identity = await this.opts.authority.authorize(caller, body.pod);
    const csr = await checkCsr(body.csr, 'csr');
    const asked = csr.requestedUris;
    if (asked.length > 0 && (asked.length !== 1 || asked[0] !== identity.spiffeId)) {
      throw new CaRequestError(403, 'CsrIdentityMismatch', `csr: asks for ${asked.join(', ')}, but pod ${body.pod.namespace}/${body.pod.name} is ${identity.spiffeId}`);
    }
    const ttl = Math.min(body.ttlSeconds ? body.ttlSeconds * 1000 : this.opts.certTtlMs, this.opts.maxCertTtlMs);
    const leaf = await signLeaf(this.opts.material, { publicKey: csr.publicKey, uris: [identity.spiffeId], notAfter: new Date(Date.now() + ttl) });
    this.issued.inc();
    this.opts.logger.info({ spiffeId: identity.spiffeId, pod: `${body.pod.namespace}/${body.pod.name}`, node: caller.nodeName, serial: leaf.serialNumber, notAfter: leaf.notAfter.toISOString() }, 'certificate issued');
    return {
      spiffeId: identity.spiffeId,
      notAfter: leaf.notAfter.toISOString(),
      certChain: [leaf, ...this.opts.material.chain].map(certToPem),
      roots: this.opts.material.roots.map(certToPem),
    };
  }

  private refuse(res: ServerResponse, e: unknown): void {
    let code: number; let reason: string; let field: string | undefined;
    if (e instanceof CaRequestError) { code = e.status; reason = e.reason; }
    else if (e instanceof FieldError) { code = 400; reason = 'BadRequest'; field = e.field; }
    else { code = 500; reason = 'Internal'; }
    const message = e instanceof Error ? e.message : String(e);
    this.refused.inc({ reason });
    this.opts.logger.warn({ reason, code, err: message }, 'certificate request refused');
    this.send(res, code, { error: code === 500 ? 'internal error' : message, reason, ...(field ? { field } : {}) });
  }
}
