// The HTTP proxy's edges, on the real kernel with real clients: the "503 UC"
// keep-alive race with a real Node server whose keep-alive timeout (1 s) is
// shorter than the proxy's pool idle timeout, flow control with a client
// that stops reading a large response (HTTP/1.1 and HTTP/2, bytes in flight
// and proxy RSS measured), HTTP/2 frame-level abuse with python3-h2 (rapid
// reset as seen by the upstream, oversized frames, bad prefaces), request
// smuggling variants, and headless services over HTTP.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { skipUnlessRoot } from '../support/netns.js';
import { Cluster, service, slice, waitForLine, type Pod } from './proxy-harness.js';
import { accessLines, curl, RAPID_RESET, REPO_DIR, run, waitFor } from './proxy-http-harness.js';

const skip = skipUnlessRoot();
const WEB = '10.96.56.10';
const EDGE_APP = path.join(REPO_DIR, 'test/fixtures/http/edge-app.cjs');
const KA_RACE = path.join(REPO_DIR, 'test/fixtures/http/keepalive-race.cjs');
const SLOW_READER = path.join(REPO_DIR, 'test/fixtures/http/slow-reader.cjs');
const H2_FRAMES = path.join(REPO_DIR, 'test/fixtures/http/h2-frames.py');
const KA_PORTS = '9001,9002,9003,9004';

let c: Cluster;
let client: Pod;
let srv: Pod[];
let bare: Pod;

async function startEdgeApp(pod: Pod): Promise<void> {
  pod.app = pod.ns.spawn(process.execPath, [EDGE_APP, pod.name]);
  const keep = (d: Buffer) => { for (const l of d.toString().split('\n')) if (l) pod.proxyLog.push(`app: ${l}`); };
  pod.app.stdout!.on('data', keep);
  pod.app.stderr!.on('data', keep);
  await waitForLine(pod.app, /app ready/, 10000);
}

before(async () => {
  if (skip) return;
  c = new Cluster();
  await c.startControlPlane();
  client = await c.addPod('client', 'shop');
  srv = [await c.addPod('edge-1', 'shop'), await c.addPod('edge-2', 'shop')];
  // No capture, no proxy: an app outside the mesh (and a client that talks to pods directly).
  bare = await c.addPod('bare', 'elsewhere', { capture: false });
  c.cp!.apply((b) => b.upsertService(service('web', 'shop', WEB, [{ name: 'http', port: 80 }])));
  c.cp!.apply((b) => b.upsertEndpointSlice(slice('web', 'shop', 'web-a', [{ pod: srv[0] }], [{ name: 'http', port: 8080 }])));
  c.cp!.apply((b) => b.upsertService(service('hl', 'shop', '', [{ name: 'http', port: 8080 }], true)));
  c.cp!.apply((b) => b.upsertEndpointSlice(slice('hl', 'shop', 'hl-a', srv.map((pod) => ({ pod })), [{ name: 'http', port: 8080 }])));
  await Promise.all([...srv, bare].map((p) => startEdgeApp(p)));
  await Promise.all([c.startProxy(client, ['--access-log', 'text', '--no-dns']), ...srv.map((p) => c.startProxy(p, ['--no-dns', '--access-log', 'text']))]);
  await waitFor(() => (c.cp!.stats().proxies as unknown[]).length === 3, 10000, 'three proxies connected');
  await c.cp!.waitAcked(c.cp!.stats().version as number, 5000);
});

after(async () => { await c?.destroy(); });

async function webEndpoint(): Promise<{ activeRequests: number; totalRequests: number }> {
  const clusters = JSON.parse((await c.httpGet(client, 15000, '/clusters')).body) as { clusters: { name: string; endpoints: { activeRequests: number; totalRequests: number }[] }[] };
  return clusters.clusters.find((x) => x.name === 'shop/web')!.endpoints[0];
}
const activeRequests = async () => (await webEndpoint()).activeRequests;

const json = (s: string) => JSON.parse(s.trim().split('\n').at(-1)!) as Record<string, unknown>;

