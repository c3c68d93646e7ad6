// Sidecar scoping with real traffic on the real kernel: Services, pods and a
// Sidecar through the API server (list/watch) → the agent's control plane
// (registry scoped per view, compiled kinds) → the client's weir proxy. The
// shop Sidecar lists ./* on every port and data/* on port 5432 only, with
// REGISTRY_ONLY, so from the client:
// - web (shop) answers on 80; db (data) answers TCP on 5432, but its port 9187
//   is not visible: 502 NR; search (other) is out of scope: 502 NR;
// - the proxy's DNS answers web and db from its registry (authoritative) and
//   not search, which it forwards upstream like any name it does not hold;
// - config_dump's registry holds exactly the scope, and the Sidecar widened
//   to other/* brings search (registry, DNS and routes) without a restart.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { skipUnlessRoot } from '../support/netns.js';
import type { TestApiServer } from '../support/apiserver.js';
import { readLine, type Cluster, type Pod } from './proxy-harness.js';
import { curl, run } from './proxy-http-harness.js';
import { startIstioApps } from './proxy-istio-harness.js';
import { IstioApiMesh } from './istio-api-fixture.js';
import { until } from '../support/poll.js';

const skip = skipUnlessRoot();
let m: IstioApiMesh;
let c: Cluster;
let api: TestApiServer;
let client: Pod;
const NET = 10 + Math.floor(Math.random() * 200);
const VIP = { web: `10.97.${NET}.1`, db: `10.97.${NET}.2`, search: `10.97.${NET}.3` };

const sidecar = (hosts: string[]) => ({
  apiVersion: 'networking.istio.io/v1', kind: 'Sidecar', metadata: { name: 'default', namespace: 'shop' },
  spec: { egress: [{ port: { number: 5432, name: 'pg' }, hosts: ['data/*'] }, { hosts }], outboundTrafficPolicy: { mode: 'REGISTRY_ONLY' } },
});

async function status(url: string): Promise<string> {
  return (await curl(client, ['-o', '/dev/null', '-w', '%{http_code}', url])).stdout;
}

/** dig at the client proxy's DNS listener: the A records, and whether the answer was authoritative (local). */
async function dig(name: string): Promise<{ ips: string[]; local: boolean }> {
  const r = await run(client, 'dig', ['+tries=1', '+time=2', '-p', '15053', '@127.0.0.1', name, 'A']);
  const flags = /;; flags: ([a-z ]+);/.exec(r.stdout)?.[1].split(' ') ?? [];
  const ips = [...r.stdout.matchAll(/^[^;\s]\S*\s+\d+\s+IN\s+A\s+(\S+)$/gm)].map((m) => m[1]);
  return { ips, local: flags.includes('aa') };
}

async function registryKeys(): Promise<string[]> {
  const dump = JSON.parse((await c.httpGet(client, 15000, '/config_dump')).body) as { registry: { services: { namespace: string; name: string }[] } };
  return dump.registry.services.map((s) => `${s.namespace}/${s.name}`).sort();
}

before(async () => {
  if (skip) return;
  m = await IstioApiMesh.create('wx-scscope-');
  ({ c, api } = m);
  client = await c.addPod('client', 'shop');
  const servers = { web: await c.addPod('web-1', 'shop'), db: await c.addPod('db-1', 'data'), search: await c.addPod('search-1', 'other') };
  for (const [name, pod] of Object.entries(servers)) {
    const ns = pod.namespace;
    api.put({ apiVersion: 'v1', kind: 'Pod', metadata: { name: pod.name, namespace: ns, labels: { app: name } }, spec: { containers: [{ name: 'app' }] } });
    const ports = name === 'db' ? [{ name: 'tcp-pg', port: 5432 }, { name: 'http-metrics', port: 9187 }] : [{ name: 'http', port: 80 }];
    api.put({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: ns }, spec: { clusterIP: VIP[name as keyof typeof VIP], ports: ports.map((p) => ({ ...p, protocol: 'TCP' })) } });
    api.put({
      apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', addressType: 'IPv4', metadata: { name: `${name}-a`, namespace: ns, labels: { 'kubernetes.io/service-name': name } },
      endpoints: [{ addresses: [pod.ip4], conditions: { ready: true }, targetRef: { kind: 'Pod', name: pod.name, namespace: ns } }],
      ports: name === 'db' ? [{ name: 'tcp-pg', port: 9000, protocol: 'TCP' }, { name: 'http-metrics', port: 8080, protocol: 'TCP' }] : [{ name: 'http', port: 8080, protocol: 'TCP' }],
    });
  }
  api.installCrd({ group: 'networking.istio.io', versions: ['v1'], kind: 'Sidecar', plural: 'sidecars' });
  api.put(sidecar(['./*']));
  await m.startControlPlane();
  await startIstioApps(c, Object.values(servers));
  // The client's proxy keeps its DNS listener (15053); the servers need none.
  await Promise.all([c.startProxy(client), ...Object.values(servers).map((p) => c.startProxy(p, ['--no-dns']))]);
});
after(async () => {
  if (skip) return;
  await m?.destroy();
});

test('a scoped proxy routes, resolves and holds only what its Sidecar lists; port-bound egress hosts only on their port', { skip, timeout: 90_000 }, async () => {
  await until('REGISTRY_ONLY scope applied', async () => (await status(`http://${VIP.search}/`)) === '502', { ms: 15000, detail: () => c.logs() });
  assert.deepEqual(await registryKeys(), ['data/db', 'shop/web'], 'registry = the Sidecar\'s scope');
  assert.equal(JSON.parse((await curl(client, [`http://${VIP.web}/`])).stdout).pod, 'web-1');
  const s = await c.connect(client, VIP.db, 5432);
  assert.equal(await readLine(s), 'hello from db-1', 'data/* is visible on 5432');
  s.destroy();
  assert.equal(await status(`http://${VIP.db}:9187/`), '502', 'but not on db\'s other port');
  const web = await dig('web.shop.svc.cluster.local');
  assert.deepEqual(web, { ips: [VIP.web], local: true });
  assert.deepEqual(await dig('db.data.svc.cluster.local'), { ips: [VIP.db], local: true });
  const search = await dig('search.other.svc.cluster.local');
  assert.equal(search.local, false, 'an out-of-scope name is not answered from the registry (forwarded upstream)');
  assert.ok(!search.ips.includes(VIP.search));
});

test('widening the Sidecar brings the host into registry, DNS and routes', { skip, timeout: 60_000 }, async () => {
  api.put(sidecar(['./*', 'other/*']));
  await until('search reachable', async () => (await status(`http://${VIP.search}/`)) === '200', { ms: 15000, detail: () => c.logs() });
  assert.deepEqual(await registryKeys(), ['data/db', 'other/search', 'shop/web']);
  assert.deepEqual(await dig('search.other.svc.cluster.local'), { ips: [VIP.search], local: true });
  assert.equal(await status(`http://${VIP.db}:9187/`), '502', 'the port-bound listener still decides db');
});
