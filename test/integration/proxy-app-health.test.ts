// The proxy's status port against real app servers on loopback: the
// original probes (ISTIO_KUBE_APP_PROBERS, as the injector writes them) are
// performed from 127.0.0.6 over HTTP, HTTPS (unverified, like the kubelet),
// TCP and gRPC health (a @grpc/grpc-js server), and answered on
// /app-health/...; POST /quitquitquit asks the proxy to exit.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import * as path from 'node:path';
import type { AddressInfo } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { pino } from 'pino';
import { createCA, issueServingCert } from '../../src/injector/certs.js';
import { rewriteProbes } from '../../src/injector/probes.js';
import { startStatusServer, statusSettingsFromEnv, type StatusServer } from '../../src/proxy/app-health.js';
import type { Container } from '../../src/injector/k8s.js';

const seen: string[] = [];
const servers: { close(): void }[] = [];
let grpcServer: grpc.Server;
let status: StatusServer;
const quits: string[] = [];
const ports: Record<string, number> = {};

function listen(s: net.Server): Promise<number> {
  return new Promise((r) => s.listen(0, '127.0.0.1', () => r((s.address() as AddressInfo).port)));
}

function get(p: string, method = 'GET'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: status.port, path: p, method, agent: false }, (res) => {
      let body = ''; res.on('data', (d) => { body += d; }); res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

before(async () => {
  const app = (tag: string) => (q: http.IncomingMessage, s: http.ServerResponse) => {
    seen.push(`${tag} ${q.url} ${q.socket.remoteAddress} ${q.headers['x-probe'] ?? ''}`);
    s.writeHead(q.url === '/ok' ? 200 : q.url === '/moved' ? 302 : 500, q.url === '/moved' ? { location: '/ok' } : {});
    s.end();
  };
  const h = http.createServer(app('http')); servers.push(h); ports.http = await listen(h);
  const ca = await createCA('test-ca', 86_400_000);
  const leaf = await issueServingCert(ca, ['app.local'], 86_400_000);
  const hs = https.createServer({ cert: leaf.certPem, key: leaf.keyPem }, app('https')); servers.push(hs); ports.https = await listen(hs);
  const t = net.createServer((s) => { seen.push(`tcp ${s.remoteAddress}`); s.end(); }); servers.push(t); ports.tcp = await listen(t);
  const closed = net.createServer(); ports.closed = await listen(closed); closed.close();

  const def = protoLoader.loadSync(path.join(import.meta.dirname, '../support/proto/health.proto'), { keepCase: true, enums: String });
  const pkg = grpc.loadPackageDefinition(def) as any;
  grpcServer = new grpc.Server();
  grpcServer.addService(pkg.grpc.health.v1.Health.service, {
    Check: (call: grpc.ServerUnaryCall<{ service: string }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      seen.push(`grpc ${call.request.service ?? ""} ${call.getPeer()}`);
      if (call.request.service === 'gone') { cb({ code: grpc.status.NOT_FOUND, details: 'unknown service' }); return; }
      cb(null, { status: call.request.service === 'sick' ? 'NOT_SERVING' : 'SERVING' });
    },
  });
  ports.grpc = await new Promise((r, j) => grpcServer.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? j(e) : r(p))));

  // The probes as a pod declares them, rewritten by the injector's code.
  const containers: Container[] = [
    { name: 'web', ports: [{ name: 'http', containerPort: ports.http }], readinessProbe: { httpGet: { path: '/ok', port: 'http', httpHeaders: [{ name: 'X-Probe', value: 'yes' }] } }, livenessProbe: { httpGet: { path: '/fail', port: ports.http } }, startupProbe: { httpGet: { path: '/moved', port: ports.http } } },
    { name: 'secure', readinessProbe: { httpGet: { path: '/ok', port: ports.https, scheme: 'HTTPS' } } },
    { name: 'raw', readinessProbe: { tcpSocket: { port: ports.tcp } }, livenessProbe: { tcpSocket: { port: ports.closed } } },
    { name: 'rpc', readinessProbe: { grpc: { port: ports.grpc } }, livenessProbe: { grpc: { port: ports.grpc, service: 'sick' } }, startupProbe: { grpc: { port: ports.grpc, service: 'gone' } } },
  ];
  const probers = rewriteProbes(containers, 'spec.containers');
  const settings = statusSettingsFromEnv({ WEIR_STATUS_PORT: '15020', ISTIO_KUBE_APP_PROBERS: JSON.stringify(probers), INSTANCE_IP: '127.0.0.1' })!;
  status = await startStatusServer({ ...settings, port: 0 }, { ready: () => ({ ready: true, reason: 'test' }), quit: (r) => quits.push(r), logger: pino({ level: 'silent' }) });
});

