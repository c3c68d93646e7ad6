// The few API calls the injector makes (its CA Secret, the webhook
// configuration's caBundle, the server version), as plain JSON requests
// authenticated by the kubeconfig — client-node's generated clients would
// pull their whole model layer in for four calls.
import * as http from 'node:http';
import * as https from 'node:https';
import type { KubeConfig } from '@kubernetes/client-node';

export class KubeApiError extends Error {
  constructor(readonly status: number, readonly what: string, body: string) {
    super(`${what}: HTTP ${status}${body ? `: ${body.slice(0, 300)}` : ''}`);
  }
}

export class KubeRest {
  constructor(private readonly kc: KubeConfig, private readonly timeoutMs = 10_000) {}

  async request<T>(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<{ status: number; body: T | undefined }> {
    const cluster = this.kc.getCurrentCluster();
    if (!cluster) throw new Error('kubeconfig has no current cluster');
    const url = new URL(path, cluster.server);
    const opts: https.RequestOptions = { method, headers: { accept: 'application/json' } };
    await this.kc.applyToHTTPSOptions(opts);
    const payload = body === undefined ? undefined : JSON.stringify(body);
    if (payload !== undefined) Object.assign(opts.headers!, { 'content-type': contentType, 'content-length': Buffer.byteLength(payload) });
    const mod = url.protocol === 'http:' ? http : https;
    return new Promise((resolve, reject) => {
      const req = mod.request(url, { ...opts, timeout: this.timeoutMs }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: T | undefined;
          try { parsed = text ? (JSON.parse(text) as T) : undefined; } catch { parsed = undefined; }
          const status = res.statusCode ?? 0;
          if (status >= 200 && status < 300) resolve({ status, body: parsed });
          else if (status === 404 || status === 409) resolve({ status, body: undefined });
          else reject(new KubeApiError(status, `${method} ${path}`, text));
        });
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(new Error(`${method} ${path}: timed out after ${this.timeoutMs} ms`)));
      req.on('error', reject);
      req.end(payload);
    });
  }

  /** Native sidecars need the API server to be ≥ 1.29. */
  async serverVersion(): Promise<{ major: string; minor: string; gitVersion?: string }> {
    const r = await this.request<{ major: string; minor: string; gitVersion?: string }>('GET', '/version');
    if (!r.body?.major || !r.body.minor) throw new Error('GET /version: no major/minor in the answer');
    return r.body;
  }
}
