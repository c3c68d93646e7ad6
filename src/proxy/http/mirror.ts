// Traffic mirroring (VirtualService mirror / mirrors): a copy of the
// request, sent once its body is complete, to one endpoint of the mirror
// cluster with "-shadow" appended to the host (so the mirror can tell
// shadow traffic apart, as with Envoy). Fire and forget: the copy's
// response is read and dropped, its failures are only counted, and it never
// delays or changes the real response. Bodies beyond the retry buffer are
// not mirrored (they were not kept).
import type { Readable } from 'node:stream';
import type { ClusterRuntime } from '../cluster/manager.js';
import type { ProxyDeps } from '../context.js';
import { shadowAuthority } from './route-actions.js';
import type { UpstreamHead } from './upstream.js';

/** A mirrored request gives up after this long (it must not pile up behind a slow mirror). */
const MIRROR_TIMEOUT_MS = 30_000;

export function mirrorRequest(d: ProxyDeps, rt: ClusterRuntime, head: UpstreamHead, body: Buffer): void {
  const targets = rt.targets(d.routes());
  const t = rt.balancer.pick(targets, new Set());
  if (!t) { d.metrics.mirrors.inc({ cluster_name: rt.compiled.name, result: 'no_endpoint' }); return; }
  const release = rt.balancer.acquire(t);
  const shadow: UpstreamHead = { ...head, authority: shadowAuthority(head.authority), headers: { ...head.headers } };
  let timer: NodeJS.Timeout | undefined;
  const done = (result: string) => { clearTimeout(timer); release(); d.metrics.mirrors.inc({ cluster_name: rt.compiled.name, result }); };
  rt.pools.open(rt.pools.h2Refused(t) ? 'h1' : 'h2', t, shadow, {}).then((ex) => {
    timer = setTimeout(() => ex.abort(), MIRROR_TIMEOUT_MS);
    ex.sink.end(body);
    return ex.response.then((res) => {
      (res.body as Readable).resume();
      res.body.once('end', () => done('ok'));
      res.body.once('error', () => done('reset'));
    });
  }).catch(() => done('failed'));
}
