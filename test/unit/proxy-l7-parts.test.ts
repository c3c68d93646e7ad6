// Pure parts of the proxy's protocol and HTTP layers: what a port declares,
// what first bytes mean, Host routing names, canonical workload labels, the
// peer-metadata header, the access log formats, grpc-timeout, gRPC message
// framing, LEAST_REQUEST.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { declaredProtocol } from '../../src/proxy/protocol/declared.js';
import { classify, sniFrom } from '../../src/proxy/protocol/sniff.js';
import { HostRoutes, splitAuthority } from '../../src/proxy/host-routes.js';
import { RouteTable } from '../../src/proxy/routing.js';
import { RegistryBuilder } from '../../src/controlplane/registry-builder.js';
import { decodePeer, encodePeer, parseDownwardLabels, workloadMeta } from '../../src/proxy/telemetry/workload.js';
import { formatJson, formatText, type AccessEntry } from '../../src/proxy/telemetry/access-log.js';
import { grpcTimeoutMs, upstreamRequestHeaders, downstreamResponseHeaders } from '../../src/proxy/http/headers.js';
import { GrpcMessageCounter } from '../../src/proxy/http/body.js';
import { LeastRequest } from '../../src/proxy/lb.js';
import { resolveProxyConfig } from '../../src/proxy/config.js';

test('declared protocol: appProtocol wins, then the name prefix before the first "-"', () => {
  assert.equal(declaredProtocol({ name: 'tcp-x', appProtocol: 'http' }), 'http');
  assert.equal(declaredProtocol({ name: 'x', appProtocol: 'kubernetes.io/h2c' }), 'http2');
  assert.equal(declaredProtocol({ name: 'http-web' }), 'http');
  assert.equal(declaredProtocol({ name: 'http2' }), 'http2');
  assert.equal(declaredProtocol({ name: 'grpc-web' }), 'grpc');
  assert.equal(declaredProtocol({ name: 'grpc-api' }), 'grpc');
  for (const n of ['tcp', 'mongo-db', 'redis', 'mysql-main']) assert.equal(declaredProtocol({ name: n }), 'tcp', n);
  assert.equal(declaredProtocol({ name: 'https-x' }), 'tls');
  assert.equal(declaredProtocol({ name: 'tls' }), 'tls');
  assert.equal(declaredProtocol({ name: 'web' }), undefined);
  assert.equal(declaredProtocol({ name: 'httpx' }), undefined, 'prefix means up to the dash, not a string prefix');
  assert.equal(declaredProtocol(undefined), undefined);
});

test('sniffing: h2 preface, HTTP/1.x request line, TLS ClientHello with SNI, anything else TCP; partial input waits', () => {
  const preface = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
  assert.deepEqual(classify(preface), { protocol: 'h2' });
  assert.equal(classify(preface.subarray(0, 10)), 'more');
  assert.deepEqual(classify(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n')), { protocol: 'http1' });
  assert.deepEqual(classify(Buffer.from('POST /a?b=c HTTP/1.0\r\n')), { protocol: 'http1' });
  assert.equal(classify(Buffer.from('GE')), 'more');
  assert.equal(classify(Buffer.from('GET /long/path/not/finished')), 'more');
  assert.deepEqual(classify(Buffer.from('get / HTTP/1.1\r\n')), { protocol: 'tcp' });
  assert.deepEqual(classify(Buffer.from('some request bytes')), { protocol: 'tcp' });
  assert.deepEqual(classify(Buffer.from('GET / HTTP/2.0\r\n')), { protocol: 'tcp' });
  assert.deepEqual(classify(Buffer.from('PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n')), { protocol: 'tcp' }, 'a bad preface is not h2');
  assert.deepEqual(classify(Buffer.from([0x16, 0x03, 0x01, 0x00])), 'more');
  const hello = clientHello('api.example.com');
  assert.deepEqual(classify(hello), { protocol: 'tls', sni: 'api.example.com' });
  assert.equal(sniFrom(hello.subarray(5, 20)), undefined, 'truncated hello: no SNI, no throw');
  assert.deepEqual(classify(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05, 0x02])), { protocol: 'tcp' }, 'a handshake that is not ClientHello');
});

