// Mesh security policies from the API server, end to end on the real
// kernel: PeerAuthentication and AuthorizationPolicy put into the test API
// server (list/watch; the CRDs installed only after the agent started, as
// when Istio arrives later) → the node control plane compiles them per
// workload (namespace + pod labels) → v2 `Security` push → the server pod's
// weir proxy enforces them on real traffic from two client pods (curl
// through their proxies, mesh mTLS) and one outsider without a proxy.
// Deleting the policies restores access.
//   details (ns shop, sa details, app=details): the server, HTTP on 9080
//   productpage (sa productpage): the one allowed caller of GET /details*
//   reviews (sa reviews): a mesh client the policy does not allow
//   outsider (ns other, no proxy, no capture): plaintext
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import type { ChildProcess } from 'node:child_process';
import { skipUnlessRoot } from '../support/netns.js';
import { until as poll } from '../support/poll.js';
import { startMeshCa, type MeshCa } from '../support/mesh-ca.js';
import { loadKubeConfig } from '../../src/kube/informers.js';
import { IstioConfigSource, IstioConfigStore, SECURITY_API } from '../../src/controlplane/istio-source.js';
import { istioSecuritySource } from '../../src/controlplane/v2/security-feed.js';
import { readSecurityResource } from '../../src/security/read.js';
import type { SecurityResource } from '../../src/security/types.js';
import { Cluster, service, slice, waitForLine, type Pod } from './proxy-harness.js';
import { curl } from './proxy-http-harness.js';

const skip = skipUnlessRoot();
const dir = mkdtempSync(join(tmpdir(), 'weir-policy-api-'));
const VIP = `10.96.${1 + Math.floor(Math.random() * 200)}.${1 + Math.floor(Math.random() * 200)}`;
let mca: MeshCa;
let c: Cluster;
let source: IstioConfigSource<SecurityResource>;
let details: Pod;
let productpage: Pod;
let reviews: Pod;
let outsider: Pod;
let app: ChildProcess | undefined;

const HTTP_APP = `require('node:http').createServer((q, s) => s.end(q.method + ' ' + q.url + ' tls=' + !!q.socket.encrypted)).listen(9080, '::', () => console.log('http ready'));`;
const LABELS: Record<string, Record<string, string>> = { 'shop/details': { app: 'details' }, 'shop/productpage': { app: 'productpage' }, 'shop/reviews': { app: 'reviews' } };

const POLICIES = [
  { apiVersion: 'security.istio.io/v1', kind: 'PeerAuthentication', metadata: { name: 'default', namespace: 'shop' }, spec: { mtls: { mode: 'STRICT' } } },
  // The seeds' example as written: deny-all in the namespace, then allow only GET /details* from one service account.
  { apiVersion: 'security.istio.io/v1beta1', kind: 'AuthorizationPolicy', metadata: { name: 'deny-all', namespace: 'shop' }, spec: {} },
  {
    apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'details-viewer', namespace: 'shop' },
    spec: { selector: { matchLabels: { app: 'details' } }, action: 'ALLOW', rules: [{ from: [{ source: { principals: ['cluster.local/ns/shop/sa/productpage'] } }], to: [{ operation: { methods: ['GET'], paths: ['/details*'] } }] }] },
  },
];

/** "<http code> <body>" of one request from a pod (through its proxy when it has one); 000 when the connection failed. */
async function req(pod: Pod, url: string, method = 'GET'): Promise<string> {
  const r = await curl(pod, ['-s', '-X', method, '-w', ' %{http_code}', url]);
  const m = / (\d{3})$/.exec(r.stdout);
  return m ? `${m[1]} ${r.stdout.slice(0, -4)}` : `000 ${r.stdout}${r.stderr}`;
}


/** What each caller gets: the expectation table of the suite. */
async function outcomes(): Promise<Record<string, string>> {
  const d = `http://${VIP}:9080`;
  return {
    'productpage GET /details/1': await req(productpage, `${d}/details/1`),
    'productpage POST /details/1': await req(productpage, `${d}/details/1`, 'POST'),
    'productpage GET /ratings/1': await req(productpage, `${d}/ratings/1`),
    'reviews GET /details/1': await req(reviews, `${d}/details/1`),
    'outsider plaintext GET /details/1': await req(outsider, `http://${details.ip4}:9080/details/1`),
  };
}

const OPEN = {
  'productpage GET /details/1': '200 GET /details/1 tls=false',
  'productpage POST /details/1': '200 POST /details/1 tls=false',
  'productpage GET /ratings/1': '200 GET /ratings/1 tls=false',
  'reviews GET /details/1': '200 GET /details/1 tls=false',
  'outsider plaintext GET /details/1': '200 GET /details/1 tls=false',
};

/** The shared poller with this suite's deadline, cadence and the proxies' logs on timeout. */
const waitFor = (what: string, f: () => Promise<boolean>) => poll(what, f, { ms: 20_000, everyMs: 200, detail: () => c.logs() });