test('503 UC: an app with a 1 s keep-alive closing the pooled connection as the proxy reuses it — retried once on a fresh connection, never a 503 (inbound and outbound pools)', { skip, timeout: 120_000 }, async () => {
  const stale = (p: Pod, direction: string) => c.metric(p, 'weir_proxy_http_retries_total', { direction, cause: 'stale-connection' });
  const [in0, out0] = [await stale(srv[0], 'inbound'), await stale(client, 'outbound')];
  const uc0 = await c.metric(srv[0], 'istio_requests_total', { reporter: 'destination', response_code: '503' });
  // Inbound: a client outside the mesh → edge-1's pod IP (captured inbound) → its proxy's pool → the app.
  // Outbound: the captured client → its proxy's pool → the bare app (no proxy there, HTTP/1.1).
  // The delay after each response sweeps across the moment the app really closes an idle connection
  // (its keep-alive deadline, measured by the app: 1 s + Node 20's own 1 s grace) and its stall around
  // it: requests that reach the app's socket during the stall meet a connection being closed.
  const deadline = (p: Pod) => Number(/keep-alive-deadline=(\d+)/.exec(p.proxyLog.find((l) => l.includes('keep-alive-deadline'))!)![1]);
  const sweep = (p: Pod) => [String(deadline(p) - 15), String(deadline(p) + 10)];
  const [inb, outb] = await Promise.all([
    run(bare, process.execPath, [KA_RACE, srv[0].ip4, KA_PORTS, '6', ...sweep(srv[0])], 80_000),
    run(client, process.execPath, [KA_RACE, bare.ip4, KA_PORTS, '6', ...sweep(bare)], 80_000),
  ]);
  assert.equal(inb.code, 0, inb.stderr);
  assert.equal(outb.code, 0, outb.stderr);
  const ri = json(inb.stdout);
  const ro = json(outb.stdout);
  const [inRetried, outRetried] = [await stale(srv[0], 'inbound') - in0, await stale(client, 'outbound') - out0];
  console.log(`# keep-alive race: inbound ${String(ri.ok)}/${String(ri.total)} ok, ${inRetried} stale-connection retries; outbound ${String(ro.ok)}/${String(ro.total)} ok, ${outRetried} retries`);
  assert.deepEqual(ri.bad, [], 'inbound: the client never sees the app closing a kept-alive connection');
  assert.deepEqual(ro.bad, [], 'outbound: same for a proxy-less app');
  assert.equal(await c.metric(srv[0], 'istio_requests_total', { reporter: 'destination', response_code: '503' }) - uc0, 0, 'no 503 UC on the inbound side');
  // The race was really hit (else this test proves nothing): the retries are what hid it.
  assert.ok(inRetried + outRetried >= 1, `the race was hit at least once (inbound ${inRetried}, outbound ${outRetried})`);
});

for (const proto of ['h1', 'h2'] as const) {
  test(`flow control end to end, ${proto === 'h1' ? 'HTTP/1.1' : 'HTTP/2'} client: a client that stops reading a 192 MiB response holds the app back; bytes in flight and proxy RSS stay bounded`, { skip, timeout: 90_000 }, async () => {
    const total = 192 << 20;
    const pids = [client.proxy!.pid!, srv[0].proxy!.pid!];
    const r = await run(client, process.execPath, [SLOW_READER, proto, WEB, '80', String(total), srv[0].ip4, '8080', pids.join(',')], 80_000);
    assert.equal(r.code, 0, r.stdout + r.stderr + c.logs());
    const out = json(r.stdout) as { s1: { read: number; written: number; rss: number[] }; s2: { read: number; written: number; rss: number[] }; read: number; total: number };
    const MiB = (n: number) => (n / (1 << 20)).toFixed(1);
    console.log(`# ${proto} stalled reader: read ${MiB(out.s1.read)} MiB, app wrote ${MiB(out.s1.written)} → ${MiB(out.s2.written)} MiB over 1.5 s more; in flight ${MiB(out.s2.written - out.s2.read)} MiB; proxy RSS ${out.s2.rss.map((x) => x.toFixed(0)).join(' / ')} MB`);
    assert.equal(out.read, total, 'every byte arrives once the client reads again');
    // Bytes in flight are what kernel socket buffers and the HTTP/2 windows (1 MiB per stream) hold on
    // the way: tens of MiB at most, never the response. A proxy that buffered would let the app finish.
    assert.ok(out.s2.written - out.s2.read < 48 << 20, `in flight ${MiB(out.s2.written - out.s2.read)} MiB`);
    assert.ok(out.s2.written < total / 2, 'the app is held back while the client does not read');
    assert.ok(out.s2.written - out.s1.written < 4 << 20, 'stalled: the app makes (almost) no progress while nobody reads');
    for (const rss of out.s2.rss) assert.ok(rss < 160, `proxy RSS ${rss.toFixed(0)} MB while holding a stalled 192 MiB response`);
  });
}

