// Pod shapes and small helpers shared by the runtime suites and the demo.
import * as http from 'node:http';
import { APP_IMAGE } from '../../support/images.js';
import type { ContainerSpec } from '../../support/cri.js';
import { until } from '../../support/poll.js';

export const PROXY_UID = 1337;

/**
 * The `weir-proxy` sidecar: weir's bundle in the app image, UID/GID 1337,
 * and no host mount: the proxy reaches the agent at @weir/proxy, a socket
 * the agent holds inside this pod's netns (what an injected pod does under
 * Pod Security restricted, where hostPath is not allowed).
 */
export function proxySidecar(namespace: string, podName: string): ContainerSpec {
  return {
    name: 'weir-proxy',
    image: APP_IMAGE,
    command: ['/usr/bin/node', '/weir/dist/weir.mjs', 'proxy', '--ready-without-agent', '1s', '--access-log', 'json'],
    // No socket setting: the proxy uses its default, the agent's @weir/proxy inside this pod's netns.
    env: { POD_NAMESPACE: namespace, POD_NAME: podName },
    runAsUser: PROXY_UID,
    runAsGroup: PROXY_UID,
  };
}

/**
 * The proxy's access log lines (Istio's JSON format), with the direction read
 * off the cluster: outbound|…, PassthroughCluster or inbound|….
 */
export function accessEntries(log: string, direction?: 'inbound' | 'outbound'): Record<string, unknown>[] {
  return log.split('\n').filter((l) => l.startsWith('{"start_time"'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((r) => !direction || (String(r.upstream_cluster).startsWith('inbound|') ? 'inbound' : 'outbound') === direction);
}

/** A TCP server app: answers every connection with one line naming the pod, forever. */
export function echoApp(port: number, podName: string): ContainerSpec {
  return {
    name: 'app',
    image: APP_IMAGE,
    command: ['/bin/sh', '-c', `while :; do echo "hello from ${podName}" | /bin/nc -l -p ${port}; done`],
  };
}

export function httpGet(url: string, timeoutMs = 3000, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { timeout: timeoutMs, headers }, (res) => {
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
/** The suite's argument order, over test/support/poll.ts; a probe that throws (not up yet) is retried. */
export async function waitFor<T>(probe: () => Promise<T | null | undefined | false>, timeoutMs: number, what: string): Promise<T> {
  return until(what, probe, { ms: timeoutMs, everyMs: 200, tolerateErrors: true });
}
