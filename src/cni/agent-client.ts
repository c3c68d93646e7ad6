// The plugin's side of the agent protocol: one HTTP/1.1 request over the
// agent's unix socket, bounded by a deadline. Every way the agent can fail to
// answer (no socket, refused, timeout, garbage) becomes code 11 so the
// runtime retries instead of starting an uncaptured pod.
import { request } from 'node:http';
import { CNI_API_PREFIX, type CniErrorBody } from './agent-protocol.js';
import { CniCode, CniError } from './spec.js';

export interface AgentCallOptions {
  socketPath: string;
  timeoutMs: number;
}

export class AgentUnavailableError extends CniError {
  constructor(socketPath: string, why: string) {
    super(CniCode.tryAgainLater, `weir agent at ${socketPath} did not answer: ${why}; the runtime should retry once the weir agent is running`);
    this.name = 'AgentUnavailableError';
  }
}

/** POST (body) or GET (no body) `path` under /v1; resolves with the parsed 2xx body. */
export function callAgent<T>(opts: AgentCallOptions, path: string, body?: unknown): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = request({
      socketPath: opts.socketPath,
      path: CNI_API_PREFIX + path,
      method: payload === undefined ? 'GET' : 'POST',
      headers: payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
      agent: false,
    });
    const timer = setTimeout(() => {
      req.destroy();
      reject(new AgentUnavailableError(opts.socketPath, `no answer within ${opts.timeoutMs} ms`));
    }, opts.timeoutMs);
    const finish = (err: Error | undefined, value?: T) => {
      clearTimeout(timer);
      if (err) reject(err); else resolve(value as T);
    };
    req.on('error', (e: NodeJS.ErrnoException) => finish(new AgentUnavailableError(opts.socketPath, e.code ?? e.message)));
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', (e) => finish(new AgentUnavailableError(opts.socketPath, e.message)));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed: unknown;
        try {
          parsed = text === '' ? {} : JSON.parse(text);
        } catch {
          finish(new AgentUnavailableError(opts.socketPath, `unparseable answer (HTTP ${res.statusCode})`));
          return;
        }
        const status = res.statusCode ?? 0;
        if (status >= 200 && status < 300) { finish(undefined, parsed as T); return; }
        const e = parsed as Partial<CniErrorBody>;
        if (typeof e.cniCode === 'number' && typeof e.msg === 'string') finish(new CniError(e.cniCode, e.msg, e.details));
        else finish(new AgentUnavailableError(opts.socketPath, `HTTP ${status}`));
      });
    });
    req.end(payload);
  });
}