test('HTTP/2 clients that die while their responses are stalled do not wedge the shared upstream connection: other requests keep flowing', { skip, timeout: 90_000 }, async () => {
  const pids = [client.proxy!.pid!, srv[0].proxy!.pid!];
  // More stalled streams than the upstream connection window holds (8 × ≥1 MiB), then their clients vanish.
  const abandoned = await Promise.all(Array.from({ length: 9 }, () => run(client, process.execPath, [SLOW_READER, 'h2', WEB, '80', String(64 << 20), srv[0].ip4, '8080', pids.join(','), 'abandon'], 60_000)));
  for (const r of abandoned) assert.equal(r.code, 0, r.stdout + r.stderr);
  // And clients that vanish the moment the response headers arrive, before reading anything.
  for (let i = 0; i < 3; i++) await run(client, process.execPath, [SLOW_READER, 'h2', WEB, '80', String(192 << 20), srv[0].ip4, '8080', pids.join(','), 'die-at-response'], 30_000);
  for (let i = 0; i < 5; i++) {
    const r = await curl(client, ['-o', '/dev/null', '-w', '%{http_code}', '--max-time', '5', `http://${WEB}/after-abandon-${i}`]);
    assert.equal(r.stdout, '200', `request ${i} after the abandoned streams: ${r.stderr}`);
  }
  const h2 = await curl(client, ['--http2-prior-knowledge', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '5', `http://${WEB}/after-abandon-h2`]);
  assert.equal(h2.stdout, '200', h2.stderr);
  // The abandoned requests are over for the proxy too: none is left counted in flight.
  await waitFor(async () => (await activeRequests()) === 0, 5000, `no abandoned request left in flight (${await activeRequests()})`);
});

test('HTTP/2 rapid reset (CVE-2023-44487): HEADERS+RST_STREAM floods → GOAWAY(ENHANCE_YOUR_CALM); reset streams never become upstream requests, none leaks, the shared upstream connection keeps serving', { skip, timeout: 60_000 }, async () => {
  const count = async () => (JSON.parse((await curl(client, [`http://${WEB}/rr-count`])).stdout) as { rr: number }).rr;
  const before = await count();
  const upstream0 = (await webEndpoint()).totalRequests;
  const r = await run(client, '/usr/bin/python3', [RAPID_RESET, WEB, '80', '3000']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /goaway=11\b/);
  const sent = Number(/sent=(\d+)/.exec(r.stdout)![1]);
  await new Promise((res) => setTimeout(res, 500));
  const reached = await count() - before;
  console.log(`# rapid reset: client sent ${sent} HEADERS+RST_STREAM pairs before GOAWAY, the app saw ${reached} requests`);
  assert.ok(sent >= 200, `the client got to send a flood (${sent})`);
  assert.ok(reached < 50, `the upstream saw ${reached} of ${sent} reset requests`);
  assert.equal((await curl(client, ['-o', '/dev/null', '-w', '%{http_code}', `http://${WEB}/after-rr`])).stdout, '200');
  // Every reset request was accounted for: none is left "in flight" in LEAST_REQUEST (a leak there
  // skews balancing for good and keeps each abandoned request's state alive).
  const ep = await webEndpoint();
  const upstream = ep.totalRequests - upstream0;
  console.log(`# rapid reset: ${upstream} requests reached the upstream pool, ${ep.activeRequests} still counted active`);
  assert.equal(ep.activeRequests, 0);
  // Streams the client reset before the proxy got to them never become upstream requests (before the
  // fix, each one reset after the router's first look became an upstream stream nobody cancelled:
  // ~1700 of them filled the upstream connection's 1000 concurrent streams and wedged it).
  assert.ok(upstream < 60, `${upstream} upstream requests`);
});

test('HTTP/2 oversized frame: DATA longer than SETTINGS_MAX_FRAME_SIZE → connection error FRAME_SIZE_ERROR; nothing reaches the app', { skip, timeout: 60_000 }, async () => {
  const r = await run(client, '/usr/bin/python3', [H2_FRAMES, 'oversized', WEB, '80']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^goaway=6 /, r.stdout);
  await new Promise((res) => setTimeout(res, 300));
  assert.ok(!srv[0].proxyLog.some((l) => l.includes('/big-frame')), 'the half-sent request never reached the server side');
});