/** A minimal TLS 1.2 ClientHello with one server_name extension. */
function clientHello(name: string): Buffer {
  const sni = Buffer.from(name);
  const ext = Buffer.concat([u16(0), u16(sni.length + 5), u16(sni.length + 3), Buffer.from([0]), u16(sni.length), sni]);
  const body = Buffer.concat([Buffer.from([3, 3]), Buffer.alloc(32), Buffer.from([0]), u16(2), Buffer.from([0x13, 0x01]), Buffer.from([1, 0]), u16(ext.length), ext]);
  const hs = Buffer.concat([Buffer.from([1, 0, body.length >> 8, body.length & 0xff]), body]);
  return Buffer.concat([Buffer.from([0x16, 3, 1]), u16(hs.length), hs]);
}
function u16(n: number): Buffer { const b = Buffer.alloc(2); b.writeUInt16BE(n); return b; }

function registry(): RouteTable {
  const b = new RegistryBuilder();
  b.upsertService({ metadata: { namespace: 'shop', name: 'web' }, spec: { clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80 }, { name: 'grpc', port: 9090 }] } });
  b.upsertService({ metadata: { namespace: 'other', name: 'api' }, spec: { clusterIP: '10.96.0.11', ports: [{ name: 'http', port: 80 }] } });
  b.upsertService({ metadata: { namespace: 'shop', name: 'legacy' }, spec: { type: 'ExternalName', externalName: 'api.other.svc.cluster.local' } });
  return new RouteTable(b.snapshot());
}

test('Host routing: every name form, with and without port, ClusterIP hosts, ExternalName aliases; short names only in the client namespace', () => {
  const h = new HostRoutes(registry(), 'shop');
  for (const host of ['web', 'web.shop', 'web.shop.svc', 'web.shop.svc.cluster.local', 'WEB.shop.svc.cluster.local.', '10.96.0.10']) {
    assert.equal(h.lookup(host, 80)?.service.name, 'web', host);
    assert.equal(h.lookup(`${host}:9090`, 80)?.servicePort.name, 'grpc', `${host}:9090`);
  }
  assert.equal(h.lookup('web.shop:81', 80), undefined, 'a port the service does not have');
  assert.equal(h.lookup('api', 80), undefined, 'bare names resolve in the client namespace only');
  assert.equal(h.lookup('api.other', 80)?.service.name, 'api');
  assert.equal(h.lookup('legacy.shop.svc.cluster.local', 80)?.service.name, 'api', 'ExternalName alias routes to its target');
  assert.equal(h.lookup('legacy', 80)?.service.name, 'api');
  assert.equal(h.lookup('example.com', 80), undefined);
  assert.equal(h.lookup(undefined, 80), undefined);
  assert.deepEqual(splitAuthority('[fd00::1]:8080'), { host: 'fd00::1', port: 8080 });
  assert.deepEqual(splitAuthority('fd00::1'), { host: 'fd00::1' });
  assert.deepEqual(splitAuthority('Web.Shop:80'), { host: 'web.shop', port: 80 });
});

test('canonical labels: service.istio.io/* first, then app.kubernetes.io/*, then app/version, then the workload / "latest"', () => {
  assert.deepEqual(workloadMeta('reviews', 'bookinfo', { 'service.istio.io/canonical-name': 'rev', 'service.istio.io/canonical-revision': 'v3', app: 'reviews', version: 'v2' }),
    { workload: 'reviews', namespace: 'bookinfo', app: 'reviews', version: 'v2', canonicalService: 'rev', canonicalRevision: 'v3' });
  assert.deepEqual(workloadMeta('w', 'n', { 'app.kubernetes.io/name': 'kname', 'app.kubernetes.io/version': '1.2', app: 'a', version: 'v' }),
    { workload: 'w', namespace: 'n', app: 'a', version: 'v', canonicalService: 'kname', canonicalRevision: '1.2' });
  assert.deepEqual(workloadMeta('w', 'n', { app: 'a', version: 'v' }), { workload: 'w', namespace: 'n', app: 'a', version: 'v', canonicalService: 'a', canonicalRevision: 'v' });
  assert.deepEqual(workloadMeta('w', 'n', {}), { workload: 'w', namespace: 'n', app: 'unknown', version: 'unknown', canonicalService: 'w', canonicalRevision: 'latest' });
  assert.deepEqual(parseDownwardLabels('app="web"\nversion="v1"\nservice.istio.io/canonical-name="x\\"y"\n', 'f'), { app: 'web', version: 'v1', 'service.istio.io/canonical-name': 'x"y' });
  assert.throws(() => parseDownwardLabels('app=web\n', '/etc/istio/pod/labels'), /\/etc\/istio\/pod\/labels.*line 1/);
});

