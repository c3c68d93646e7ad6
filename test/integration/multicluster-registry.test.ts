// Two test API servers as two clusters: cluster B is added by a Secret in
// cluster A (Istio's remote-secret format), its Services merge into the
// registry, removing the Secret removes them within a second, and B's API
// going away leaves A working while B's data is served stale and flagged.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry as MetricsRegistry } from 'prom-client';
import { TestApiServer } from '../support/apiserver.js';
import { loadKubeConfig } from '../../src/kube/informers.js';
import { createLogger } from '../../src/common/log.js';
import { RegistryBuilder } from '../../src/controlplane/registry-builder.js';
import { kubeRegistrySource } from '../../src/controlplane/kube-source.js';
import { RemoteClusters } from '../../src/controlplane/remote-clusters.js';
import type { RegistryDelta } from '../../src/controlplane/types.js';
import { until, untilTimed } from '../support/poll.js';

const dir = mkdtempSync(join(tmpdir(), 'weir-mc-'));
const logger = createLogger({ name: 'mc', level: 'silent' });
let a: TestApiServer;
let b: TestApiServer;
before(async () => { a = await TestApiServer.start({ bookmarkIntervalMs: 200 }); b = await TestApiServer.start({ bookmarkIntervalMs: 200 }); });
after(async () => { await a.stop(); await b.stop().catch(() => undefined); rmSync(dir, { recursive: true, force: true }); });

const service = (ns: string, name: string, ip: string) => ({ kind: 'Service', metadata: { namespace: ns, name }, spec: { clusterIP: ip, clusterIPs: [ip], ports: [{ name: 'http', port: 80, protocol: 'TCP' }] } });
const slice = (ns: string, svc: string, name: string, ip: string) => ({ kind: 'EndpointSlice', apiVersion: 'discovery.k8s.io/v1', metadata: { namespace: ns, name, labels: { 'kubernetes.io/service-name': svc } }, addressType: 'IPv4', ports: [{ name: 'http', port: 8080, protocol: 'TCP' }], endpoints: [{ addresses: [ip], conditions: { ready: true } }] });