after(async () => {
  await status?.close();
  for (const s of servers) s.close();
  grpcServer?.forceShutdown();
});

test('HTTP probe: app 200 → 200, app 500 → 500, redirect counts as success; from 127.0.0.6 with the headers', async () => {
  assert.equal((await get('/app-health/web/readyz')).status, 200);
  assert.ok(seen.includes('http /ok 127.0.0.6 yes'), seen.join('\n'));
  const fail = await get('/app-health/web/livez');
  assert.equal(fail.status, 500);
  assert.match(fail.body, /→ 500/);
  assert.equal((await get('/app-health/web/startupz')).status, 200);
});

test('HTTPS probe (self-signed app cert) is answered over plain HTTP to the kubelet', async () => {
  const r = await get('/app-health/secure/readyz');
  assert.equal(r.status, 200, r.body);
  assert.ok(seen.some((l) => l.startsWith('https /ok 127.0.0.6')));
});

test('TCP probe: connect → 200, refused → 503', async () => {
  assert.equal((await get('/app-health/raw/readyz')).status, 200);
  assert.ok(seen.includes('tcp 127.0.0.6'));
  const refused = await get('/app-health/raw/livez');
  assert.equal(refused.status, 503);
  assert.match(refused.body, /ECONNREFUSED/);
});

test('gRPC health probe: SERVING → 200, NOT_SERVING and NOT_FOUND → 503', async () => {
  assert.equal((await get('/app-health/rpc/readyz')).status, 200);
  assert.ok(seen.some((l) => /^grpc  127\.0\.0\.6:/.test(l)), seen.join('\n'));
  const sick = await get('/app-health/rpc/livez');
  assert.equal(sick.status, 503);
  assert.match(sick.body, /status 2/);
  const gone = await get('/app-health/rpc/startupz');
  assert.equal(gone.status, 503);
  assert.match(gone.body, /grpc-status 5/);
});

test('unknown paths 404, quitquitquit needs POST and then asks the proxy to exit', async () => {
  assert.equal((await get('/app-health/nobody/readyz')).status, 404);
  assert.equal((await get('/healthz/ready')).status, 200);
  assert.equal((await get('/quitquitquit')).status, 405);
  assert.deepEqual(quits, []);
  assert.equal((await get('/quitquitquit', 'POST')).status, 200);
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(quits, ['POST /quitquitquit']);
});

test('bad environment is an error naming the variable', () => {
  assert.throws(() => statusSettingsFromEnv({ ISTIO_KUBE_APP_PROBERS: '{"x":' }), /ISTIO_KUBE_APP_PROBERS: is not JSON/);
  assert.throws(() => statusSettingsFromEnv({ ISTIO_KUBE_APP_PROBERS: '{"/healthz":{"tcpSocket":{"port":1}}}' }), /ISTIO_KUBE_APP_PROBERS\["\/healthz"\]: path must be/);
  assert.throws(() => statusSettingsFromEnv({ ISTIO_KUBE_APP_PROBERS: '{"/app-health/a/readyz":{"tcpSocket":{"port":70000}}}' }), /tcpSocket\.port: must be a port number/);
  assert.throws(() => statusSettingsFromEnv({ WEIR_STATUS_PORT: 'x' }), /WEIR_STATUS_PORT/);
  assert.throws(() => statusSettingsFromEnv({ WEIR_EXIT_WHEN_APP_EXITS: 'yes' }), /WEIR_EXIT_WHEN_APP_EXITS/);
  assert.equal(statusSettingsFromEnv({ WEIR_STATUS_PORT: 'off' }), undefined);
});