test('HTTP/2 preface: the right magic followed by something other than SETTINGS → connection error (GOAWAY); a wrong magic is not h2 and is relayed as TCP (the app answers it)', { skip, timeout: 60_000 }, async () => {
  const ns = await run(client, '/usr/bin/python3', [H2_FRAMES, 'no-settings', WEB, '80']);
  assert.equal(ns.code, 0, ns.stderr);
  // nghttp2 reports the broken preface to Node, which closes with INTERNAL_ERROR (2); RFC 9113 asks for PROTOCOL_ERROR (1).
  assert.match(ns.stdout, /^goaway=(1|2) /, ns.stdout);
  const tcp0 = await c.metric(client, 'weir_proxy_protocol_detected_total', { direction: 'outbound', protocol: 'tcp' });
  const bad = await run(client, '/usr/bin/python3', [H2_FRAMES, 'bad-magic', WEB, '80']);
  assert.equal(bad.code, 0, bad.stderr);
  // Relayed untouched through both proxies: the app's own HTTP/1.1 parser is what refuses it.
  assert.match(bad.stdout, /^first_line='HTTP\/1\.1 400 Bad Request'/, bad.stdout);
  assert.equal(await c.metric(client, 'weir_proxy_protocol_detected_total', { direction: 'outbound', protocol: 'tcp' }) - tcp0, 1);
});

test('request smuggling variants are refused with 400 and never reach the app', { skip, timeout: 60_000 }, async () => {
  const cases: Record<string, string> = {
    'two different Content-Lengths': 'POST /smuggle-cl HTTP/1.1\r\nHost: web\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\nabc',
    'Content-Length and chunked': 'POST /smuggle-te HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n',
    'chunked not last': 'POST /smuggle-tel HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n',
    'obfuscated Transfer-Encoding': 'POST /smuggle-ob HTTP/1.1\r\nHost: web\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n',
    'bare LF in chunk size line': 'POST /smuggle-lf HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n',
  };
  for (const [what, raw] of Object.entries(cases)) {
    const sock = await c.connect(client, WEB, 80);
    sock.write(raw + 'GET /smuggled HTTP/1.1\r\nHost: web\r\n\r\n');
    const reply = await new Promise<string>((r) => { let s = ''; sock.on('data', (d: Buffer) => { s += d.toString(); }); sock.on('end', () => r(s)); sock.on('close', () => r(s)); sock.resume(); });
    sock.destroy();
    assert.match(reply, /^HTTP\/1\.1 400/, `${what}: ${reply.slice(0, 80)}`);
  }
  await new Promise((res) => setTimeout(res, 300));
  assert.deepEqual(srv[0].proxyLog.filter((l) => /\/smuggled/.test(l)), [], 'the request hidden in the body never reached the server side');
  // Header-level conflicts are refused before anything is forwarded. (A body that turns out malformed
  // mid-stream — the bare LF — has had its headers forwarded already, as with any streaming proxy;
  // the downstream gets the 400 and the upstream request is cut.)
  assert.deepEqual(srv[0].proxyLog.filter((l) => /\/smuggle-(cl|te|tel|ob) /.test(l)), []);
});

test('headless service over HTTP: a request to a pod IP with the service\'s Host goes to that pod only (per pod IP:port), through both proxies', { skip, timeout: 60_000 }, async () => {
  for (const p of srv) {
    for (let i = 0; i < 4; i++) {
      const r = await curl(client, ['-H', 'Host: hl.shop.svc.cluster.local:8080', `http://${p.ip4}:8080/hl-${p.name}-${i}`]);
      assert.equal(r.code, 0, r.stderr);
      const body = json(r.stdout) as { pod: string; remote: string };
      assert.equal(body.pod, p.name);
      assert.equal(body.remote, '::ffff:127.0.0.6', 'delivered by the pod\'s inbound proxy');
    }
  }
  await waitFor(() => accessLines(client).filter((l) => / outbound\|8080\|\|hl\.shop\.svc\.cluster\.local /.test(l) && /"GET \/hl-/.test(l)).length === 8, 3000, 'eight access log lines on the headless cluster');
  for (const p of srv) assert.equal(accessLines(client).filter((l) => l.includes(`/hl-${p.name}-`) && l.includes(`"${p.ip4}:8080"`)).length, 4);
  // The service's name on an address that is not one of its pods: as Istio's ORIGINAL_DST cluster for
  // headless services, the request goes to the address dialled (never to one of the service's pods).
  const r = await curl(client, ['-H', 'Host: hl.shop', `http://${bare.ip4}:8080/hl-not-a-pod`]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal((json(r.stdout) as { pod: string }).pod, bare.name);
  await waitFor(() => accessLines(client).some((l) => /"GET \/hl-not-a-pod HTTP\/1\.1" 200 /.test(l) && l.includes(`"${bare.ip4}:8080"`)), 3000, 'access log line to the dialled address');
});
