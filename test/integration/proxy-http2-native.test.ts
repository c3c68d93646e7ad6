// The native HTTP/2 codec (native/src/h2/, src/proxy/http/native-h2.ts) on
// the real kernel: four proxies without access log or span export, so the
// h2c connections on http2/grpc-declared ports go to the addon's engine —
// client pod → client proxy (native h2, outbound) → h2c → server pod's
// proxy (native h2, inbound) → the app's h2c / gRPC server from 127.0.0.6.
// Every test checks the native path served (its /stats counters moved) and
// the JS chain did not (httpRequests stayed), so a fallback to JS fails it.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { skipUnlessRoot } from '../support/netns.js';
import { startHttpMesh, type HttpMesh } from '../support/http-mesh.js';
import { service, slice, waitForLine, type Pod } from './proxy-harness.js';
import { curl, GRPC_CLIENT, RAPID_RESET, REPO_DIR, run, waitFor } from './proxy-http-harness.js';

const skip = skipUnlessRoot();
const WEB = '10.96.57.10';
const GRPC = '10.96.57.14';
const PLAIN = '10.96.57.15';
const FLAKY = '10.96.57.16';
const TRAILERS = '10.96.57.17';
const H2_FRAMES = path.join(REPO_DIR, 'test/fixtures/http/h2-frames.py');
const GRPC_DEADLINE = path.join(REPO_DIR, 'test/fixtures/http/grpc-deadline.py');
const GRPC_FLAKY = path.join(REPO_DIR, 'test/fixtures/http/grpc-flaky.cjs');
const H2_TRAILERS = path.join(REPO_DIR, 'test/fixtures/http/h2-trailers-server.py');

let m: HttpMesh;

before(async () => {
  if (skip) return;
  m = await startHttpMesh({
    client: 'client-5b8f7d9c4-h2native', servers: ['h2web-1', 'h2web-2', 'h2web-3'], outside: 'h2outside',
    services: ({ c, servers, outside }) => {
      c.cp!.apply((b) => b.upsertService(service('web', 'shop', WEB, [{ name: 'http2', port: 81 }])));
      c.cp!.apply((b) => b.upsertEndpointSlice(slice('web', 'shop', 'web-a', servers.map((pod) => ({ pod })), [{ name: 'http2', port: 8090 }])));
      c.cp!.apply((b) => b.upsertService(service('grpc', 'shop', GRPC, [{ name: 'grpc', port: 50051 }])));
      c.cp!.apply((b) => b.upsertEndpointSlice(slice('grpc', 'shop', 'grpc-a', servers.map((pod) => ({ pod })), [{ name: 'grpc', port: 50051 }])));
      // outside:9 refuses (nothing listens there); h2web-2 answers: every call that picks outside is retried.
      c.cp!.apply((b) => b.upsertService(service('flaky', 'shop', FLAKY, [{ name: 'grpc', port: 50051 }])));
      c.cp!.apply((b) => b.upsertEndpointSlice(slice('flaky', 'shop', 'flaky-a', [{ pod: outside }], [{ name: 'grpc', port: 9 }])));
      c.cp!.apply((b) => b.upsertEndpointSlice(slice('flaky', 'shop', 'flaky-b', [{ pod: servers[1] }], [{ name: 'grpc', port: 50051 }])));
      // An http-declared port: sniffed h2c there stays on the JS chain (its endpoint may speak HTTP/1.1 only).
      c.cp!.apply((b) => b.upsertService(service('plain', 'shop', PLAIN, [{ name: 'http', port: 80 }])));
      c.cp!.apply((b) => b.upsertEndpointSlice(slice('plain', 'shop', 'plain-a', [{ pod: servers[0] }], [{ name: 'http', port: 8080 }])));
    },
  });
});

after(async () => {
  // A proxy that died mid-suite says why here (every later test fails on its admin port).
  for (const p of m ? [m.client, ...m.servers] : []) if (p.proxy && (p.proxy.exitCode !== null || p.proxy.signalCode !== null)) console.log(`# ${p.name}: proxy exited (${p.proxy.exitCode ?? p.proxy.signalCode}):\n${p.proxyLog.slice(-20).join('\n')}`);
  await m?.c.destroy();
});

