// The whole path on the real kernel: a DestinationRule and a VirtualService
// applied through the API server (list/watch) → the agent's control plane
// (endpoint labels from the pod informer, compiled per namespace, v2 push) →
// the client's weir proxy routes by them (curl as the client). Which server answers changes when
// the VirtualService is applied, and again when it is changed.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { skipUnlessRoot } from '../support/netns.js';
import type { TestApiServer } from '../support/apiserver.js';
import type { Cluster, Pod } from './proxy-harness.js';
import { curl } from './proxy-http-harness.js';
import { startIstioApps } from './proxy-istio-harness.js';
import { IstioApiMesh } from './istio-api-fixture.js';

const skip = skipUnlessRoot();
let m: IstioApiMesh;
let c: Cluster;
let api: TestApiServer;
let client: Pod;
let v1: Pod;
let v2: Pod;
const VIP = `10.96.${10 + Math.floor(Math.random() * 200)}.9`;

/** curl (uid 0 in the client pod: captured → 15001 → the proxy) to the Service; returns the pod that answered. */
async function whoAnswers(headers: Record<string, string> = {}): Promise<string> {
  const r = await curl(client, [...Object.entries(headers).flatMap(([k, v]) => ['-H', `${k}: ${v}`]), `http://${VIP}/`]);
  try { return (JSON.parse(r.stdout) as { pod: string }).pod; } catch { return `? ${r.code} ${r.stdout.slice(0, 100)} ${r.stderr.slice(0, 200)}`; }
}

const until = (what: string, f: () => Promise<boolean>): Promise<boolean> => m.until(what, f);

before(async () => {
  if (skip) return;
  m = await IstioApiMesh.create('wx-cp2r-');
  ({ c, api } = m);
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
  await m.startControlPlane();
  await startIstioApps(c, [v1, v2]);
  await Promise.all([c.startProxy(client, ['--no-dns']), c.startProxy(v1, ['--no-dns']), c.startProxy(v2, ['--no-dns'])]);
});
after(async () => {
  if (skip) return;
  await m?.destroy();
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
