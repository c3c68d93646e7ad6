// Zipkin span export through two proxies on the real kernel: a collector
// stand-in (node:http, checks every span against the Zipkin v2 shape) in a
// pod outside the mesh, curl as the client. One span per proxy (CLIENT on
// the client's, SERVER on the server's), parented along the request, and
// the headers the app receives (B3 and traceparent) name the server
// proxy's span; the caller's own context (traceparent, or x-b3-sampled: 0)
// is honoured; a collector that is down costs dropped (counted) spans,
// never a failed or slowed request.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { skipUnlessRoot } from '../support/netns.js';
import { Cluster, service, slice, waitForLine, type Pod } from './proxy-harness.js';
import { curl, REPO_DIR, waitFor } from './proxy-http-harness.js';

const skip = skipUnlessRoot();
const WEB = '10.96.57.10';
const EDGE_APP = path.join(REPO_DIR, 'test/fixtures/http/edge-app.cjs');
const COLLECTOR = path.join(REPO_DIR, 'test/fixtures/http/zipkin-collector.cjs');

interface Span { traceId: string; id: string; parentId?: string; kind: string; name: string; timestamp: number; duration: number; localEndpoint: { serviceName: string; ipv4?: string; port?: number }; remoteEndpoint?: { ipv4?: string; port?: number }; tags: Record<string, string> }

let c: Cluster;
let client: Pod;
let srv: Pod;
let zipkin: Pod;
let collector: ChildProcess | undefined;
const lines: string[] = [];

async function startCollector(): Promise<void> {
  collector = zipkin.ns.spawn(process.execPath, [COLLECTOR, '9411']);
  collector.stdout!.on('data', (d: Buffer) => { for (const l of d.toString().split('\n')) if (l) lines.push(l); });
  await waitForLine(collector, /collector ready/, 10000);
}

const spans = (): Span[] => lines.filter((l) => l.startsWith('span ')).map((l) => JSON.parse(l.slice(5)) as Span);
const spansOf = (requestId: string) => spans().filter((s) => s.tags['guid:x-request-id'] === requestId);

before(async () => {
  if (skip) return;
  c = new Cluster();
  await c.startControlPlane();
  client = await c.addPod('client', 'shop');
  srv = await c.addPod('web-1', 'shop');
  zipkin = await c.addPod('zipkin', 'istio-system', { capture: false });
  c.cp!.apply((b) => b.upsertService(service('web', 'shop', WEB, [{ name: 'http', port: 80 }])));
  c.cp!.apply((b) => b.upsertEndpointSlice(slice('web', 'shop', 'web-a', [{ pod: srv }], [{ name: 'http', port: 8080 }])));
  srv.app = srv.ns.spawn(process.execPath, [EDGE_APP, srv.name]);
  await Promise.all([waitForLine(srv.app, /app ready/, 10000), startCollector()]);
  // Istio's way for one proxy (PROXY_CONFIG, as the injector sets it), the flags for the other.
  process.env.PROXY_CONFIG = JSON.stringify({ tracing: { zipkin: { address: `${zipkin.ip4}:9411` }, sampling: 100 } });
  await c.startProxy(client, ['--no-dns']);
  delete process.env.PROXY_CONFIG;
  await c.startProxy(srv, ['--no-dns', '--zipkin-address', `${zipkin.ip4}:9411`, '--trace-sampling', '100']);
  await waitFor(() => (c.cp!.stats().proxies as unknown[]).length === 2, 10000, 'two proxies connected');
  await c.cp!.waitAcked(c.cp!.stats().version as number, 5000);
});

after(async () => { await c?.destroy(); });

async function get(urlPath: string, headers: string[] = []): Promise<{ trace: Record<string, string>; requestId: string; code: number }> {
  const rid = `rid-${urlPath.replace(/\W/g, '')}-${Date.now()}`;
  const r = await curl(client, ['-w', '\n%{http_code}', '-H', `x-request-id: ${rid}`, ...headers.flatMap((h) => ['-H', h]), `http://${WEB}${urlPath}`]);
  assert.equal(r.code, 0, r.stderr);
  const out = r.stdout.trim().split('\n');
  const code = Number(out.at(-1));
  const body = code === 200 ? JSON.parse(out[0]) as { trace: Record<string, string> } : { trace: {} };
  return { trace: body.trace, requestId: rid, code };
}

