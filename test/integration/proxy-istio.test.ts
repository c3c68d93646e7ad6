// Istio traffic management through two weir proxies on the real kernel:
// the client pod's proxy applies compiled VirtualService / DestinationRule
// config (--static-config), the server pods' proxies take the traffic in,
// real curl clients, servers that log every request they see (so retries
// and mirrors are counted server-side). Endpoint subsets select by the
// labels the control plane pushes with the endpoints.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import tls from 'node:tls';
import { skipUnlessRoot } from '../support/netns.js';
import type { CompiledProxyConfig, CompiledRetry } from '../../src/controlplane/resources.js';
import { readLine } from './proxy-harness.js';
import { curl, jsonAccessLines, waitFor } from './proxy-http-harness.js';
import { appRequests, cluster, DB, startTopology, WEB, WEB_FQDN, type IstioTopology } from './proxy-istio-harness.js';

const skip = skipUnlessRoot();
const web = (subset: string) => `outbound|80|${subset}|${WEB_FQDN}`;
const svc = { service: 'shop/web', port: 80, host: WEB_FQDN };
const NO_RETRY: CompiledRetry = { attempts: 0, retryOn: [], retriableStatusCodes: [], backoffBaseMs: 25 };
const to = (cluster: string, weight = 100) => ({ route: [{ cluster, weight }] });
const prefix = (p: string) => [{ uri: { prefix: p } }];

