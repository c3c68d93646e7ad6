// Reaches a pod's proxy admin (127.0.0.1:15000 inside the pod's netns — it
// listens on loopback only, by design) from the agent: the native addon
// creates the TCP socket inside the pod's netns, and an HTTP GET runs over
// it. This is how `weir proxy-config` and `weir describe` read what a proxy
// really holds, from the node, without the proxy listening anywhere else.
import { request } from 'node:http';
import net from 'node:net';
import { socketInNetns } from '../native/addon.js';

export const PROXY_ADMIN_PORT = 15000;

export class ProxyUnreachable extends Error {}

export interface ProxyAdminAnswer { status: number; body: string; contentType?: string }

/** Paths the relay forwards: the proxy's read-only admin endpoints (and /logging for `proxy-config log`). */
const ALLOWED = /^\/(config_dump|clusters|stats|ready|logging)$/;

export function relayAllowed(path: string): boolean {
  return ALLOWED.test(path);
}

export async function proxyAdminRequest(netns: string, method: 'GET' | 'POST', pathAndQuery: string, opts: { port?: number; timeoutMs?: number } = {}): Promise<ProxyAdminAnswer> {
  const timeoutMs = opts.timeoutMs ?? 5000;
  const port = opts.port ?? PROXY_ADMIN_PORT;
  let fd: number;
  try {
    fd = await socketInNetns(netns, { kind: 'tcp-connect', family: 4, address: '127.0.0.1', port, timeoutMs });
  } catch (e) {
    throw new ProxyUnreachable(`no proxy admin on 127.0.0.1:${port} in ${netns}: ${(e as Error).message}`);
  }
  const sock = new net.Socket({ fd, readable: true, writable: true });
  return new Promise<ProxyAdminAnswer>((resolve, reject) => {
    const req = request({ method, path: pathAndQuery, host: '127.0.0.1', port, createConnection: () => sock, timeout: timeoutMs, headers: { connection: 'close' } }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        // A config dump of a large mesh is big, but not unbounded: keep the agent's memory safe.
        if (size > 64 * 1024 * 1024) { req.destroy(new Error('proxy admin answer larger than 64 MiB')); return; }
        chunks.push(c);
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 502, body: Buffer.concat(chunks).toString('utf8'), contentType: res.headers['content-type'] }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new ProxyUnreachable(`proxy admin in ${netns} did not answer within ${timeoutMs} ms`)));
    req.on('error', (e) => reject(e instanceof ProxyUnreachable ? e : new ProxyUnreachable(`proxy admin in ${netns}: ${e.message}`)));
    req.end();
  });
}