test('a new trace: CLIENT span on the client proxy, SERVER span its child on the server proxy, and the app told the server span is its parent (B3 and traceparent)', { skip, timeout: 60_000 }, async () => {
  const { trace, requestId } = await get('/traced');
  await waitFor(() => spansOf(requestId).length === 2, 5000, 'two spans at the collector');
  assert.deepEqual(lines.filter((l) => l.startsWith('invalid')), [], 'every span has the Zipkin v2 shape');
  const cs = spansOf(requestId).find((s) => s.kind === 'CLIENT')!;
  const ss = spansOf(requestId).find((s) => s.kind === 'SERVER')!;
  assert.ok(cs && ss, JSON.stringify(spansOf(requestId)));
  assert.match(cs.traceId, /^[0-9a-f]{32}$/);
  assert.equal(ss.traceId, cs.traceId);
  assert.equal(cs.parentId, undefined, 'the client proxy started the trace');
  assert.equal(ss.parentId, cs.id);
  // What the app received names the server proxy's span.
  assert.equal(trace['x-b3-traceid'], cs.traceId);
  assert.equal(trace['x-b3-spanid'], ss.id);
  assert.equal(trace['x-b3-parentspanid'], cs.id);
  assert.equal(trace['x-b3-sampled'], '1');
  assert.equal(trace.traceparent, `00-${cs.traceId}-${ss.id}-01`);
  // Names, endpoints, tags.
  assert.equal(cs.name, 'web.shop.svc.cluster.local:80/*');
  assert.equal(ss.name, 'web.shop.svc.cluster.local:8080/*');
  assert.equal(cs.localEndpoint.serviceName, 'client.shop');
  assert.equal(cs.localEndpoint.ipv4, client.ip4);
  assert.deepEqual(cs.remoteEndpoint, { ipv4: srv.ip4, port: 8080 });
  assert.equal(ss.localEndpoint.serviceName, 'web-1.shop');
  assert.deepEqual(ss.localEndpoint, { serviceName: 'web-1.shop', ipv4: srv.ip4, port: 8080 });
  assert.equal(ss.remoteEndpoint?.ipv4, client.ip4);
  assert.equal(cs.tags['http.status_code'], '200');
  assert.equal(cs.tags['http.method'], 'GET');
  assert.equal(cs.tags.upstream_cluster, 'outbound|80||web.shop.svc.cluster.local');
  assert.equal(ss.tags.upstream_cluster, 'inbound|8080||');
  assert.equal(cs.tags.response_flags, '-');
  // One clock: the server span lies within the client span.
  assert.ok(ss.timestamp >= cs.timestamp && ss.timestamp + ss.duration <= cs.timestamp + cs.duration + 1000, `client ${cs.timestamp}+${cs.duration}, server ${ss.timestamp}+${ss.duration}`);
});

test('the caller\'s context is honoured: its traceparent parents the client span; x-b3-sampled: 0 exports nothing but still propagates', { skip, timeout: 60_000 }, async () => {
  const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
  const { trace, requestId } = await get('/from-otel-app', [`traceparent: 00-${traceId}-00f067aa0ba902b7-01`, 'tracestate: vendor=opaque']);
  await waitFor(() => spansOf(requestId).length === 2, 5000, 'two spans');
  const cs = spansOf(requestId).find((s) => s.kind === 'CLIENT')!;
  const ss = spansOf(requestId).find((s) => s.kind === 'SERVER')!;
  assert.equal(cs.traceId, traceId);
  assert.equal(cs.parentId, '00f067aa0ba902b7');
  assert.equal(ss.parentId, cs.id);
  assert.equal(trace.traceparent, `00-${traceId}-${ss.id}-01`);
  assert.equal(trace.tracestate, 'vendor=opaque', 'tracestate passes untouched');

  const off = await get('/not-sampled', ['x-b3-traceid: 80f198ee56343ba864fe8b2a57d3eff7', 'x-b3-spanid: e457b5a2e4d86bd1', 'x-b3-sampled: 0']);
  assert.equal(off.trace['x-b3-sampled'], '0');
  assert.equal(off.trace['x-b3-traceid'], '80f198ee56343ba864fe8b2a57d3eff7');
  assert.match(off.trace.traceparent, /^00-80f198ee56343ba864fe8b2a57d3eff7-[0-9a-f]{16}-00$/);
  const probe = await get('/after-unsampled');
  await waitFor(() => spansOf(probe.requestId).length === 2, 5000, 'a later sampled request exported');
  assert.equal(spansOf(off.requestId).length, 0, 'nothing exported for the unsampled request');
});

test('error spans: a local 503 (no healthy upstream) carries its code, flags and error=true', { skip, timeout: 60_000 }, async () => {
  // Nothing answers behind this service: the endpoint list is empty.
  c.cp!.apply((b) => b.upsertService(service('empty', 'shop', '10.96.57.11', [{ name: 'http', port: 80 }])));
  await c.cp!.waitAcked(c.cp!.stats().version as number);
  const rid = `rid-uh-${Date.now()}`;
  const r = await curl(client, ['-o', '/dev/null', '-w', '%{http_code}', '-H', `x-request-id: ${rid}`, 'http://10.96.57.11/none']);
  assert.equal(r.stdout, '503');
  await waitFor(() => spansOf(rid).length === 1, 5000, 'the client span of the local reply');
  const s = spansOf(rid)[0];
  assert.equal(s.tags['http.status_code'], '503');
  assert.equal(s.tags.response_flags, 'UH');
  assert.equal(s.tags.error, 'true');
});

test('collector down: requests are unaffected, spans dropped and counted (bounded), export resumes when it is back', { skip, timeout: 60_000 }, async () => {
  const m = (outcome: string) => c.metric(client, 'weir_proxy_tracing_spans_total', { outcome });
  const [dropped0, exported0] = [await m('dropped_export_failed'), await m('exported')];
  collector!.kill();
  await new Promise((r) => collector!.once('exit', r));
  const t0 = performance.now();
  for (let i = 0; i < 20; i++) assert.equal((await get(`/while-down-${i}`)).code, 200);
  const ms = performance.now() - t0;
  await waitFor(async () => (await m('dropped_export_failed')) - dropped0 >= 20, 5000, 'dropped spans counted');
  console.log(`# collector down: 20 requests in ${ms.toFixed(0)} ms, ${(await m('dropped_export_failed')) - dropped0} client-side spans dropped`);
  await startCollector();
  const back = await get('/collector-back');
  await waitFor(() => spansOf(back.requestId).length === 2, 5000, 'spans again');
  assert.ok(await m('exported') > exported0);
});