const CONFIG: CompiledProxyConfig = {
  clusters: [
    cluster(web(''), svc), cluster(web('v1'), { ...svc, subset: 'v1', selector: { version: 'v1' } }), cluster(web('v2'), { ...svc, subset: 'v2', selector: { version: 'v2' } }),
    cluster(web('od'), { ...svc, subset: 'od', outlierDetection: { consecutive5xxErrors: 2, intervalMs: 100, baseEjectionTimeMs: 4000, maxEjectionPercent: 100, minHealthPercent: 0 } }),
    cluster(web('cb'), { ...svc, subset: 'cb', connectionPool: { maxConnections: 1, http1MaxPendingRequests: 1, connectTimeoutMs: 10_000, idleTimeoutMs: 3_600_000 } }),
    cluster(web('hash'), { ...svc, subset: 'hash', loadBalancer: { simple: 'CONSISTENT_HASH', consistentHash: { httpHeaderName: 'x-user' } } }),
    cluster('outbound|80||mirror.shop.svc.cluster.local', { service: 'shop/mirror', port: 80, host: 'mirror.shop.svc.cluster.local' }),
    cluster('outbound|443|v1|tlsweb.shop.svc.cluster.local', { service: 'shop/tlsweb', port: 443, host: 'tlsweb.shop.svc.cluster.local', protocol: 'tls', subset: 'v1', selector: { version: 'v1' } }),
    cluster('outbound|443|v2|tlsweb.shop.svc.cluster.local', { service: 'shop/tlsweb', port: 443, host: 'tlsweb.shop.svc.cluster.local', protocol: 'tls', subset: 'v2', selector: { version: 'v2' } }),
    cluster('outbound|5000|v1|db.shop.svc.cluster.local', { service: 'shop/db', port: 5000, host: 'db.shop.svc.cluster.local', protocol: 'tcp', subset: 'v1', selector: { version: 'v1' } }),
    cluster('outbound|5000|v2|db.shop.svc.cluster.local', { service: 'shop/db', port: 5000, host: 'db.shop.svc.cluster.local', protocol: 'tcp', subset: 'v2', selector: { version: 'v2' } }),
  ],
  routes: [{
    port: 80,
    virtualHosts: [{
      name: `${WEB_FQDN}:80`, domains: ['web', 'web:80', WEB_FQDN, `${WEB_FQDN}:80`, WEB, `${WEB}:80`],
      routes: [
        { source: 'shop/web#http[0]', match: prefix('/split'), action: { route: [{ cluster: web('v1'), weight: 90 }, { cluster: web('v2'), weight: 10 }] }, retries: NO_RETRY, mirrors: [] },
        { source: 'shop/web#http[1]', match: prefix('/retry'), action: to(web('')), retries: { attempts: 3, retryOn: ['5xx'], retriableStatusCodes: [], backoffBaseMs: 25 }, mirrors: [] },
        { source: 'shop/web#http[12]', match: prefix('/ptt'), action: to(web('')), timeoutMs: 5000, retries: { attempts: 2, perTryTimeoutMs: 250, retryOn: ['5xx'], retriableStatusCodes: [], backoffBaseMs: 25 }, mirrors: [] },
        { source: 'shop/web#http[2]', match: prefix('/slow'), action: to(web('')), timeoutMs: 300, retries: NO_RETRY, mirrors: [] },
        { source: 'shop/web#http[3]', match: [{ headers: { 'x-fault': { exact: 'delay' } } }], action: to(web('')), fault: { delay: { fixedDelayMs: 400, percentage: 100 } }, retries: NO_RETRY, mirrors: [] },
        { source: 'shop/web#http[4]', match: [{ headers: { 'x-fault': { exact: 'abort' } } }], action: to(web('')), fault: { abort: { httpStatus: 418, percentage: 100 } }, retries: NO_RETRY, mirrors: [] },
        { source: 'shop/web#http[13]', match: [{ headers: { 'x-fault': { exact: 'grpc-abort' } } }], action: to(web('')), fault: { abort: { grpcStatus: 'UNAVAILABLE', percentage: 100 } }, retries: NO_RETRY, mirrors: [] },
        { source: 'shop/web#http[14]', match: prefix('/ws'), action: to(web('v2')), rewrite: { uri: '/sock' }, retries: NO_RETRY, mirrors: [] },
        { source: 'shop/web#http[5]', match: prefix('/od'), action: to(web('od')), retries: NO_RETRY, mirrors: [] },
        { source: 'shop/web#http[6]', match: prefix('/cb'), action: to(web('cb')), retries: NO_RETRY, mirrors: [] },
        { source: 'shop/web#http[7]', match: prefix('/hash'), action: to(web('hash')), retries: NO_RETRY, mirrors: [] },
        { source: 'shop/web#http[8]', match: prefix('/mirror'), action: to(web('v1')), retries: NO_RETRY, mirrors: [{ cluster: 'outbound|80||mirror.shop.svc.cluster.local', percentage: 100 }] },
        { source: 'shop/web#http[9]', match: [{ uri: { exact: '/old' } }], action: { redirect: { uri: '/new', redirectCode: 301 } }, mirrors: [] },
        { source: 'shop/web#http[10]', match: prefix('/direct'), action: { directResponse: { status: 200, body: 'hello direct' } }, mirrors: [] },
        {
          source: 'shop/web#http[11]', match: [{ uri: { regex: '/rw/[a-z]+' } }, { uri: { prefix: '/RW2' }, ignoreUriCase: true }],
          action: { route: [{ cluster: web(''), weight: 100, headers: { request: { add: { 'x-dest': 'all' } }, response: { remove: ['x-app-only'], set: { 'x-dest-resp': 'd' } } } }] }, retries: NO_RETRY, mirrors: [],
          rewrite: { uri: '/echo', authority: 'rewritten.example' },
          headers: { request: { set: { 'x-added': 'yes' }, remove: ['x-secret'] }, response: { set: { 'x-resp': 'r' } } },
          corsPolicy: { allowOrigins: [{ exact: 'https://shop.example' }], allowMethods: ['GET', 'PUT'], maxAge: '1h' },
        },
        { source: 'default', match: [], action: to(web('')), retries: NO_RETRY, mirrors: [] },
      ],
    }],
  }],
  l4: [
    // TLS passthrough by SNI (ServiceEntry-like hosts without addresses): api → v2, any other *.example.com → v1.
    { host: 'api.example.com', port: 443, protocol: 'tls', addresses: [], routes: [{ source: 'shop/api#tls[0]', match: [{ sniHosts: ['api.example.com'] }], route: [{ cluster: 'outbound|443|v2|tlsweb.shop.svc.cluster.local', weight: 100 }] }] },
    { host: '*.example.com', port: 443, protocol: 'tls', addresses: [], routes: [{ source: 'shop/wild#tls[0]', match: [{ sniHosts: ['*.example.com'] }], route: [{ cluster: 'outbound|443|v1|tlsweb.shop.svc.cluster.local', weight: 100 }] }] },
    { host: 'db.shop.svc.cluster.local', port: 5000, protocol: 'tcp', addresses: [DB], routes: [{ source: 'shop/db#tcp[0]', match: [], route: [{ cluster: 'outbound|5000|v1|db.shop.svc.cluster.local', weight: 80 }, { cluster: 'outbound|5000|v2|db.shop.svc.cluster.local', weight: 20 }] }] },
  ],
  ignored: [{ resource: 'shop/web', field: 'spec.http[0].delegate', message: 'delegate is not supported' }],
};