test('peer metadata header: round trip; anything else is ignored, not trusted', () => {
  const m = workloadMeta('web', 'shop', { app: 'web', version: 'v1' });
  assert.deepEqual(decodePeer(encodePeer(m)), m);
  assert.equal(decodePeer('not base64 json'), undefined);
  assert.equal(decodePeer(Buffer.from(JSON.stringify(['a', 'b'])).toString('base64url')), undefined);
  assert.equal(decodePeer(Buffer.from(JSON.stringify(['a"x', 'b', 'c', 'd', 'e', 'f'])).toString('base64url')), undefined, 'label-unsafe characters');
  assert.equal(decodePeer(['x', 'y']), undefined);
});

test('access log: Istio\'s default text format field order, "-" for absent values, and the JSON keys', () => {
  const e: AccessEntry = {
    start: new Date('2026-12-01T10:00:00.123Z'), method: 'GET', path: '/a', protocol: 'HTTP/1.1', responseCode: 503, responseFlags: 'UF',
    responseCodeDetails: 'upstream_reset', bytesReceived: 0, bytesSent: 91, durationMs: 12.4, upstreamServiceTimeMs: undefined,
    userAgent: 'curl/7.88.1', requestId: 'rid', authority: 'web.shop', upstreamHost: '10.0.0.5:8080', upstreamCluster: 'outbound|80||web.shop.svc.cluster.local',
    downstreamLocalAddress: '10.96.0.10:80', downstreamRemoteAddress: '10.0.0.9:41234', routeName: 'default',
  };
  assert.equal(formatText(e), '[2026-12-01T10:00:00.123Z] "GET /a HTTP/1.1" 503 UF upstream_reset - "-" 0 91 12 - "-" "curl/7.88.1" "rid" "web.shop" "10.0.0.5:8080" outbound|80||web.shop.svc.cluster.local - 10.96.0.10:80 10.0.0.9:41234 - default');
  const j = JSON.parse(formatJson(e)) as Record<string, unknown>;
  assert.equal(j.response_flags, 'UF');
  assert.equal(j.upstream_cluster, 'outbound|80||web.shop.svc.cluster.local');
  assert.equal(j.x_forwarded_for, null);
  assert.equal(j.duration, 12);
});

test('headers: hop-by-hop (and Connection-named) dropped, te: trailers kept, x-request-id and x-forwarded-proto ensured', () => {
  const out = upstreamRequestHeaders({ ':method': 'GET', host: 'x', connection: 'keep-alive, x-drop', 'x-drop': '1', 'keep-alive': 'timeout=5', te: 'trailers', traceparent: 'tp', 'x-b3-traceid': 'b3', 'x-weir-peer': 'spoof' });
  assert.equal(out.te, 'trailers');
  assert.equal(out.traceparent, 'tp');
  assert.equal(out['x-b3-traceid'], 'b3');
  for (const k of [':method', 'host', 'connection', 'x-drop', 'keep-alive', 'x-weir-peer']) assert.equal(out[k], undefined, k);
  assert.match(String(out['x-request-id']), /^[0-9a-f-]{36}$/);
  assert.equal(out['x-forwarded-proto'], 'http');
  assert.equal(upstreamRequestHeaders({ 'x-request-id': 'mine' })['x-request-id'], 'mine');
  assert.deepEqual(downstreamResponseHeaders({ 'transfer-encoding': 'chunked', 'content-type': 't', 'x-weir-peer': 'p' }), { 'content-type': 't' });
});