before(async () => {
  if (skip) return;
  mca = await startMeshCa(dir);
  c = new Cluster();
  details = await c.addPod('details', 'shop');
  productpage = await c.addPod('productpage', 'shop');
  reviews = await c.addPod('reviews', 'shop');
  outsider = await c.addPod('outsider', 'other', { capture: false });
  for (const p of [details, productpage, reviews, outsider]) {
    p.serviceAccount = p === outsider ? 'default' : p.name;
    p.uid = mca.addPod(p.namespace, p.name, p.serviceAccount);
  }
  const byName = new Map(c.pods.map((p) => [`${p.namespace}/${p.name}`, p]));
  const kc = loadKubeConfig(mca.api.writeKubeconfig(dir));
  source = new IstioConfigSource(kc, new IstioConfigStore<SecurityResource>((o) => readSecurityResource(o)), pino({ level: 'silent' }), { discoveryIntervalMs: 200 }, SECURITY_API);
  await c.startControlPlane({
    kubeConfig: kc,
    source: () => ({ start: async () => {}, stop: async () => {} }),
    onCsr: mca.onCsr,
    builder: { endpointMeta: (ns, name) => { const p = byName.get(`${ns}/${name}`); return p && p !== outsider ? { serviceAccount: p.serviceAccount, tlsMode: 'istio' } : undefined; } },
    // As the agent does, from the pod informer.
    security: istioSecuritySource({ store: source.store, rootNamespace: 'istio-system', podLabels: (ns, name) => LABELS[`${ns}/${name}`] }),
    compiledReady: source.start(),
  });
  const ports = [{ name: 'http', port: 9080 }];
  c.cp!.apply((b) => b.upsertService(service('details', 'shop', VIP, ports)));
  c.cp!.apply((b) => b.upsertEndpointSlice(slice('details', 'shop', 'details-1', [{ pod: details }], ports)));
  app = details.ns.spawn(process.execPath, ['-e', HTTP_APP]);
  await waitForLine(app, /http ready/, 5000);
  await Promise.all([details, productpage, reviews].map((p) => c.startProxy(p, ['--no-dns'])));
});

after(async () => {
  if (skip) return;
  app?.kill('SIGKILL');
  await source?.stop();
  await c?.destroy();
  await mca?.close();
  rmSync(dir, { recursive: true, force: true });
});

test('policies put into the API server take effect at the server proxy; deleting them restores access', { skip }, async () => {
  // No security CRD installed: normal; PERMISSIVE, no policy, everyone gets through.
  assert.deepEqual(source.status(), { group: 'absent', version: undefined, watching: [] });
  assert.deepEqual(await outcomes(), OPEN, c.logs());

  // Istio arrives (both served versions; weir watches v1) and the policies are applied.
  for (const k of SECURITY_API.kinds) mca.api.installCrd({ group: SECURITY_API.group, versions: ['v1', 'v1beta1'], kind: k.kind, plural: k.plural });
  for (const p of POLICIES) mca.api.put(p);
  const ENFORCED = {
    'productpage GET /details/1': '200 GET /details/1 tls=false',
    'productpage POST /details/1': '403 RBAC: access denied',
    'productpage GET /ratings/1': '403 RBAC: access denied',
    'reviews GET /details/1': '403 RBAC: access denied',
    'outsider plaintext GET /details/1': '000 ',
  };
  let last: Record<string, string> = {};
  const t0 = Date.now();
  await waitFor('the policies to be enforced', async () => {
    last = await outcomes();
    // curl's own error text varies; a refused plaintext connection is any failure without an HTTP answer.
    if (last['outsider plaintext GET /details/1'].startsWith('000 ')) last['outsider plaintext GET /details/1'] = '000 ';
    return JSON.stringify(last) === JSON.stringify(ENFORCED);
  }).catch((e: Error) => { throw new Error(`${e.message}\nlast: ${JSON.stringify(last, null, 1)}`); });
  console.log(`# policies enforced ${Date.now() - t0} ms after the CRDs and objects were put`);
  assert.equal(source.status().version, 'v1');
  assert.deepEqual(source.status().watching.sort(), ['AuthorizationPolicy', 'PeerAuthentication']);
  assert.ok(await c.metric(details, 'weir_authorization_denied_total', { protocol: 'http' }) >= 3);
  assert.ok(await c.metric(details, 'weir_inbound_mtls_total', { mode: 'STRICT', outcome: 'refused_plaintext' }) >= 1);
  assert.ok(await c.metric(details, 'istio_requests_total', { reporter: 'destination', connection_security_policy: 'mutual_tls', source_principal: 'spiffe://cluster.local/ns/shop/sa/productpage', response_code: '200' }) >= 1);
  // What the proxy holds and says it enforces, and that the agent saw it acked (no nack).
  const dump = JSON.parse((await c.httpGet(details, 15000, '/config_dump')).body) as { mesh: { securitySource: string; compiled: { mode: string; allow: { name: string }[] } } };
  assert.equal(dump.mesh.securitySource, 'control-plane');
  assert.equal(dump.mesh.compiled.mode, 'STRICT');
  assert.deepEqual(dump.mesh.compiled.allow.map((p) => p.name), ['shop/deny-all', 'shop/details-viewer']);
  const st = (c.cp!.stats() as { proxies: { pod: string; kinds: Record<string, { acked: number; nacks: number }> }[] }).proxies;
  for (const p of st) assert.equal(p.kinds.Security.nacks, 0, p.pod);
  // The clients' own workloads get deny-all too (no selector) but not details-viewer.
  const clientDump = JSON.parse((await c.httpGet(productpage, 15000, '/config_dump')).body) as { mesh: { compiled: { allow: { name: string }[] } } };
  assert.deepEqual(clientDump.mesh.compiled.allow.map((p) => p.name), ['shop/deny-all']);

  // Deleting the policies restores access (plaintext included: back to PERMISSIVE).
  for (const p of POLICIES) mca.api.remove(p.kind, p.metadata.namespace, p.metadata.name);
  await waitFor('access to be restored', async () => { last = await outcomes(); return JSON.stringify(last) === JSON.stringify(OPEN); })
    .catch((e: Error) => { throw new Error(`${e.message}\nlast: ${JSON.stringify(last, null, 1)}`); });
});
