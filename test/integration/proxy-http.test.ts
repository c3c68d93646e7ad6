// weir proxy as an HTTP proxy on the real kernel, through two proxies, with
// real clients: curl (HTTP/1.1, HTTP/1.0, --http2-prior-knowledge), h2load,
// nghttp. Client pod → (capture) → client proxy: protocol sniffed, request
// routed by Host and port, per-request LEAST_REQUEST over the service's
// endpoints, HTTP/2 to the server pod's proxy → inbound → the app over
// HTTP/1.1 from 127.0.0.6. Metrics and access log lines checked against
// the requests sent.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { skipUnlessRoot } from '../support/netns.js';
import { startHttpMesh } from '../support/http-mesh.js';
import { service, slice, type Cluster, type Pod } from './proxy-harness.js';
import { accessLines, curl, GRPC_CLIENT, RAPID_RESET, REPO_DIR, jsonAccessLines, labelsFile, run, waitFor } from './proxy-http-harness.js';

const skip = skipUnlessRoot();
const WEB = '10.96.55.10';
const API = '10.96.55.11';
const GRPC = '10.96.55.14';

let c: Cluster;
let client: Pod;
let servers: Pod[];
let outside: Pod;

before(async () => {
  if (skip) return;
  ({ c, client, servers, outside } = await startHttpMesh({
    client: 'client-6d4cf56db6-abcde', servers: ['web-1', 'web-2', 'web-3'], outside: 'outside',
    services: (m) => {
      const cp = m.c.cp!;
      cp.apply((b) => b.upsertService(service('web', 'shop', WEB, [{ name: 'http', port: 80 }])));
      cp.apply((b) => b.upsertEndpointSlice(slice('web', 'shop', 'web-a', m.servers.map((pod) => ({ pod })), [{ name: 'http', port: 8080 }])));
      // A second service nobody dials by VIP: reached by Host only. Only web-3 backs it.
      cp.apply((b) => b.upsertService(service('api', 'shop', API, [{ name: 'http-api', port: 80 }])));
      cp.apply((b) => b.upsertEndpointSlice(slice('api', 'shop', 'api-a', [{ pod: m.servers[2] }], [{ name: 'http-api', port: 8080 }])));
      // A mesh service whose endpoint has no proxy: the client proxy's HTTP/2 attempt falls back to HTTP/1.1.
      cp.apply((b) => b.upsertService(service('plain', 'elsewhere', '10.96.55.12', [{ name: 'http', port: 80 }])));
      cp.apply((b) => b.upsertEndpointSlice(slice('plain', 'elsewhere', 'plain-a', [{ pod: m.outside }], [{ name: 'http', port: 8080 }])));
      cp.apply((b) => b.upsertService(service('grpc', 'shop', GRPC, [{ name: 'grpc', port: 50051 }])));
      cp.apply((b) => b.upsertEndpointSlice(slice('grpc', 'shop', 'grpc-a', m.servers.map((pod) => ({ pod })), [{ name: 'grpc', port: 50051 }])));
      cp.apply((b) => b.upsertService({ metadata: { name: 'web-alias', namespace: 'shop' }, spec: { type: 'ExternalName', externalName: 'web.shop.svc.cluster.local' } }));
    },
    clientArgs: (m) => ['--access-log', 'text', '--pod-labels', labelsFile(m.c, m.client, { app: 'shopper', version: 'v7' }), '--no-dns'],
    serverArgs: (i, m) => ['--no-dns', '--pod-labels', labelsFile(m.c, m.servers[i], { 'app.kubernetes.io/name': 'web', 'service.istio.io/canonical-revision': `r${i + 1}`, version: 'v1' }), ...(i === 0 ? ['--access-log', 'json'] : [])],
  }));
});

after(async () => { await c?.destroy(); });

const podOf = (body: string) => (JSON.parse(body.split('\n')[0]) as { pod: string }).pod;

