// The node agent's side of the CA: forwards a pod's CSR with the agent's own
// (projected, rotating) service-account token, read afresh on every call.
// The CA's TLS certificate is verified against the mesh roots the agent was
// given (the trust bundle ConfigMap / file), never skipped.
import { request } from 'node:https';
import { readFile } from 'node:fs/promises';
import type { PodRef } from './node-auth.js';

export interface CaClientOptions {
  /** https://weir-ca.weir-system.svc:15012 */
  url: string;
  /** PEM roots that sign the CA's serving certificate. */
  rootsPem: string;
  /** File with the agent's service-account token (a projected token rotates: read each time). */
  tokenFile: string;
  /** SNI / name checked on the CA's certificate when `url` is an IP. */
  servername?: string;
  timeoutMs?: number;
}

export interface IssuedCertificate {
  spiffeId: string;
  notAfter: string;
  certChain: string[];
  roots: string[];
}

export class CaClientError extends Error {
  constructor(readonly status: number, readonly reason: string, message: string) {
    super(message);
    this.name = 'CaClientError';
  }
}

export class CaClient {
  constructor(private readonly opts: CaClientOptions) {}

  async sign(pod: PodRef, csrPem: string, ttlSeconds?: number): Promise<IssuedCertificate> {
    const token = (await readFile(this.opts.tokenFile, 'utf8')).trim();
    const body = JSON.stringify({ csr: csrPem, pod, ...(ttlSeconds ? { ttlSeconds } : {}) });
    const url = new URL('/v1/certificates', this.opts.url);
    const { status, json } = await new Promise<{ status: number; json: unknown }>((resolve, reject) => {
      const req = request(url, {
        method: 'POST', ca: this.opts.rootsPem, servername: this.opts.servername, minVersion: 'TLSv1.2',
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), authorization: `Bearer ${token}` },
        timeout: this.opts.timeoutMs ?? 10_000,
      }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          try {
            resolve({ status: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString('utf8')) });
          } catch {
            reject(new CaClientError(res.statusCode ?? 0, 'BadResponse', 'CA answered something that is not JSON'));
          }
        });
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(new CaClientError(0, 'Timeout', `CA did not answer within ${this.opts.timeoutMs ?? 10_000} ms`)));
      req.on('error', reject);
      req.end(body);
    });
    const j = json as Record<string, unknown>;
    if (status !== 200) throw new CaClientError(status, String(j.reason ?? 'Error'), String(j.error ?? `CA answered ${status}`));
    if (!Array.isArray(j.certChain) || typeof j.spiffeId !== 'string' || !Array.isArray(j.roots)) {
      throw new CaClientError(status, 'BadResponse', 'CA response lacks certChain/roots/spiffeId');
    }
    return j as unknown as IssuedCertificate;
  }
}
