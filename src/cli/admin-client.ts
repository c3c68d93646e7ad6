// The CLI's side of the agent's admin socket (HTTP/1.1 + JSON over a unix socket).
import { request } from 'node:http';
import { Option } from 'commander';
import { CliExit, EXIT } from './exit.js';

export const DEFAULT_ADMIN_SOCKET = '/var/run/weir/admin.sock';

export function socketOption(): Option {
  return new Option('--socket <path>', 'the agent\'s admin socket').env('WEIR_ADMIN_SOCKET').default(DEFAULT_ADMIN_SOCKET);
}

export function adminSocket(opts: { socket?: string }): string {
  return opts.socket ?? DEFAULT_ADMIN_SOCKET;
}

/** Agent errors carry the exit code the agent chose (e.g. 4 when the pod's proxy is unreachable). */
interface AdminErrorBody { error?: string; exitCode?: number }

export function adminCall(socketPath: string, method: string, path: string, timeoutMs = 30_000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, method, path, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        let body: unknown;
        try { body = JSON.parse(Buffer.concat(chunks).toString('utf8')); } catch { body = {}; }
        if ((res.statusCode ?? 500) < 400) { resolve(body); return; }
        const b = body as AdminErrorBody;
        const code = b.exitCode === EXIT.unreachable ? EXIT.unreachable : res.statusCode === 400 ? EXIT.usage : EXIT.failure;
        reject(new CliExit(code, b.error ?? `HTTP ${res.statusCode}`));
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (e) => reject(new CliExit(EXIT.unreachable, `cannot reach the weir agent at ${socketPath}: ${e.message} (is the agent running on this node? try: weir precheck)`)));
    req.end();
  });
}

const NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

export function parsePod(arg: string): { ns: string; name: string } {
  const parts = arg.split('/');
  if (parts.length > 2 || parts.some((p) => !NAME.test(p))) throw new CliExit(EXIT.usage, `POD: expected NAMESPACE/NAME or NAME (bad value: ${JSON.stringify(arg)})`);
  return parts.length === 2 ? { ns: parts[0], name: parts[1] } : { ns: 'default', name: parts[0] };
}