let t: IstioTopology;
before(async () => { if (!skip) t = await startTopology(CONFIG, { outboundTrafficPolicy: { mode: 'REGISTRY_ONLY' } }); });
after(async () => { await t?.c.destroy(); });

const podOf = (line: string) => (JSON.parse(line) as { pod: string }).pod;
const logFor = (id: string) => jsonAccessLines(t.client).find((l) => l.request_id === id);
async function waitLog(id: string): Promise<Record<string, unknown>> {
  await waitFor(() => logFor(id) !== undefined, 5000, `access log line for ${id}`);
  return logFor(id)!;
}

test('weighted 90/10 between subsets (selected by endpoint labels), measured over 1,000 requests', { skip, timeout: 120_000 }, async () => {
  const urls = Array.from({ length: 1000 }, (_, i) => `http://${WEB}/split/${i}`);
  const r = await curl(t.client, ['--max-time', '100', ...urls]);
  assert.equal(r.code, 0, r.stderr);
  const pods = r.stdout.trim().split('\n').map(podOf);
  assert.equal(pods.length, 1000);
  const v2 = pods.filter((p) => p === 'web-3').length;
  assert.ok(pods.every((p) => /^web-[123]$/.test(p)));
  console.log(`# weighted 90/10 over 1000 requests: v2 (web-3) got ${v2 / 10} %`);
  assert.ok(v2 >= 50 && v2 <= 150, `v2 got ${v2 / 10} % (want 10 ± 5 %)`);
  assert.ok(pods.includes('web-1') && pods.includes('web-2'), 'v1 spread over both v1 pods');
});

test('retries: attempts 3 on 5xx are seen at the servers (4 tries), then 503 with URX', { skip, timeout: 60_000 }, async () => {
  const r = await curl(t.client, ['-H', 'x-request-id: retry-1', '-o', '/dev/null', '-w', '%{http_code}', `http://${WEB}/retry/status/503`]);
  assert.equal(r.stdout, '503');
  const seen = t.servers.flatMap((s) => appRequests(s).filter((q) => q.id === 'retry-1').map(() => s.name));
  assert.equal(seen.length, 4, `attempts at the servers: ${seen}`);
  assert.ok(new Set(seen).size >= 2, 'retries prefer another endpoint');
  assert.match(String((await waitLog('retry-1')).response_flags), /URX/);
  const ok = await curl(t.client, ['-H', 'x-request-id: retry-2', '-o', '/dev/null', '-w', '%{http_code}', `http://${WEB}/retry/x`]);
  assert.equal(ok.stdout, '200');
  assert.equal(t.servers.flatMap((s) => appRequests(s).filter((q) => q.id === 'retry-2')).length, 1, 'a success is not retried');
});

