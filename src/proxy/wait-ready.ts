// `weir proxy-wait`: polls the proxy's readiness until it answers 200. Run
// as the injected proxy's postStart hook, it holds the kubelet from
// starting the app containers until the proxy is up (Istio's
// holdApplicationUntilProxyStarts), when native sidecars are not available.
import * as http from 'node:http';
import { parseDuration } from '../common/duration.js';

function probe(url: string): Promise<number> {
  return new Promise((resolve) => {
    const req = http.get(url, { timeout: 1000 }, (res) => { res.resume(); resolve(res.statusCode ?? 0); });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
  });
}

/** Resolves with the milliseconds waited; rejects naming the URL after `timeout`. */
export async function waitForProxyReady(url: string, timeout: string): Promise<number> {
  const ms = parseDuration('--timeout', timeout);
  const start = Date.now();
  for (;;) {
    if (await probe(url) === 200) return Date.now() - start;
    if (Date.now() - start > ms) throw new Error(`${url} not ready after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
