// The plugin's side of the agent protocol: one HTTP/1.1 request over the
// agent's unix socket, bounded by a deadline. Every way the agent can fail to
// answer (no socket, refused, timeout, garbage) becomes code 11 so the
// runtime retries instead of starting an uncaptured pod.
import { connect } from 'node:net';
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

/** The parts of an HTTP/1.1 answer the protocol uses. */
export interface AgentHttpAnswer { status: number; body: string }

/**
 * Parses a complete HTTP/1.1 response (the agent always sends
 * content-length and closes). Anything else is reported, not guessed at.
 */
export function parseHttpAnswer(raw: Buffer): AgentHttpAnswer {
  const headEnd = raw.indexOf('\r\n\r\n');
  if (headEnd < 0) throw new Error('incomplete HTTP answer (no end of headers)');
  const head = raw.subarray(0, headEnd).toString('latin1').split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(head[0] ?? '');
  if (!m) throw new Error(`not an HTTP answer: ${JSON.stringify((head[0] ?? '').slice(0, 40))}`);
  let length: number | undefined;
  for (const line of head.slice(1)) {
    const colon = line.indexOf(':');
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (name === 'content-length') length = Number(value);
    if (name === 'transfer-encoding' && value.toLowerCase() !== 'identity') throw new Error(`unsupported transfer-encoding ${value}`);
  }
  const body = raw.subarray(headEnd + 4);
  if (length !== undefined && (!Number.isInteger(length) || body.length < length)) throw new Error(`truncated HTTP answer (${body.length} of ${length} bytes)`);
  return { status: Number(m[1]), body: body.subarray(0, length ?? body.length).toString('utf8') };
}

/**
 * POST (body) or GET (no body) `path` under /v1; resolves with the parsed 2xx
 * body. A hand-written HTTP/1.1 exchange on a plain socket instead of
 * node:http: loading and first-running node:http costs the plugin several ms
 * per sandbox (measured in bench/results/cni-add.md), and the exchange is one
 * request with a length and one answer ended by close.
 */
export function callAgent<T>(opts: AgentCallOptions, path: string, body?: unknown): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const payload = body === undefined ? '' : JSON.stringify(body);
    const head = body === undefined
      ? `GET ${CNI_API_PREFIX}${path} HTTP/1.1\r\nhost: weir-agent\r\nconnection: close\r\n\r\n`
      : `POST ${CNI_API_PREFIX}${path} HTTP/1.1\r\nhost: weir-agent\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(payload)}\r\nconnection: close\r\n\r\n`;
    const sock = connect(opts.socketPath);
    const chunks: Buffer[] = [];
    let settled = false;
    const finish = (err: Error | undefined, value?: T) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err); else resolve(value as T);
    };
    const timer = setTimeout(() => finish(new AgentUnavailableError(opts.socketPath, `no answer within ${opts.timeoutMs} ms`)), opts.timeoutMs);
    sock.on('connect', () => sock.write(head + payload));
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.on('error', (e: NodeJS.ErrnoException) => finish(new AgentUnavailableError(opts.socketPath, e.code ?? e.message)));
    sock.on('end', () => {
      let answer: AgentHttpAnswer;
      let parsed: unknown;
      try {
        answer = parseHttpAnswer(Buffer.concat(chunks));
        parsed = answer.body === '' ? {} : JSON.parse(answer.body);
      } catch (e) {
        finish(new AgentUnavailableError(opts.socketPath, `unusable answer: ${(e as Error).message}`));
        return;
      }
      if (answer.status >= 200 && answer.status < 300) { finish(undefined, parsed as T); return; }
      const err = parsed as Partial<CniErrorBody>;
      if (typeof err.cniCode === 'number' && typeof err.msg === 'string') finish(new CniError(err.cniCode, err.msg, err.details));
      else finish(new AgentUnavailableError(opts.socketPath, `HTTP ${answer.status}`));
    });
  });
}