test('timeout: 504 UT when the upstream is slower than the route timeout', { skip, timeout: 60_000 }, async () => {
  const t0 = Date.now();
  const r = await curl(t.client, ['-H', 'x-request-id: slow-1', '-o', '/dev/null', '-w', '%{http_code}', `http://${WEB}/slow/delay/3000`]);
  assert.equal(r.stdout, '504');
  assert.ok(Date.now() - t0 < 2500, `answered at the timeout, not after the upstream (${Date.now() - t0} ms)`);
  const l = await waitLog('slow-1');
  assert.equal(l.response_flags, 'UT');
  assert.equal(l.response_code, 504);
});

test('perTryTimeout: each slow attempt is cut and retried (3 seen at the servers), then 504 UT,URX', { skip, timeout: 60_000 }, async () => {
  const t0 = Date.now();
  const r = await curl(t.client, ['-H', 'x-request-id: ptt-1', '-o', '/dev/null', '-w', '%{http_code}', `http://${WEB}/ptt/delay/3000`]);
  assert.equal(r.stdout, '504');
  const ms = Date.now() - t0;
  assert.ok(ms >= 700 && ms < 2500, `three tries of 250 ms (${ms} ms)`);
  await waitFor(() => t.servers.flatMap((s) => appRequests(s).filter((q) => q.id === 'ptt-1')).length === 3, 3000, 'three attempts at the servers');
  assert.equal((await waitLog('ptt-1')).response_flags, 'UT,URX');
});

test('fault injection: delay (DI) and abort (FI, never reaches a server)', { skip, timeout: 60_000 }, async () => {
  const t0 = Date.now();
  const d = await curl(t.client, ['-H', 'x-fault: delay', '-H', 'x-request-id: di-1', '-o', '/dev/null', '-w', '%{http_code}', `http://${WEB}/f`]);
  assert.equal(d.stdout, '200');
  assert.ok(Date.now() - t0 >= 400, `delayed ${Date.now() - t0} ms`);
  assert.equal((await waitLog('di-1')).response_flags, 'DI');
  const a = await curl(t.client, ['-H', 'x-fault: abort', '-H', 'x-request-id: fi-1', '-o', '/dev/null', '-w', '%{http_code}', `http://${WEB}/f`]);
  assert.equal(a.stdout, '418');
  assert.equal((await waitLog('fi-1')).response_flags, 'FI');
  assert.equal(t.servers.flatMap((s) => appRequests(s).filter((q) => q.id === 'fi-1')).length, 0);
  // A gRPC abort reaches a gRPC client as grpc-status in a Trailers-Only response.
  const g = await curl(t.client, ['--http2-prior-knowledge', '-i', '-H', 'content-type: application/grpc', '-H', 'x-fault: grpc-abort', '-H', 'x-request-id: fi-2', '--data-binary', '', `http://${WEB}/t.T/Unary`]);
  assert.match(g.stdout, /^HTTP\/2 200/);
  assert.match(g.stdout, /^grpc-status: 14\r$/m);
  const gl = await waitLog('fi-2');
  assert.equal(gl.response_flags, 'FI');
});

