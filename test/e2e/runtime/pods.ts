// Pod shapes and small helpers shared by the runtime suites and the demo.
import * as http from 'node:http';
import { APP_IMAGE } from '../../support/images.js';
import type { ContainerSpec } from '../../support/cri.js';

export const PROXY_UID = 1337;

/**
 * The `weir-proxy` sidecar: weir's bundle in the app image, UID/GID 1337,
 * the node's run dir mounted at /var/run/weir (the agent's control-plane
 * socket lives there).
 */
export function proxySidecar(runDir: string, namespace: string, podName: string): ContainerSpec {
  return {
    name: 'weir-proxy',
    image: APP_IMAGE,
    command: ['/usr/bin/node', '/weir/dist/weir.mjs', 'proxy', '--ready-without-agent', '1s'],
    env: { POD_NAMESPACE: namespace, POD_NAME: podName, WEIR_CONTROL_PLANE_SOCKET: '/var/run/weir/proxy.sock' },
    mounts: [{ container_path: '/var/run/weir', host_path: runDir }],
    runAsUser: PROXY_UID,
    runAsGroup: PROXY_UID,
  };
}

/** A TCP server app: answers every connection with one line naming the pod, forever. */
export function echoApp(port: number, podName: string): ContainerSpec {
  return {
    name: 'app',
    image: APP_IMAGE,
    command: ['/bin/sh', '-c', `while :; do echo "hello from ${podName}" | /bin/nc -l -p ${port}; done`],
  };
}

export function httpGet(url: string, timeoutMs = 3000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: timeout`)));
    req.on('error', reject);
  });
}

/** Poll `probe` until it returns a non-null value; fail naming `what` after `timeoutMs`. */
export async function waitFor<T>(probe: () => Promise<T | null | undefined | false>, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v) return v;
    } catch (err) { last = err; }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