test('cluster B through a remote Secret: merged, removed within a second, served stale when its API is gone', async () => {
  b.put(service('ns', 'b-only', '10.20.0.5'));
  b.put(slice('ns', 'b-only', 'b-only-1', '10.2.0.7'));
  b.put(service('ns', 'both', '10.20.0.6'));
  b.put(slice('ns', 'both', 'both-b', '10.2.0.8'));
  a.put(service('ns', 'both', '10.96.0.6'));
  a.put(slice('ns', 'both', 'both-a', '10.1.0.8'));

  const builder = new RegistryBuilder();
  const apply = (change: (x: RegistryBuilder) => RegistryDelta | undefined): void => { change(builder); };
  const kcA = loadKubeConfig(a.writeKubeconfig(join(dir, 'a')));
  const local = kubeRegistrySource(kcA, apply, logger, { watchdogMs: 2000 });
  const metrics = new MetricsRegistry();
  const remotes = new RemoteClusters({ kubeConfig: kcA, namespace: 'weir-system', apply, logger, metrics, staleAfterMs: 700, watchdogMs: 1000 });
  await local.start();
  await remotes.start();
  const svcs = () => builder.snapshot().services;
  try {
    assert.equal(svcs().get('ns/b-only'), undefined);
    const kubeconfigB = readFileSync(b.writeKubeconfig(join(dir, 'b')), 'utf8');
    a.put({ kind: 'Secret', metadata: { namespace: 'weir-system', name: 'istio-remote-secret-b', labels: { 'istio/multiCluster': 'true' } }, data: { 'cluster-b': Buffer.from(kubeconfigB).toString('base64') } });
    const tAdd = Math.round((await untilTimed('b-only from cluster B', () => svcs().get('ns/b-only')?.endpoints.length === 1, { ms: 3000, everyMs: 2 })).ms);
    assert.deepEqual(svcs().get('ns/b-only')!.clusterIPs, ['10.20.0.5']);
    assert.deepEqual(svcs().get('ns/b-only')!.endpoints[0].cluster, 'cluster-b');
    await until('both clusters\' endpoints', () => svcs().get('ns/both')?.endpoints.length === 2);
    assert.deepEqual(svcs().get('ns/both')!.clusterIPs, ['10.96.0.6'], 'the local ClusterIP wins');
    await until('synced', () => remotes.status()[0]?.synced === true);
    assert.equal(remotes.status()[0].stale, false);

    // Removing the Secret removes B's names and endpoints within a second.
    a.remove('Secret', 'weir-system', 'istio-remote-secret-b');
    const tRemove = Math.round((await untilTimed('B gone', () => !svcs().has('ns/b-only') && svcs().get('ns/both')?.endpoints.length === 1, { ms: 1000, everyMs: 2 })).ms);
    assert.deepEqual(remotes.status(), []);
    process.stdout.write(`# remote cluster added in ${tAdd} ms, removed in ${tRemove} ms\n`);

    // Back again; then B's API server dies: A keeps working, B's data stays and is flagged stale.
    a.put({ kind: 'Secret', metadata: { namespace: 'weir-system', name: 'weir-remote-b', labels: { 'weir.io/remote-cluster': 'true' } }, data: { 'cluster-b': Buffer.from(kubeconfigB).toString('base64') } });
    await until('b-only again', () => svcs().has('ns/b-only'));
    await b.stop();
    a.put(service('ns', 'a-new', '10.96.0.9'));
    await until('A keeps flowing while B is down', () => svcs().has('ns/a-new'));
    await until('B flagged stale', () => remotes.status()[0]?.stale === true, 5000);
    assert.ok(svcs().has('ns/b-only'), 'B\'s last data is still served');
    assert.match(await metrics.metrics(), /weir_controlplane_remote_cluster_stale\{cluster="cluster-b"\} 1/);
    // Nothing of the kubeconfig (its token) ever shows in status.
    assert.doesNotMatch(JSON.stringify(remotes.status()), /test-token/);
  } finally {
    await remotes.stop();
    await local.stop();
  }
});