test('outlier detection: two consecutive 500s eject web-1, then it returns after baseEjectionTime', { skip, timeout: 60_000 }, async () => {
  // One curl, keep-alive: 12 requests in well under the 4 s ejection.
  const r = await curl(t.client, ['-w', '%{http_code}\n', ...Array.from({ length: 12 }, () => `http://${WEB}/od/fail-on/web-1/500`)]);
  const lines = r.stdout.trim().split('\n');
  const codes = lines.filter((l) => /^\d{3}$/.test(l));
  const pods = lines.filter((l) => l.startsWith('{')).map(podOf);
  assert.equal(codes.filter((c) => c === '500').length, 2, `codes ${codes}`);
  assert.deepEqual(codes.slice(-6), ['200', '200', '200', '200', '200', '200']);
  assert.ok(!pods.slice(-6).includes('web-1'), `ejected web-1 takes no traffic: ${pods}`);
  const view = async () => {
    const clusters = JSON.parse((await t.c.httpGet(t.client, 15000, '/clusters')).body) as { compiled: { name: string; endpoints: { pod: string; health: string }[]; outlierDetection: { ejectionsTotal: number } }[] };
    return clusters.compiled.find((x) => x.name === web('od'))!;
  };
  const v = await view();
  assert.equal(v.endpoints.find((e) => e.pod === 'web-1')!.health, 'EJECTED');
  assert.equal(v.outlierDetection.ejectionsTotal, 1);
  assert.equal(await t.c.metric(t.client, 'envoy_cluster_outlier_detection_ejections_active', { cluster_name: web('od') }), 1);
  assert.equal(await t.c.metric(t.client, 'envoy_cluster_outlier_detection_ejections_enforced_total', { cluster_name: web('od') }), 1);
  const ejectedAt = Date.now();
  await waitFor(async () => (await view()).endpoints.find((e) => e.pod === 'web-1')!.health === 'HEALTHY', 8000, 'web-1 back');
  assert.ok(Date.now() - ejectedAt >= 2500, `not back before baseEjectionTime (${Date.now() - ejectedAt} ms)`);
  const again = [];
  for (let i = 0; i < 6; i++) again.push(podOf((await curl(t.client, [`http://${WEB}/od/ok`])).stdout));
  assert.ok(again.includes('web-1'), `web-1 takes traffic again: ${again}`);
});

test('connection pool overflow: maxConnections 1 + 1 pending, the rest get 503 UO', { skip, timeout: 60_000 }, async () => {
  const rs = await Promise.all(Array.from({ length: 6 }, (_, i) => curl(t.client, ['-H', `x-request-id: cb-${i}`, '-o', '/dev/null', '-w', '%{http_code}', `http://${WEB}/cb/delay/1500`])));
  const codes = rs.map((r) => r.stdout);
  const overflow = codes.filter((c) => c === '503').length;
  assert.ok(codes.filter((c) => c === '200').length >= 2, `codes ${codes}`);
  assert.ok(overflow >= 3, `codes ${codes}`);
  for (let i = 0; i < 6; i++) if (codes[i] === '503') assert.equal((await waitLog(`cb-${i}`)).response_flags, 'UO');
  assert.ok(await t.c.metric(t.client, 'envoy_cluster_upstream_rq_pending_overflow', { cluster_name: web('cb') }) >= overflow);
});

test('consistent hash on a header pins each value to one pod', { skip, timeout: 60_000 }, async () => {
  const alice = await curl(t.client, ['-H', 'x-user: alice', ...Array.from({ length: 20 }, (_, i) => `http://${WEB}/hash/${i}`)]);
  const pods = alice.stdout.trim().split('\n').map(podOf);
  assert.equal(pods.length, 20);
  assert.equal(new Set(pods).size, 1, `alice went to ${[...new Set(pods)]}`);
  const users = [];
  for (let i = 0; i < 20; i++) users.push(podOf((await curl(t.client, ['-H', `x-user: u${i}`, `http://${WEB}/hash/x`])).stdout));
  assert.ok(new Set(users).size >= 2, 'different values spread');
});

test('mirror: the mirror sees a copy with a -shadow host; the response is the primary\'s', { skip, timeout: 60_000 }, async () => {
  const r = await curl(t.client, ['-H', 'Host: web', '-H', 'x-request-id: mirror-1', '-d', 'payload', `http://${WEB}/mirror/a`]);
  assert.match(podOf(r.stdout), /^web-[12]$/);
  await waitFor(() => appRequests(t.mirror).some((q) => q.id === 'mirror-1'), 5000, 'mirror got the copy');
  const q = appRequests(t.mirror).find((x) => x.id === 'mirror-1')!;
  assert.equal(q.host, 'web-shadow');
  assert.equal(q.url, '/mirror/a');
});