test('HTTP/1.1 keep-alive: several requests on one client connection, spread over the endpoints, app sees 127.0.0.6 and the added headers', { skip, timeout: 60_000 }, async () => {
  const urls = Array.from({ length: 12 }, (_, i) => `http://${WEB}/k${i}`);
  const r = await curl(client, ['-H', 'traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', '-w', '%{num_connects}\n', ...urls]);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  const bodies = lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { pod: string; remote: string; headers: Record<string, string> });
  assert.equal(bodies.length, 12);
  assert.equal(lines.filter((l) => l === '1').length, 1, 'curl opened exactly one connection');
  assert.ok(new Set(bodies.map((b) => b.pod)).size >= 2, `per-request LB: ${bodies.map((b) => b.pod)}`);
  for (const b of bodies) {
    assert.equal(b.remote.replace('::ffff:', ''), '127.0.0.6');
    assert.match(b.headers['x-request-id'], /^[0-9a-f-]{36}$/);
    assert.equal(b.headers['x-forwarded-proto'], 'http');
    // The trace continues (same trace id, sampled) with the server proxy's span as the app's parent; B3 says the same.
    assert.match(b.headers.traceparent, /^00-0af7651916cd43dd8448eb211c80319c-([0-9a-f]{16})-01$/);
    assert.notEqual(b.headers.traceparent.split('-')[2], 'b7ad6b7169203331');
    assert.equal(b.headers['x-b3-traceid'], '0af7651916cd43dd8448eb211c80319c');
    assert.equal(b.headers['x-b3-spanid'], b.headers.traceparent.split('-')[2]);
    assert.equal(b.headers['x-weir-peer'], undefined, 'exchange headers never reach the app');
  }
});

test('300 requests over ONE HTTP/2 connection (h2load) reach all three pods', { skip, timeout: 60_000 }, async () => {
  const before = await Promise.all(servers.map((s) => c.metric(s, 'istio_requests_total', { reporter: 'destination', destination_service_name: 'web' })));
  const r = await run(client, 'h2load', ['-n', '300', '-c', '1', '-m', '10', `http://${WEB}/h2load`]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /300 succeeded/);
  assert.match(r.stdout, /status codes: 300 2xx/);
  const after = await Promise.all(servers.map((s) => c.metric(s, 'istio_requests_total', { reporter: 'destination', destination_service_name: 'web', response_code: '200' })));
  const per = after.map((a, i) => a - before[i]);
  assert.equal(per.reduce((a, b) => a + b, 0), 300, `per pod ${per}`);
  assert.ok(per.every((n) => n >= 30), `each pod got a share: ${per}`);
});

test('curl --http2-prior-knowledge and HTTP/1.0 both work; the app is spoken to in HTTP/1.1', { skip, timeout: 60_000 }, async () => {
  const h2 = await curl(client, ['--http2-prior-knowledge', '-w', '\n%{http_version}', `http://${WEB}/pk`]);
  assert.equal(h2.code, 0, h2.stderr);
  assert.equal(h2.stdout.trim().split('\n').at(-1), '2');
  assert.equal((JSON.parse(h2.stdout.split('\n')[0]) as { proto: string }).proto, '1.1');
  const h10 = await curl(client, ['--http1.0', '-v', `http://${WEB}/ten`]);
  assert.equal(h10.code, 0, h10.stderr);
  assert.match(h10.stderr, /> GET \/ten HTTP\/1\.0/);
  assert.match(podOf(h10.stdout), /^web-[123]$/);
});