interface Stats { httpRequests: number; nativeHttp?: { requests: number; h2Connections: number; retries: number } }
const stats = async (p: Pod) => JSON.parse((await m.c.httpGet(p, 15000, '/stats')).body) as Stats;

/** Runs `body`, then checks the native HTTP/2 codec served at least `n` more requests on `pod`'s proxy and the JS chain none. */
async function nativeServed<T>(p: Pod, n: number, body: () => Promise<T>): Promise<T> {
  const s0 = await stats(p);
  const out = await body();
  await waitFor(async () => ((await stats(p)).nativeHttp?.requests ?? 0) - (s0.nativeHttp?.requests ?? 0) >= n, 3000, `${n} native requests`)
    .catch(async (e: Error) => { throw new Error(`${e.message}: before ${JSON.stringify(s0)} after ${JSON.stringify(await stats(p))}`); });
  const s1 = await stats(p);
  assert.equal(s1.httpRequests - s0.httpRequests, 0, 'the JS chain served none');
  assert.ok((s1.nativeHttp?.h2Connections ?? 0) > (s0.nativeHttp?.h2Connections ?? 0), 'an h2 connection went to the native codec');
  return out;
}

test('300 requests over ONE HTTP/2 connection (h2load) reach all three pods, natively on both sides', { skip, timeout: 60_000 }, async () => {
  const { c, client, servers } = m;
  const before = await Promise.all(servers.map(stats));
  await nativeServed(client, 300, async () => {
    const r = await run(client, 'h2load', ['-n', '300', '-c', '1', '-m', '10', `http://${WEB}:81/h2load`]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /300 succeeded/);
    assert.match(r.stdout, /status codes: 300 2xx/);
  });
  const after = await Promise.all(servers.map(stats));
  for (let i = 0; i < 3; i++) {
    const got = (after[i].nativeHttp?.requests ?? 0) - (before[i].nativeHttp?.requests ?? 0);
    assert.ok(got > 0, `${servers[i].name} served ${got}`);
    assert.equal(after[i].httpRequests, before[i].httpRequests, `${servers[i].name}: the JS chain served none`);
  }
  assert.ok(await c.metric(client, 'istio_requests_total', { reporter: 'source', destination_service_name: 'web', request_protocol: 'http', response_code: '200' }) >= 300);
});