test('redirect, direct response, rewrite with header ops and CORS', { skip, timeout: 60_000 }, async () => {
  const red = await curl(t.client, ['-H', 'Host: web', '-o', '/dev/null', '-w', '%{http_code} %{redirect_url}', `http://${WEB}/old?x=1`]);
  assert.equal(red.stdout, '301 http://web/new?x=1');
  const dir = await curl(t.client, ['-w', ' %{http_code}', `http://${WEB}/direct`]);
  assert.equal(dir.stdout, 'hello direct 200');
  assert.equal(t.servers.flatMap((s) => appRequests(s).filter((q) => q.url.startsWith('/direct'))).length, 0);
  for (const p of ['/rw/abc?q=1', '/rw2/x']) {
    const rw = await curl(t.client, ['-i', '-H', 'x-secret: s', '-H', 'Origin: https://shop.example', `http://${WEB}${p}`]);
    const body = JSON.parse(rw.stdout.slice(rw.stdout.indexOf('{'))) as { url: string; host: string; headers: Record<string, string> };
    // After a regex match the whole path is replaced; after a prefix match, the prefix (case-insensitively matched) only.
    assert.equal(body.url, p === '/rw/abc?q=1' ? '/echo?q=1' : '/echo/x', `rewrite of ${p}`);
    assert.equal(body.host, 'rewritten.example');
    assert.equal(body.headers['x-added'], 'yes');
    assert.equal(body.headers['x-secret'], undefined);
    assert.equal(body.headers['x-dest'], 'all', 'per-destination request header');
    assert.match(rw.stdout, /^x-dest-resp: d\r$/m);
    assert.match(rw.stdout, /^x-resp: r\r$/m);
    assert.match(rw.stdout, /^access-control-allow-origin: https:\/\/shop\.example\r$/m);
  }
  const pre = await curl(t.client, ['-i', '-X', 'OPTIONS', '-H', 'Origin: https://shop.example', '-H', 'Access-Control-Request-Method: PUT', `http://${WEB}/rw/abc`]);
  assert.match(pre.stdout, /^HTTP\/1\.1 200/);
  assert.match(pre.stdout, /^access-control-allow-methods: GET,PUT\r$/m);
  assert.match(pre.stdout, /^access-control-max-age: 3600\r$/m);
});