test('Host routing: a request dialled to the web VIP, or to any address, with Host api… goes to api (web-3 only)', { skip, timeout: 60_000 }, async () => {
  for (const host of ['api.shop.svc.cluster.local', 'api.shop.svc', 'api.shop', 'api', 'api.shop.svc.cluster.local:80', 'api:80']) {
    for (let i = 0; i < 3; i++) {
      const r = await curl(client, ['-H', `Host: ${host}`, `http://${WEB}/byhost`]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(podOf(r.stdout), 'web-3', `Host: ${host}`);
    }
  }
  // The seed's case: an address nothing routes (TEST-NET-1), Host names a service.
  const r = await curl(client, ['-H', 'Host: api.shop.svc.cluster.local', 'http://192.0.2.10/anywhere']);
  assert.equal(podOf(r.stdout), 'web-3');
  // ExternalName alias of web.
  const a = await curl(client, ['-H', 'Host: web-alias.shop.svc.cluster.local', `http://192.0.2.10/alias`]);
  assert.match(podOf(a.stdout), /^web-[123]$/);
});

test('unknown Host: passthrough to the original destination, still proxied as HTTP', { skip, timeout: 60_000 }, async () => {
  const before = await c.metric(client, 'istio_requests_total', { destination_service_name: 'PassthroughCluster', response_code: '200' });
  const r = await curl(client, ['-H', 'Host: example.com', `http://${outside.ip4}:8080/pass`]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(podOf(r.stdout), 'outside');
  assert.equal(await c.metric(client, 'istio_requests_total', { destination_service_name: 'PassthroughCluster', response_code: '200' }) - before, 1);
  // The ingress case: Host example.com dialled to a ClusterIP is not rerouted; the VIP leads nowhere here, so 503 UF.
  const v = await curl(client, ['-o', '/dev/null', '-w', '%{http_code}', '-H', 'Host: example.com', `http://${WEB}/vip`]);
  assert.equal(v.stdout, '503');
});

test('a mesh endpoint without a proxy gets HTTP/1.1 after its failed h2c preface', { skip, timeout: 60_000 }, async () => {
  for (let i = 0; i < 3; i++) {
    const r = await curl(client, [`http://10.96.55.12/plain${i}`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(podOf(r.stdout), 'outside');
  }
  const stats = JSON.parse((await c.httpGet(client, 15000, '/stats')).body) as { pools: { h2RefusedEndpoints: number } };
  assert.equal(stats.pools.h2RefusedEndpoints, 1);
});

test('bodies: 3 MiB chunked upload with Expect: 100-continue streams through intact; HEAD; streamed response', { skip, timeout: 60_000 }, async () => {
  const file = `${c.sockDir}/upload.bin`;
  await run(client, 'dd', ['if=/dev/urandom', `of=${file}`, 'bs=1M', 'count=3']);
  const want = (await run(client, 'sha256sum', [file])).stdout.split(' ')[0];
  const up = await curl(client, ['-H', 'Transfer-Encoding: chunked', '-H', 'Expect: 100-continue', '--data-binary', `@${file}`, `http://${WEB}/sha`]);
  assert.equal(up.code, 0, up.stderr);
  assert.match(up.stdout, new RegExp(`^web-[123] 3145728 ${want}\\n$`));
  const head = await curl(client, ['-I', `http://${WEB}/head`]);
  assert.match(head.stdout, /^HTTP\/1\.1 200/);
  assert.match(head.stdout, /content-length: \d+/i);
  const s = await curl(client, [`http://${WEB}/stream`]);
  assert.equal(s.stdout, 'ab\n');
});

test('limits: 431 for oversized headers, 400 for conflicting Content-Length/Transfer-Encoding', { skip, timeout: 60_000 }, async () => {
  const big = await curl(client, ['-o', '/dev/null', '-w', '%{http_code}', '-H', `X-Big: ${'a'.repeat(70 * 1024)}`, `http://${WEB}/big`]);
  assert.equal(big.stdout, '431');
  const sock = await c.connect(client, WEB, 80);
  sock.write('POST /smuggle HTTP/1.1\r\nHost: web\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /x HTTP/1.1\r\nHost: web\r\n\r\n');
  // The proxy answers and closes its side (FIN); the harness's sockets are half-open capable, so wait for 'end'.
  const reply = await new Promise<string>((r) => { let s = ''; sock.on('data', (d: Buffer) => { s += d.toString(); }); sock.on('end', () => r(s)); sock.on('close', () => r(s)); sock.resume(); });
  sock.destroy();
  assert.match(reply, /^HTTP\/1\.1 400/);
  assert.doesNotMatch(reply, /"url":"\/x"/, 'the smuggled request never reaches the app');
});

test('WebSocket upgrade passes through both proxies', { skip, timeout: 60_000 }, async () => {
  const sock = await c.connect(client, WEB, 80);
  sock.write(`GET /ws HTTP/1.1\r\nHost: web.shop\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`);
  let got = Buffer.alloc(0);
  sock.on('data', (d: Buffer) => { got = Buffer.concat([got, d]); });
  sock.resume();
  await waitFor(() => got.includes('\r\n\r\n'), 5000, '101');
  assert.match(got.toString('latin1'), /^HTTP\/1\.1 101 Switching Protocols\r\n[\s\S]*Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=/);
  const headEnd = got.indexOf('\r\n\r\n') + 4;
  const mask = Buffer.from([1, 2, 3, 4]);
  const payload = Buffer.from('hi');
  sock.write(Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, Buffer.from(payload.map((b, i) => b ^ mask[i % 4]))]));
  await waitFor(() => got.length > headEnd + 2 && got.length >= headEnd + 2 + got[headEnd + 1], 5000, 'echo frame');
  assert.match(got.subarray(headEnd + 2).toString(), /^web-[123]:hi$/);
  sock.destroy();
});

test('metrics and access log match the requests sent (counts, codes, flags, canonical labels)', { skip, timeout: 60_000 }, async () => {
  const sel = { reporter: 'source', destination_service_name: 'web', response_code: '200', response_flags: '-' };
  const before = await c.metric(client, 'istio_requests_total', sel);
  const b404 = await c.metric(client, 'istio_requests_total', { reporter: 'source', response_code: '404' });
  for (let i = 0; i < 5; i++) assert.equal((await curl(client, [`http://${WEB}/counted-${i}`])).code, 0);
  await curl(client, [`http://${WEB}/status/404`]);
  // A request is counted when its upstream stream ends, which can be a moment after curl has its last byte.
  await waitFor(async () => (await c.metric(client, 'istio_requests_total', sel)) - before >= 5, 3000, 'five requests counted');
  assert.equal(await c.metric(client, 'istio_requests_total', sel) - before, 5);
  assert.equal(await c.metric(client, 'istio_requests_total', { reporter: 'source', response_code: '404' }) - b404, 1);
  // Source side knows the destination from the metadata exchange: canonical service from app.kubernetes.io/name, revision from the label.
  assert.ok(await c.metric(client, 'istio_requests_total', { ...sel, source_canonical_service: 'shopper', source_canonical_revision: 'v7', source_app: 'shopper', source_version: 'v7', destination_canonical_service: 'web', destination_version: 'v1', request_protocol: 'http' }) >= 5);
  assert.ok(await c.metric(servers[0], 'istio_requests_total', { reporter: 'destination', source_canonical_service: 'shopper', source_workload: 'client', destination_canonical_revision: 'r1' }) >= 1);
  assert.ok(await c.metric(client, 'istio_request_duration_milliseconds_count', sel) >= 5);
  const bucket = (await c.httpGet(client, 15090, '/stats/prometheus')).body;
  assert.match(bucket, /istio_request_bytes_bucket\{[^}]*le="0.5"/);
  assert.match(bucket, /istio_response_bytes_bucket\{[^}]*le="3600000"/);
  // Access log (Istio's text format) on the client: one line per request, with code, flags, authority, cluster.
  await waitFor(() => accessLines(client).filter((l) => /"GET \/counted-\d HTTP\/1\.1" 200 - /.test(l)).length === 5, 3000, 'five access log lines');
  const line = accessLines(client).find((l) => l.includes('/counted-0'))!;
  assert.match(line, new RegExp(`"${WEB.replace(/\./g, '\\.')}" "10\\.\\d+\\.\\d+\\.\\d+:8080" outbound\\|80\\|\\|web\\.shop\\.svc\\.cluster\\.local `));
  assert.ok(accessLines(client).some((l) => /"GET \/status\/404 HTTP\/1\.1" 404 - /.test(l)));
  // Passthrough to a VIP nothing routes: connect failures, retried (same single target), then 503 UF,URX.
  assert.ok(accessLines(client).some((l) => /"GET \/vip HTTP\/1\.1" 503 UF(,URX)? /.test(l)), accessLines(client).filter((l) => l.includes('/vip')).join('\n'));
  // JSON on web-1's proxy.
  const j = jsonAccessLines(servers[0]);
  assert.ok(j.some((e) => e.upstream_cluster === 'inbound|8080||' && e.response_code === 200 && e.response_flags === '-'), JSON.stringify(j.slice(-2)));
});

test('TCP metric directions: N bytes sent, M received (istio_tcp_received_bytes_total = request, sent = response)', { skip, timeout: 60_000 }, async () => {
  // A declared-TCP port: web pods' 8080 answers HTTP, so send a request of known size and read the whole reply.
  c.cp!.apply((b) => b.upsertService(service('raw', 'shop', '10.96.55.13', [{ name: 'tcp-raw', port: 81 }])));
  c.cp!.apply((b) => b.upsertEndpointSlice(slice('raw', 'shop', 'raw-a', [{ pod: servers[0] }], [{ name: 'tcp-raw', port: 8080 }])));
  await c.cp!.waitAcked(c.cp!.stats().version as number);
  const sel = { reporter: 'source', destination_service_name: 'raw' };
  const [r0, s0] = [await c.metric(client, 'istio_tcp_received_bytes_total', sel), await c.metric(client, 'istio_tcp_sent_bytes_total', sel)];
  const req = `GET /${'p'.repeat(200)} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`;
  const sock = await c.connect(client, '10.96.55.13', 81);
  sock.write(req);
  const reply = await new Promise<Buffer>((r) => { const parts: Buffer[] = []; sock.on('data', (d: Buffer) => parts.push(d)); sock.on('end', () => r(Buffer.concat(parts))); sock.resume(); });
  sock.destroy();
  assert.ok(reply.length > 300);
  await waitFor(async () => (await c.metric(client, 'istio_tcp_connections_closed_total', sel)) >= 1, 3000, 'closed');
  assert.equal(await c.metric(client, 'istio_tcp_received_bytes_total', sel) - r0, Buffer.byteLength(req));
  assert.equal(await c.metric(client, 'istio_tcp_sent_bytes_total', sel) - s0, reply.length);
});

test('gRPC (grpc-js): unary spread over the pods on one channel, server/client/bidi streaming, status, deadline, cancellation reaching the server', { skip, timeout: 60_000 }, async () => {
  const r = await run(client, process.execPath, [GRPC_CLIENT, REPO_DIR, `${GRPC}:50051`]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const out = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
  assert.match(String(out.unary), /^web-[123]:u29$/);
  assert.deepEqual(out.unaryPods, ['web-1', 'web-2', 'web-3'], 'per-request LB over one HTTP/2 channel');
  assert.equal((out.server as string[]).length, 3);
  assert.match((out.server as string[]).join(','), /^(web-\d):0,\1:1,\1:2$/);
  assert.match(String(out.client), /^web-[123]:a,b,c$/);
  assert.equal((out.bidi as string[]).length, 3);
  assert.deepEqual(out.fail, { code: 5, details: 'nothing here' });
  assert.equal((out.deadline as { code: number }).code, 4);
  assert.equal((out.cancel as { code: number }).code, 1);
  // The client's cancel (and the deadline) reached the server app as a cancelled call.
  await waitFor(() => servers.some((s) => s.proxyLog.some((l) => /app: grpc cancelled/.test(l))), 5000, 'server saw the cancellation');
  assert.ok(await c.metric(client, 'istio_requests_total', { reporter: 'source', destination_service_name: 'grpc', request_protocol: 'grpc', grpc_response_status: '0', response_code: '200' }) >= 33);
  assert.ok(await c.metric(client, 'istio_requests_total', { reporter: 'source', destination_service_name: 'grpc', grpc_response_status: '5' }) >= 1);
  assert.ok(await c.metric(client, 'istio_request_messages_total', { reporter: 'source', destination_service_name: 'grpc' }) >= 36);
  assert.ok(await c.metric(client, 'istio_response_messages_total', { reporter: 'source', destination_service_name: 'grpc' }) >= 36);
});

test('HTTP/2 rapid reset: a client resetting streams en masse gets GOAWAY(ENHANCE_YOUR_CALM); the proxy keeps serving', { skip, timeout: 60_000 }, async () => {
  const r = await run(client, '/usr/bin/python3', [RAPID_RESET, WEB, '80', '3000']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /goaway=11\b/, `${r.stdout}\n${c.logs()}`);
  const after = await curl(client, [`http://${WEB}/still-up`]);
  assert.equal(after.code, 0, `${after.stderr}\n${c.logs()}`);
  assert.match(podOf(after.stdout), /^web-[123]$/);
});

test('protocol detection: a server-first protocol on an undeclared port works after the detection timeout; port 3306 is never sniffed', { skip, timeout: 60_000 }, async () => {
  const greeter = servers[0].ns.spawn(process.execPath, ['-e', "for (const p of [7070, 3306]) require('node:net').createServer((s) => { s.on('error', () => {}); s.end('server speaks first ' + p + '\\n'); }).listen(p, '::', () => console.log('up ' + p));"]);
  await new Promise((r) => greeter.stdout!.on('data', (d: Buffer) => { if (/up 3306/.test(String(d)) || /up 7070[\s\S]*/.test(String(d))) setTimeout(r, 100); }));
  c.cp!.apply((b) => b.upsertService(service('greeter', 'shop', '10.96.55.15', [{ name: 'greeter', port: 7070 }, { name: 'db', port: 3306 }])));
  c.cp!.apply((b) => b.upsertEndpointSlice(slice('greeter', 'shop', 'greeter-a', [{ pod: servers[0] }], [{ name: 'greeter', port: 7070 }, { name: 'db', port: 3306 }])));
  await c.cp!.waitAcked(c.cp!.stats().version as number);
  const timeouts0 = await c.metric(client, 'weir_proxy_protocol_detected_total', { direction: 'outbound', reason: 'timeout' });
  const greet = async (port: number) => {
    const t0 = performance.now();
    const s = await c.connect(client, '10.96.55.15', port);
    const line = await new Promise<string>((r) => { let b = ''; s.on('data', (d: Buffer) => { b += d; if (b.includes('\n')) r(b); }); s.resume(); });
    s.destroy();
    return { line, ms: performance.now() - t0 };
  };
  const a = await greet(7070);
  assert.equal(a.line, 'server speaks first 7070\n');
  assert.ok(await c.metric(client, 'weir_proxy_protocol_detected_total', { direction: 'outbound', reason: 'timeout' }) > timeouts0);
  const b = await greet(3306);
  assert.equal(b.line, 'server speaks first 3306\n');
  assert.ok(await c.metric(client, 'weir_proxy_protocol_detected_total', { direction: 'outbound', reason: 'server_first_port' }) >= 1);
  console.log(`# server-first greeting: undeclared port ${a.ms.toFixed(0)} ms (detection timeouts: 100 ms out, 1 s in), port 3306 ${b.ms.toFixed(0)} ms`);
  greeter.kill();
});

test('retries as Istio\'s default: a refused endpoint is skipped for another, a 503 is retried twice then returned', { skip, timeout: 60_000 }, async () => {
  // outside:9 refuses (no proxy there, nothing listening); web-2 answers.
  c.cp!.apply((b) => b.upsertService(service('flaky', 'shop', '10.96.55.16', [{ name: 'http', port: 80 }])));
  c.cp!.apply((b) => b.upsertEndpointSlice(slice('flaky', 'shop', 'flaky-a', [{ pod: outside }], [{ name: 'http', port: 9 }])));
  c.cp!.apply((b) => b.upsertEndpointSlice(slice('flaky', 'shop', 'flaky-b', [{ pod: servers[1] }], [{ name: 'http', port: 8080 }])));
  await c.cp!.waitAcked(c.cp!.stats().version as number);
  const connectRetries = () => c.metric(client, 'weir_proxy_http_retries_total', { direction: 'outbound', cause: 'connect' });
  const r0 = await connectRetries();
  for (let i = 0; i < 8; i++) {
    const r = await curl(client, [`http://10.96.55.16/f${i}`]);
    assert.equal(podOf(r.stdout), 'web-2', r.stderr);
  }
  assert.ok(await connectRetries() > r0, 'LEAST_REQUEST picks the refusing endpoint at least once in 8 requests, and the retry hides it');
  const retries503 = () => c.metric(client, 'weir_proxy_http_retries_total', { direction: 'outbound', cause: '503' });
  const b503 = await retries503();
  const r = await curl(client, ['-o', '/dev/null', '-w', '%{http_code}', `http://${WEB}/status/503`]);
  assert.equal(r.stdout, '503');
  assert.equal(await retries503() - b503, 2);
});
