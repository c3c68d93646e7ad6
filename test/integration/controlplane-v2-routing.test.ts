// The whole path on the real kernel: a DestinationRule and a VirtualService
// applied through the API server (list/watch) → the agent's control plane
// (endpoint labels from the pod informer, compiled per namespace, v2 push) →
// the client's weir proxy routes by them (curl as the client). Which server answers changes when
// the VirtualService is applied, and again when it is changed.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { skipUnlessRoot } from '../support/netns.js';
import { TestApiServer } from '../support/apiserver.js';
import { loadKubeConfig } from '../../src/kube/informers.js';
import { IstioConfigSource, IstioConfigStore } from '../../src/controlplane/istio-source.js';
import { istioCompiledSource } from '../../src/controlplane/v2/compiled-source.js';
import { Cluster, REPO, waitForLine, type Pod } from './proxy-harness.js';
import { curl } from './proxy-http-harness.js';

const skip = skipUnlessRoot();
let c: Cluster;
let api: TestApiServer;
let istio: IstioConfigSource;
let client: Pod;
let v1: Pod;
let v2: Pod;
const dir = mkdtempSync(path.join(tmpdir(), 'wx-cp2r-'));
const VIP = `10.96.${10 + Math.floor(Math.random() * 200)}.9`;
const APP = path.join(REPO, 'test/fixtures/http/istio-app.cjs');

/** curl (uid 0 in the client pod: captured → 15001 → the proxy) to the Service; returns the pod that answered. */
async function whoAnswers(headers: Record<string, string> = {}): Promise<string> {
  const r = await curl(client, [...Object.entries(headers).flatMap(([k, v]) => ['-H', `${k}: ${v}`]), `http://${VIP}/`]);
  try { return (JSON.parse(r.stdout) as { pod: string }).pod; } catch { return `? ${r.code} ${r.stdout.slice(0, 100)} ${r.stderr.slice(0, 200)}`; }
}

async function until(what: string, f: () => Promise<boolean>, ms = 15000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}\n${c.logs()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

before(async () => {
  if (skip) return;
  api = await TestApiServer.start({ bookmarkIntervalMs: 500 });
  c = new Cluster();
  client = await c.addPod('client', 'shop');
  v1 = await c.addPod('api-v1', 'shop');
  v2 = await c.addPod('api-v2', 'shop');
  for (const [p, version] of [[v1, 'v1'], [v2, 'v2']] as const) {
    api.put({ apiVersion: 'v1', kind: 'Pod', metadata: { name: p.name, namespace: 'shop', labels: { app: 'api', version } }, spec: { containers: [{ name: 'app' }] } });
  }
  api.put({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'api', namespace: 'shop' }, spec: { clusterIP: VIP, ports: [{ name: 'http', port: 80, protocol: 'TCP' }] } });
  api.put({
    apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', addressType: 'IPv4', metadata: { name: 'api-a', namespace: 'shop', labels: { 'kubernetes.io/service-name': 'api' } },
    endpoints: [v1, v2].map((p) => ({ addresses: [p.ip4], conditions: { ready: true }, targetRef: { kind: 'Pod', name: p.name, namespace: 'shop' } })), ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  });
  for (const [kind, plural] of [['VirtualService', 'virtualservices'], ['DestinationRule', 'destinationrules']]) api.installCrd({ group: 'networking.istio.io', versions: ['v1'], kind, plural });
  api.put({ apiVersion: 'networking.istio.io/v1', kind: 'DestinationRule', metadata: { name: 'api', namespace: 'shop' }, spec: { host: 'api', subsets: [{ name: 'v1', labels: { version: 'v1' } }, { name: 'v2', labels: { version: 'v2' } }] } });
  const kc = loadKubeConfig(api.writeKubeconfig(dir));
  istio = new IstioConfigSource(kc, new IstioConfigStore(), pino({ level: 'silent' }), { discoveryIntervalMs: 200 });
  await c.startControlPlane({ kubeConfig: kc, compiled: istioCompiledSource({ store: istio.store, rootNamespace: 'istio-system' }), compiledReady: istio.start() });
  // The app also serves TLS (unused here): it needs a certificate.
  const [cert, key] = [path.join(dir, 'tls.crt'), path.join(dir, 'tls.key')];
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/CN=example.com', '-days', '1', '-keyout', key, '-out', cert], { stdio: 'ignore' });
  for (const p of [v1, v2]) {
    p.app = p.ns.spawn(process.execPath, [APP, p.name, cert, key]);
    await waitForLine(p.app, /app ready/, 10000);
  }
  await Promise.all([c.startProxy(client, ['--no-dns']), c.startProxy(v1, ['--no-dns']), c.startProxy(v2, ['--no-dns'])]);
});
after(async () => {
  if (skip) return;
  await istio?.stop();
  await c?.destroy();
  await api?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test('a VirtualService applied through the API server changes which server answers', { skip }, async () => {
  // Before: the Service's default route balances over both.
  const seen = new Set<string>();
  for (let i = 0; i < 20 && seen.size < 2; i++) seen.add(await whoAnswers());
  assert.deepEqual([...seen].sort(), ['api-v1', 'api-v2']);

  // Everything to v1, except x-canary: 1 → v2 (subsets select on the pods' labels, which only the pod informer knows).
  api.put({
    apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name: 'api', namespace: 'shop' },
    spec: { hosts: ['api'], http: [{ match: [{ headers: { 'x-canary': { exact: '1' } } }], route: [{ destination: { host: 'api', subset: 'v2' } }] }, { route: [{ destination: { host: 'api', subset: 'v1' } }] }] },
  });
  await until('v1 only', async () => (await whoAnswers()) === 'api-v1' && (await whoAnswers()) === 'api-v1' && (await whoAnswers()) === 'api-v1');
  for (let i = 0; i < 10; i++) assert.equal(await whoAnswers(), 'api-v1');
  for (let i = 0; i < 5; i++) assert.equal(await whoAnswers({ 'x-canary': '1' }), 'api-v2');

  // Changed: everything to v2.
  api.put({ apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name: 'api', namespace: 'shop' }, spec: { hosts: ['api'], http: [{ route: [{ destination: { host: 'api', subset: 'v2' } }] }] } });
  await until('v2 only', async () => (await whoAnswers()) === 'api-v2' && (await whoAnswers()) === 'api-v2');
  for (let i = 0; i < 10; i++) assert.equal(await whoAnswers(), 'api-v2');
  const st = (c.cp!.stats() as { proxies: { pod: string; kinds: Record<string, { acked: number; nacks: number }> }[] }).proxies.find((p) => p.pod === 'shop/client')!;
  assert.equal(st.kinds.RouteTable.nacks, 0);
});