test('a malformed kubeconfig beside a good one: that cluster is skipped with an error naming Secret and field, the other syncs, and no credential reaches the log', async () => {
  const lines: string[] = [];
  const { Writable } = await import('node:stream');
  const { pino } = await import('pino');
  const sink = new Writable({ write(chunk: Buffer, _e, cb) { lines.push(chunk.toString()); cb(); } });
  const log = pino({ level: 'trace' }, sink);
  const b2 = await TestApiServer.start({ bookmarkIntervalMs: 200 });
  b2.put(service('ns', 'good-only', '10.30.0.5'));
  const builder = new RegistryBuilder();
  const apply = (change: (x: RegistryBuilder) => RegistryDelta | undefined): void => { change(builder); };
  const kcA = loadKubeConfig(a.writeKubeconfig(join(dir, 'a2')));
  const remotes = new RemoteClusters({ kubeConfig: kcA, namespace: 'weir-logs', apply, logger: log, watchdogMs: 1000 });
  const good = readFileSync(b2.writeKubeconfig(join(dir, 'good')), 'utf8');
  const CERT = 'LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUNsekNDQVg4Q0ZBPT0K';
  const TOKEN = 'eyJhbGciOiJSUzI1NiJ9.bad-secret-token-5521';
  const bad = `apiVersion: v1\nclusters:\n- name: x\n  cluster:\n    server: :::not-a-url\n    certificate-authority-data: ${CERT}\nusers:\n- name: x\n  user:\n    token: ${TOKEN}\ncontexts:\n- name: x\n  context: {cluster: x, user: x}\ncurrent-context: x\n`;
  const unparsable = `clusters: [ {{ token: ${TOKEN}`;
  try {
    await remotes.start();
    a.put({ kind: 'Secret', metadata: { namespace: 'weir-logs', name: 'remotes', labels: { 'istio/multiCluster': 'true' } }, data: {
      broken: Buffer.from(bad).toString('base64'), garbage: Buffer.from(unparsable).toString('base64'), good: Buffer.from(good).toString('base64'),
    } });
    await until('the good cluster synced', () => builder.snapshot().services.has('ns/good-only') && remotes.status().find((s) => s.cluster === 'good')?.state === 'synced');
    const st = Object.fromEntries(remotes.status().map((s) => [s.cluster, s]));
    assert.equal(st.broken.state, 'error');
    assert.match(st.broken.lastError!, /^Secret weir-logs\/remotes data\["broken"\]: clusters\["x"\]\.cluster\.server is not a URL/);
    assert.equal(st.garbage.state, 'error');
    assert.match(st.garbage.lastError!, /^Secret weir-logs\/remotes data\["garbage"\]: not a kubeconfig/);
    assert.deepEqual([st.good.services, st.good.endpoints], [1, 0]);
    const text = lines.join('');
    assert.match(text, /remote cluster skipped: its kubeconfig cannot be used/);
    assert.match(text, /remote cluster synced/);
    for (const secret of [TOKEN, 'bad-secret-token', CERT, 'test-token']) assert.ok(!text.includes(secret), `log contains ${secret}`);
    assert.ok(!JSON.stringify(remotes.status()).includes('test-token'));
    // Fixing the entry brings the cluster in without touching the good one.
    a.put({ kind: 'Secret', metadata: { namespace: 'weir-logs', name: 'remotes', labels: { 'istio/multiCluster': 'true' } }, data: {
      broken: Buffer.from(good.replace(/\btest\b(?!-token)/g, 't2')).toString('base64'), good: Buffer.from(good).toString('base64'),
    } });
    await until('broken fixed, garbage gone', () => remotes.status().map((s) => `${s.cluster}:${s.state}`).join() === 'broken:synced,good:synced').catch((e: Error) => { throw new Error(`${e.message}: ${JSON.stringify(remotes.status())}`); });
  } finally {
    await remotes.stop();
    await b2.stop();
  }
});

test('a Secret labelled both ways keeps its clusters when one label goes, and loses them when the other does', async () => {
  const b3 = await TestApiServer.start({ bookmarkIntervalMs: 200 });
  b3.put(service('ns', 'dual', '10.40.0.5'));
  const builder = new RegistryBuilder();
  const apply = (change: (x: RegistryBuilder) => RegistryDelta | undefined): void => { change(builder); };
  const remotes = new RemoteClusters({ kubeConfig: loadKubeConfig(a.writeKubeconfig(join(dir, 'a3'))), namespace: 'weir-dual', apply, logger, watchdogMs: 1000 });
  const data = { dual: Buffer.from(readFileSync(b3.writeKubeconfig(join(dir, 'b3')), 'utf8')).toString('base64') };
  const secret = (labels: Record<string, string>) => ({ kind: 'Secret', metadata: { namespace: 'weir-dual', name: 'both-labels', labels }, data });
  try {
    await remotes.start();
    a.put(secret({ 'istio/multiCluster': 'true', 'weir.io/remote-cluster': 'true' }));
    await until('dual synced', () => builder.snapshot().services.has('ns/dual'));
    a.put(secret({ 'weir.io/remote-cluster': 'true' }));
    // Never dropped, not even for a moment (dropping and re-adding would flap every proxy's view).
    for (let t0 = Date.now(); Date.now() - t0 < 600; await new Promise((r) => setTimeout(r, 5))) {
      assert.ok(builder.snapshot().services.has('ns/dual'), 'still labelled weir.io/remote-cluster: kept');
    }
    assert.deepEqual(remotes.status().map((s) => s.cluster), ['dual']);
    a.put(secret({}));
    await until('dual gone', () => !builder.snapshot().services.has('ns/dual'), 1000);
    assert.deepEqual(remotes.status(), []);
  } finally {
    await remotes.stop();
    await b3.stop();
  }
});