test('grpc-timeout units; gRPC messages counted across chunk boundaries', () => {
  assert.equal(grpcTimeoutMs('100m'), 100);
  assert.equal(grpcTimeoutMs('5S'), 5000);
  assert.equal(grpcTimeoutMs('2M'), 120000);
  assert.equal(grpcTimeoutMs('1H'), 3600000);
  assert.equal(grpcTimeoutMs('1000u'), 1);
  assert.equal(grpcTimeoutMs('10x'), undefined);
  assert.equal(grpcTimeoutMs('123456789S'), undefined, 'at most 8 digits');
  const frame = (n: number) => Buffer.concat([Buffer.from([0, 0, 0, 0, n]), Buffer.alloc(n, 7)]);
  const all = Buffer.concat([frame(3), frame(0), frame(10), frame(1)]);
  for (const step of [1, 2, 5, 7, all.length]) {
    const c = new GrpcMessageCounter();
    for (let i = 0; i < all.length; i += step) c.push(all.subarray(i, i + step));
    assert.equal(c.count, 4, `chunks of ${step}`);
  }
});

test('LEAST_REQUEST: the endpoint with fewer requests in flight wins a pair; tried endpoints are avoided while others remain', () => {
  const lb = new LeastRequest();
  const a = { ip: '10.0.0.1', port: 80 }; const b = { ip: '10.0.0.2', port: 80 };
  const busy = Array.from({ length: 5 }, () => lb.acquire(a));
  for (let i = 0; i < 50; i++) assert.equal(lb.pick([a, b], new Set()), b);
  busy.forEach((r) => r());
  assert.equal(lb.stats(a.ip, a.port).activeRequests, 0);
  assert.equal(lb.stats(a.ip, a.port).totalRequests, 5);
  for (let i = 0; i < 20; i++) assert.equal(lb.pick([a, b], new Set(['10.0.0.2|80'])), a);
  assert.equal(lb.pick([a], new Set(['10.0.0.1|80'])), a, 'all tried: any endpoint rather than none');
  const seen = new Set<string>();
  const three = [a, b, { ip: '10.0.0.3', port: 80 }];
  for (let i = 0; i < 200; i++) seen.add(lb.pick(three, new Set())!.ip);
  assert.equal(seen.size, 3);
});

test('config: access log off by default, text/json, and a bad value names the flag; detection timeout and retries', () => {
  const d = resolveProxyConfig({}, {});
  assert.equal(d.accessLog, 'off');
  assert.equal(d.protocolDetectionTimeoutMs, 100);
  assert.equal(d.httpRetries, 2);
  assert.equal(resolveProxyConfig({ accessLog: 'json' }, {}).accessLog, 'json');
  assert.equal(resolveProxyConfig({ accessLog: false }, { WEIR_ACCESS_LOG: 'json' }).accessLog, 'off');
  assert.equal(resolveProxyConfig({}, { WEIR_ACCESS_LOG: 'text' }).accessLog, 'text');
  assert.throws(() => resolveProxyConfig({ accessLog: 'xml' }, {}), /--access-log/);
  assert.throws(() => resolveProxyConfig({ httpRetries: '-1' }, {}), /--http-retries/);
  assert.equal(resolveProxyConfig({ protocolDetectionTimeout: '250ms' }, {}).protocolDetectionTimeoutMs, 250);
});

test('config: the native HTTP/1.1 path is on by default; --http-engine js or WEIR_HTTP_ENGINE=js turn it off; a bad value names its source', () => {
  assert.equal(resolveProxyConfig({}, {}).httpEngine, 'native');
  assert.equal(resolveProxyConfig({ httpEngine: 'js' }, {}).httpEngine, 'js');
  assert.equal(resolveProxyConfig({}, { WEIR_HTTP_ENGINE: 'js' }).httpEngine, 'js');
  assert.equal(resolveProxyConfig({ httpEngine: 'native' }, { WEIR_HTTP_ENGINE: 'js' }).httpEngine, 'native');
  assert.throws(() => resolveProxyConfig({ httpEngine: 'fast' }, {}), /--http-engine/);
  assert.throws(() => resolveProxyConfig({}, { WEIR_HTTP_ENGINE: 'fast' }), /WEIR_HTTP_ENGINE/);
});