test('nghttp and curl --http2-prior-knowledge: one connection, per-request LB, the headers the JS chain adds, 127.0.0.6 at the app', { skip, timeout: 60_000 }, async () => {
  const { client } = m;
  await nativeServed(client, 12, async () => {
    // nghttp sends every URL on one connection (curl 7.88's HTTP/2 reuse drops a second URL's transfer, proxy or not).
    const urls = Array.from({ length: 12 }, (_, i) => `http://${WEB}:81/k${i}`);
    const r = await run(client, 'nghttp', ['-H', 'traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', ...urls]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const bodies = r.stdout.trim().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { pod: string; proto: string; remote: string; headers: Record<string, string> });
    assert.equal(bodies.length, 12, r.stdout);
    assert.ok(new Set(bodies.map((b) => b.pod)).size >= 2, `per-request LB: ${bodies.map((b) => b.pod)}`);
    for (const b of bodies) {
      assert.equal(b.proto, '2.0', 'the app got HTTP/2');
      assert.equal(b.remote.replace('::ffff:', ''), '127.0.0.6');
      assert.match(b.headers['x-request-id'], /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      assert.equal(b.headers['x-forwarded-proto'], 'http');
      assert.match(b.headers.traceparent, /^00-0af7651916cd43dd8448eb211c80319c-([0-9a-f]{16})-01$/);
      assert.notEqual(b.headers.traceparent.split('-')[2], 'b7ad6b7169203331');
      assert.equal(b.headers['x-b3-spanid'], b.headers.traceparent.split('-')[2]);
      assert.equal(b.headers['x-weir-peer'], undefined, 'exchange headers never reach the app');
      assert.equal(b.headers['x-weir-downstream-protocol'], undefined);
    }
  });
  await nativeServed(client, 2, async () => {
    for (const host of ['web.shop', 'web.shop.svc.cluster.local:81']) {
      const r = await curl(client, ['--http2-prior-knowledge', '-H', `Host: ${host}`, '-w', '\n%{http_version}', `http://${WEB}:81/byhost`]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /\n2$/);
      assert.match(JSON.parse(r.stdout.split('\n')[0]).pod as string, /^h2web-\d$/, `Host: ${host}`);
    }
  });
});

test('flow control end to end: 16 MiB uploaded over h2 arrives whole (sha256), concurrent with small requests', { skip, timeout: 90_000 }, async () => {
  const { c, client } = m;
  const file = `${c.sockDir}/h2-upload.bin`;
  await run(client, 'dd', ['if=/dev/urandom', `of=${file}`, 'bs=1M', 'count=16']);
  const want = (await run(client, 'sha256sum', [file])).stdout.split(' ')[0];
  await nativeServed(client, 1, async () => {
    const r = await curl(client, ['--http2-prior-knowledge', '--max-time', '60', '--data-binary', `@${file}`, `http://${WEB}:81/sha`]);
    assert.equal(r.code, 0, r.stderr);
    const [, n, sha] = r.stdout.trim().split(' ');
    assert.equal(Number(n), 16 << 20);
    assert.equal(sha, want);
  });
});

test('gRPC (grpc-js) natively: unary spread over the pods on one channel, server/client/bidi streaming, status, deadline, cancellation reaching the server', { skip, timeout: 60_000 }, async () => {
  const { c, client, servers } = m;
  const out = await nativeServed(client, 35, async () => {
    const r = await run(client, process.execPath, [GRPC_CLIENT, REPO_DIR, `${GRPC}:50051`]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    return JSON.parse(r.stdout) as Record<string, unknown>;
  });
  assert.equal((out.unaryPods as string[]).length, 3, `unary over the pods: ${JSON.stringify(out.unaryPods)}`);
  assert.equal((out.server as string[]).length, 3);
  assert.match(String(out.client), /^h2web-\d:a,b,c$/);
  assert.equal((out.bidi as string[]).length, 3);
  assert.deepEqual(out.fail, { code: 5, details: 'nothing here' });
  assert.equal((out.deadline as { code: number }).code, 4, 'DEADLINE_EXCEEDED');
  assert.equal((out.cancel as { code: number }).code, 1, 'CANCELLED');
  await waitFor(() => servers.some((s) => s.proxyLog.some((l) => /app: grpc cancelled/.test(l))), 5000, 'server saw the cancellation');
  await waitFor(async () => (await c.metric(client, 'istio_requests_total', { reporter: 'source', destination_service_name: 'grpc', request_protocol: 'grpc', grpc_response_status: '0', response_code: '200' })) >= 33, 3000, 'grpc OK counted');
  assert.ok(await c.metric(client, 'istio_requests_total', { reporter: 'source', destination_service_name: 'grpc', request_protocol: 'grpc', grpc_response_status: '5' }) >= 1);
  // 30 unary + 1 server (1 in, 3 out) + 1 client (3 in, 1 out) + 1 bidi (3/3) + fail/deadline/cancel (1 in each): at least 36 each way.
  assert.ok(await c.metric(client, 'istio_request_messages_total', { reporter: 'source', destination_service_name: 'grpc' }) >= 36);
  assert.ok(await c.metric(client, 'istio_response_messages_total', { reporter: 'source', destination_service_name: 'grpc' }) >= 36);
  const inbound = await Promise.all(servers.map((s) => c.metric(s, 'istio_requests_total', { reporter: 'destination', destination_service_name: 'grpc', request_protocol: 'grpc', grpc_response_status: '0' })));
  assert.ok(inbound.reduce((a, b) => a + b, 0) >= 33, `inbound grpc counted: ${inbound}`);
});

test('response bytes still on their way when the upstream stream closes give their window back: reused connections never stall', { skip, timeout: 60_000 }, async () => {
  const { c, client, servers } = m;
  // An upstream that writes each response's HEADERS, 1 KiB of DATA and trailers at once (as a busy gRPC server
  // does): the proxy reads the stream's end with its last bytes, before the client has taken them. Before the fix
  // those bytes' connection-level window was never given back, so 4,000 responses (twice each proxy's 2 MiB upstream
  // connection window) stalled the reused connections for good: response headers still came, DATA no more.
  const app = servers[0].ns.spawn('/usr/bin/python3', [H2_TRAILERS, '8091', '1024']);
  try {
    await waitForLine(app, /h2 trailers server ready/, 5000);
    c.cp!.apply((b) => b.upsertService(service('trailers', 'shop', TRAILERS, [{ name: 'http2', port: 82 }])));
    c.cp!.apply((b) => b.upsertEndpointSlice(slice('trailers', 'shop', 'trailers-a', [{ pod: servers[0] }], [{ name: 'http2', port: 8091 }])));
    await c.cp!.waitAcked(c.cp!.stats().version as number, 5000);
    await nativeServed(client, 4000, async () => {
      const r = await run(client, 'h2load', ['-n', '4000', '-c', '1', '-m', '16', `http://${TRAILERS}:82/`], 30_000);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /4000 succeeded/);
    });
  } finally { app.kill('SIGKILL'); }
});

test('grpc-timeout enforced by the proxy: a client that never cancels gets DEADLINE_EXCEEDED on time, and the app sees the cancellation', { skip, timeout: 60_000 }, async () => {
  const { c, client, servers } = m;
  const cancelled = () => servers.reduce((n, s) => n + s.proxyLog.filter((l) => /app: grpc cancelled/.test(l)).length, 0);
  const before = cancelled();
  // Both proxies carry the deadline: whichever sweep fires first answers with UT (the other relays its answer).
  const ut = async () => (await Promise.all([client, ...servers].map((p) => c.metric(p, 'istio_requests_total', { destination_service_name: 'grpc', grpc_response_status: '4', response_flags: 'UT' })))).reduce((a, b) => a + b, 0);
  const ut0 = await ut();
  const dl0 = await c.metric(client, 'istio_requests_total', { reporter: 'source', destination_service_name: 'grpc', grpc_response_status: '4' });
  const out = await nativeServed(client, 1, async () => {
    const r = await run(client, '/usr/bin/python3', [GRPC_DEADLINE, GRPC, '50051', '/t.T/Slow', '400m']);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout.trim();
  });
  const m1 = /^status=200 grpc=4 end=end seconds=([\d.]+)$/.exec(out);
  assert.ok(m1, out);
  // 400 ms deadline, checked by the engine's 200 ms sweep: answered within 0.4-0.9 s, long before the app's 3 s.
  assert.ok(Number(m1[1]) >= 0.35 && Number(m1[1]) < 1.0, out);
  await waitFor(() => cancelled() > before, 5000, 'the app saw the upstream stream cancelled');
  await waitFor(async () => (await c.metric(client, 'istio_requests_total', { reporter: 'source', destination_service_name: 'grpc', grpc_response_status: '4' })) - dl0 === 1, 3000, 'counted as grpc 4 at the client proxy');
  // Usually one proxy answers; when both sweeps fire before either sees the other's answer, each counts its own UT.
  await waitFor(async () => { const n = (await ut()) - ut0; return n >= 1 && n <= 2; }, 3000, 'a proxy answered it (flag UT)');
});

test('upstream resets: before the response the client gets 503 UC; mid-response its stream is reset (not ended cleanly); the connection lives on', { skip, timeout: 60_000 }, async () => {
  const { c, client } = m;
  const uc0 = await c.metric(client, 'istio_requests_total', { reporter: 'source', destination_service_name: 'web', response_code: '503' });
  await nativeServed(client, 4, async () => {
    // nghttp keeps one connection for all three; the last request proves the session survived the resets.
    const r = await run(client, 'nghttp', ['-v', `http://${WEB}:81/reset-early`, `http://${WEB}:81/reset-mid`, `http://${WEB}:81/after-reset`]);
    assert.match(r.stdout, /recv \(stream_id=\d+\) :status: 503/, 'reset before the response: 503');
    assert.match(r.stdout, /recv RST_STREAM frame <length=4, flags=0x00, stream_id=\d+>\s+\(error_code=INTERNAL_ERROR/, 'reset mid-response reaches the client');
    assert.match(r.stdout, /"url":"\/after-reset"/, 'the connection still serves');
    const curlMid = await curl(client, ['--http2-prior-knowledge', `http://${WEB}:81/reset-mid`]);
    assert.notEqual(curlMid.code, 0, 'curl sees the stream cut');
  });
  assert.ok(await c.metric(client, 'istio_requests_total', { reporter: 'source', destination_service_name: 'web', response_code: '503' }) - uc0 >= 1);
});

test('connect failures retried on another endpoint (Istio\'s default budget of 2): every gRPC call succeeds, the retries are counted', { skip, timeout: 60_000 }, async () => {
  const { client } = m;
  const s0 = await stats(client);
  const out = await nativeServed(client, 30, async () => {
    const r = await run(client, process.execPath, [GRPC_CLIENT, REPO_DIR, `${FLAKY}:50051`]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    return JSON.parse(r.stdout) as Record<string, unknown>;
  });
  assert.deepEqual(out.unaryPods, ['h2web-2'], 'every unary call answered by the endpoint that listens');
  assert.equal((out.server as string[]).length, 3);
  const s1 = await stats(client);
  assert.ok((s1.nativeHttp?.retries ?? 0) > (s0.nativeHttp?.retries ?? 0), `retries counted: ${s0.nativeHttp?.retries} → ${s1.nativeHttp?.retries}`);
});

interface Flaky { fail: string; code: number; key: string; pad?: number }
type FlakyResult = { ok: string } | { code: number; details: string };

test('gRPC retries (Istio\'s default): a trailers-only UNAVAILABLE/CANCELLED is retried on another pod after a backoff; a 100 KiB request, INVALID_ARGUMENT are not', { skip, timeout: 60_000 }, async () => {
  const { c, client, servers } = m;
  // Each app logs every attempt it answers: "grpc flaky <key> <pod> <status> <request bytes>".
  const attempts = (key: string) => servers.flatMap((s) => s.proxyLog).map((l) => / grpc flaky (\S+) (\S+) (\d+) (\d+)$/.exec(l)).filter((x) => x?.[1] === key).map((x) => ({ pod: x![2], status: Number(x![3]), bytes: Number(x![4]) }));
  const urx = () => c.metric(client, 'istio_requests_total', { reporter: 'source', destination_service_name: 'grpc', grpc_response_status: '14', response_flags: 'URX' });
  const s0 = await stats(client);
  const urx0 = await urx();
  const tag = `${Date.now() % 100000}`;
  const some: Flaky[] = Array.from({ length: 20 }, (_, i) => ({ fail: 'h2web-1', code: 14, key: `r${tag}-${i}`, pad: 0 }));
  const rest: Flaky[] = [
    { fail: '*', code: 14, key: `all14-${tag}` },
    { fail: '*', code: 1, key: `all1-${tag}` },
    { fail: '*', code: 14, key: `big-${tag}`, pad: 100 << 10 },
    { fail: '*', code: 3, key: `inv-${tag}` },
  ];
  const out = await nativeServed(client, some.length + rest.length, async () => {
    const r = await run(client, process.execPath, [GRPC_FLAKY, REPO_DIR, `${GRPC}:50051`, JSON.stringify([...some, ...rest])]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    return JSON.parse(r.stdout) as FlakyResult[];
  });
  // h2web-1 always answers UNAVAILABLE: every call still succeeds, answered by another pod.
  for (let i = 0; i < some.length; i++) assert.match((out[i] as { ok: string }).ok ?? JSON.stringify(out[i]), /^h2web-[23]:r/, `call ${i}`);
  await waitFor(() => some.every((s) => attempts(s.key).length >= 1) && attempts(rest[0].key).length >= 3 && attempts(rest[3].key).length >= 1, 3000, 'the apps logged the attempts');
  let retried = 0;
  for (const s of some) {
    const a = attempts(s.key);
    const first = a.filter((x) => x.pod === 'h2web-1');
    assert.ok(first.length <= 1, `${s.key}: h2web-1 tried once at most (another endpoint preferred): ${JSON.stringify(a)}`);
    assert.equal(a.length, 1 + first.length, `${s.key}: one retry after the UNAVAILABLE, none otherwise: ${JSON.stringify(a)}`);
    if (first.length) { retried++; assert.equal(first[0].status, 14); }
  }
  assert.ok(retried >= 1, 'some call picked h2web-1 first (LEAST_REQUEST over 3 pods, 20 calls) and the app saw 2 attempts for it');
  // Every pod fails: the budget of 2 retries on 3 distinct pods, then the client gets the last status (flag URX).
  assert.equal((out[some.length] as { code: number }).code, 14, JSON.stringify(out[some.length]));
  assert.match((out[some.length] as { details: string }).details, /^flaky h2web-\d$/, 'the last upstream answer relayed');
  assert.deepEqual(attempts(rest[0].key).map((x) => x.pod).sort(), ['h2web-1', 'h2web-2', 'h2web-3']);
  assert.equal((out[some.length + 1] as { code: number }).code, 1, 'CANCELLED after its retries');
  assert.equal(attempts(rest[1].key).length, 3, 'CANCELLED (1) is retried too');
  // A request over the 64 KiB replay buffer is not retried; neither is a status Istio's default does not name.
  assert.equal((out[some.length + 2] as { code: number }).code, 14, 'the 100 KiB call gets UNAVAILABLE');
  assert.equal((out[some.length + 3] as { code: number }).code, 3, 'INVALID_ARGUMENT relayed');
  await new Promise((res) => setTimeout(res, 300));
  assert.deepEqual(attempts(rest[2].key).map((x) => x.bytes), [Buffer.byteLength(`fail=*;code=14;key=${rest[2].key};`) + (100 << 10)], 'the 100 KiB call: one attempt, the whole body');
  assert.equal(attempts(rest[3].key).length, 1, 'INVALID_ARGUMENT: one attempt');
  const s1 = await stats(client);
  assert.equal((s1.nativeHttp?.retries ?? 0) - (s0.nativeHttp?.retries ?? 0), retried + 4, 'retries counted natively');
  await waitFor(async () => (await urx()) - urx0 === 1, 3000, 'the exhausted UNAVAILABLE counted with flag URX');
});

test('rapid reset (CVE-2023-44487): GOAWAY(ENHANCE_YOUR_CALM) from the native codec; the proxy keeps serving', { skip, timeout: 60_000 }, async () => {
  const { client } = m;
  const s0 = await stats(client);
  const r = await run(client, '/usr/bin/python3', [RAPID_RESET, WEB, '81', '3000']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /goaway=11\b/, r.stdout);
  const s1 = await stats(client);
  assert.ok((s1.nativeHttp?.h2Connections ?? 0) > (s0.nativeHttp?.h2Connections ?? 0), 'served by the native codec');
  assert.equal(s1.httpRequests, s0.httpRequests);
  await nativeServed(client, 1, async () => {
    assert.equal((await curl(client, ['--http2-prior-knowledge', '-o', '/dev/null', '-w', '%{http_code}', `http://${WEB}:81/after-rr`])).stdout, '200');
  });
});

test('frame-level errors: oversized DATA → GOAWAY(FRAME_SIZE_ERROR), preface without SETTINGS → GOAWAY(PROTOCOL_ERROR); nothing reaches the app', { skip, timeout: 60_000 }, async () => {
  const { client, servers } = m;
  const s0 = await stats(client);
  const big = await run(client, '/usr/bin/python3', [H2_FRAMES, 'oversized', WEB, '81']);
  assert.equal(big.code, 0, big.stderr);
  assert.match(big.stdout, /^goaway=6 /, big.stdout);
  const ns = await run(client, '/usr/bin/python3', [H2_FRAMES, 'no-settings', WEB, '81']);
  assert.equal(ns.code, 0, ns.stderr);
  assert.match(ns.stdout, /^goaway=1 /, ns.stdout);
  const s1 = await stats(client);
  assert.equal((s1.nativeHttp?.h2Connections ?? 0) - (s0.nativeHttp?.h2Connections ?? 0), 2, 'both went to the native codec');
  assert.equal(s1.httpRequests, s0.httpRequests);
  await new Promise((res) => setTimeout(res, 300));
  assert.ok(!servers.some((s) => s.proxyLog.some((l) => l.includes('/big-frame'))), 'the half-sent request never reached the app');
});

test('h2c on an http-declared port stays on the JS chain (its endpoint may speak HTTP/1.1 only)', { skip, timeout: 60_000 }, async () => {
  const { client } = m;
  const s0 = await stats(client);
  const r = await curl(client, ['--http2-prior-knowledge', `http://${PLAIN}/plain`]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal((JSON.parse(r.stdout) as { pod: string }).pod, 'h2web-1');
  const s1 = await stats(client);
  assert.equal(s1.httpRequests - s0.httpRequests, 1, 'the JS chain served it');
  assert.equal(s1.nativeHttp?.h2Connections, s0.nativeHttp?.h2Connections);
});