test('upgrade (WebSocket) requests follow the compiled route: subset v2, path rewritten, then bytes both ways', { skip, timeout: 60_000 }, async () => {
  for (let i = 0; i < 3; i++) {
    const s = await t.c.connect(t.client, WEB, 80);
    s.write('GET /ws/chat HTTP/1.1\r\nHost: web\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
    let buf = '';
    await new Promise<void>((resolve, reject) => {
      s.on('data', (d: Buffer) => { buf += d.toString(); if (buf.includes('\r\n\r\n')) resolve(); });
      s.once('close', () => reject(new Error(`closed: ${buf}`)));
    });
    assert.match(buf, /^HTTP\/1\.1 101/);
    assert.match(buf, /^X-Pod: web-3\r$/m);
    assert.match(buf, /^X-Url: \/sock\/chat\r$/m);
    buf = '';
    s.write('ping');
    await waitFor(() => buf === 'ping', 3000, 'echo through the upgraded connection');
    s.destroy();
  }
});

test('REGISTRY_ONLY: unknown destinations get 502 NR (HTTP) and a reset (TCP); known services still work', { skip, timeout: 60_000 }, async () => {
  const blocked = await curl(t.locked, ['-H', 'x-request-id: ro-1', '-o', '/dev/null', '-w', '%{http_code}', `http://${t.outside.ip4}:8080/`]);
  assert.equal(blocked.stdout, '502');
  const l = await waitFor(() => jsonAccessLines(t.locked).some((x) => x.request_id === 'ro-1'), 5000, 'log').then(() => jsonAccessLines(t.locked).find((x) => x.request_id === 'ro-1')!);
  assert.equal(l.response_flags, 'NR');
  assert.equal(l.upstream_cluster, 'BlackHoleCluster');
  assert.equal(appRequests(t.outside).length, 0);
  const known = await curl(t.locked, ['-o', '/dev/null', '-w', '%{http_code}', `http://${WEB}/known`]);
  assert.equal(known.stdout, '200');
  // ALLOW_ANY (the client) reaches the same address.
  assert.equal((await curl(t.client, ['-o', '/dev/null', '-w', '%{http_code}', `http://${t.outside.ip4}:8080/`])).stdout, '200');
  const s = await t.c.connect(t.locked, t.outside.ip4, 9000);
  const got: Buffer[] = [];
  s.on('data', (d: Buffer) => got.push(d));
  await new Promise((r) => s.once('close', r));
  assert.equal(Buffer.concat(got).length, 0, 'no byte of the server reached the client');
  assert.match(String((s as { lastError?: Error }).lastError), /ECONNRESET/);
  const open = await t.c.connect(t.client, t.outside.ip4, 9000);
  assert.equal(await readLine(open), 'hello from outside');
  open.destroy();
});

test('tcp route: weighted 80/20 split over subsets, 400 connections', { skip, timeout: 120_000 }, async () => {
  const pods: string[] = [];
  for (let i = 0; i < 400; i++) {
    const s = await t.c.connect(t.client, DB, 5000);
    pods.push((await readLine(s)).replace('hello from ', ''));
    s.destroy();
  }
  const v2 = pods.filter((p) => p === 'web-3').length;
  assert.ok(pods.every((p) => /^web-[123]$/.test(p)), `${new Set(pods)}`);
  console.log(`# tcp 80/20 over 400 connections: v2 (web-3) got ${v2 / 4} %`);
  assert.ok(v2 >= 56 && v2 <= 104, `v2 got ${v2 / 4} % (want 20 ± 6 %)`);
});

test('tls route: the ClientHello SNI picks the route (api.example.com → v2, other *.example.com → v1), TLS end to end', { skip, timeout: 60_000 }, async () => {
  const hello = async (sni: string) => {
    const raw = await t.c.connect(t.client, '192.0.2.10', 443);
    const s = tls.connect({ socket: raw, servername: sni, rejectUnauthorized: false });
    s.on('error', () => {});
    const line = await readLine(s as unknown as import('node:net').Socket);
    s.destroy();
    return line;
  };
  for (let i = 0; i < 3; i++) assert.equal(await hello('api.example.com'), 'hello from web-3 sni=api.example.com');
  const v1 = new Set<string>();
  for (let i = 0; i < 4; i++) v1.add(await hello('shop.example.com'));
  assert.ok([...v1].every((l) => /^hello from web-[12] sni=shop\.example\.com$/.test(l)), [...v1].join());
});

test('config_dump shows the applied routes, clusters, outbound policy and what was ignored', { skip, timeout: 30_000 }, async () => {
  const dump = JSON.parse((await t.c.httpGet(t.client, 15000, '/config_dump')).body) as { compiled: { routes: { virtualHosts: { routes: unknown[] }[] }[]; clusters: unknown[]; l4: unknown[]; ignored: unknown[]; outboundTrafficPolicy: { mode: string } } };
  assert.equal(dump.compiled.routes[0].virtualHosts[0].routes.length, CONFIG.routes[0].virtualHosts[0].routes.length);
  assert.equal(dump.compiled.clusters.length, CONFIG.clusters.length);
  assert.equal(dump.compiled.l4.length, 3);
  assert.deepEqual(dump.compiled.ignored, CONFIG.ignored);
  assert.equal(dump.compiled.outboundTrafficPolicy.mode, 'ALLOW_ANY');
  const locked = JSON.parse((await t.c.httpGet(t.locked, 15000, '/config_dump')).body) as { compiled: { outboundTrafficPolicy: { mode: string } } };
  assert.equal(locked.compiled.outboundTrafficPolicy.mode, 'REGISTRY_ONLY');
});
