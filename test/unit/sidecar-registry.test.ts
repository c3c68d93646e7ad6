// The Registry kind scoped by a Sidecar's egress hosts: the golden of what a
// shop proxy's registry holds (test/fixtures/istio/sidecar-ports.yaml:
// port-bound egress listeners, a service kept for the inbound side, one out
// of scope), the scoped feed's versions and deltas, and the whole path over a
// real unix socket with the real proxy client: a change outside the scope
// costs that proxy no push yet counts as acked; a Sidecar edit widens the
// registry by a whole push.
// After an intended change: UPDATE_GOLDEN=1 WEIR_SKIP_SETUP=1 npm test -- test/unit/sidecar-registry.test.ts
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { RegistryBuilder } from '../../src/controlplane/registry-builder.js';
import { startControlPlane } from '../../src/controlplane/server.js';
import { IstioConfigStore } from '../../src/controlplane/istio-source.js';
import { istioCompiledSource, sidecarRegistryScope } from '../../src/controlplane/v2/compiled-source.js';
import { ScopedRegistry, SCOPED_VERSION_BASE } from '../../src/controlplane/v2/scoped-registry.js';
import { counter } from '../../src/controlplane/v2/versioned-kind.js';
import type { Sidecar } from '../../src/istio/types.js';
import { RegistryClient } from '../../src/proxy/registry-client.js';
import { ISTIO_FIXTURES, loadIstioFixtures } from '../support/istio-fixtures.js';
import { analyze, formatFinding } from '../../src/istio/analyze.js';
import { until } from '../support/poll.js';
import { parseAllDocuments } from 'yaml';

const GOLDEN = path.resolve(import.meta.dirname, '../golden/registry/sidecar-ports-shop.json');
const dir = mkdtempSync(path.join(tmpdir(), 'wx-screg-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function fixture() {
  const { services, resources } = loadIstioFixtures(['sidecar-ports.yaml']);
  const sidecar = resources.find((r): r is Sidecar => r.kind === 'Sidecar')!;
  return { services, resources, sidecar };
}

test('golden: a shop proxy\'s registry under a Sidecar with a port-bound egress listener', () => {
  const { services, sidecar } = fixture();
  const scope = sidecarRegistryScope(sidecar, 'shop', 'cluster.local');
  const seen = services.map((s) => scope.filter(s)).filter((s) => s !== undefined).sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`));
  const text = JSON.stringify(seen, null, 2) + '\n';
  if (process.env.UPDATE_GOLDEN === '1' || !existsSync(GOLDEN)) writeFileSync(GOLDEN, text);
  assert.equal(text, readFileSync(GOLDEN, 'utf8'));
  // What the golden must say, independently of its bytes:
  const byKey = new Map(seen.map((s) => [`${s.namespace}/${s.name}`, s]));
  assert.deepEqual([...byKey.keys()], ['data/db', 'istio-system/telemetry', 'ops/shop-exporter', 'shop/web']);
  assert.deepEqual(byKey.get('data/db')!.ports.map((p) => p.port), [5432], 'only the port its egress listener is bound to');
  assert.deepEqual(byKey.get('shop/web')!.ports.map((p) => p.port), [80, 9090], 'catch-all listener: every port but 5432');
  assert.ok(!byKey.has('shop/legacy-db'), 'its only port (5432) is bound to a listener that does not list it');
  assert.ok(!byKey.has('other/search'));
});

test('weir analyze: an egress port is applied (no finding), its protocol is reported unsupported', () => {
  const docs = parseAllDocuments(readFileSync(path.join(ISTIO_FIXTURES, 'sidecar-ports.yaml'), 'utf8')).map((d) => ({ file: 'sidecar-ports.yaml', doc: d.toJS() as unknown }));
  const lines = analyze(docs).filter((f) => f.resource.startsWith('Sidecar')).map(formatFinding);
  assert.deepEqual(lines, ['sidecar-ports.yaml: Sidecar shop/default: spec.egress[0].port.protocol: unsupported: not applied: the protocol of each Service port (its name or appProtocol) decides']);
});

test('scoped feed: only in-scope changes bump its version; deltas name only them; versions never collide with the node registry', () => {
  const { sidecar } = fixture();
  const b = new RegistryBuilder();
  for (const ns of ['shop', 'other']) b.upsertService({ metadata: { namespace: ns, name: 'app' }, spec: { clusterIP: ns === 'shop' ? '10.96.4.1' : '10.96.4.2', ports: [{ name: 'http', port: 80 }] } });
  const f = new ScopedRegistry(b, sidecarRegistryScope(sidecar, 'shop', 'cluster.local'), counter());
  assert.equal(f.size(), 1);
  assert.ok(f.version() > SCOPED_VERSION_BASE);
  const v0 = f.version();
  const ep = (ns: string, ip: string) => ({ metadata: { namespace: ns, name: 'app-a', labels: { 'kubernetes.io/service-name': 'app' } }, addressType: 'IPv4', endpoints: [{ addresses: [ip], conditions: { ready: true } }], ports: [{ name: 'http', port: 8080, protocol: 'TCP' }] });
  const outside = b.upsertEndpointSlice(ep('other', '10.1.1.1'))!;
  assert.equal(f.apply(outside), false, 'other/app is out of scope');
  assert.equal(f.version(), v0);
  assert.equal(f.reflects(v0), outside.version, 'a holder of v0 is current with the node registry');
  const inside = b.upsertEndpointSlice(ep('shop', '10.1.1.2'))!;
  assert.equal(f.apply(inside), true);
  const d = f.since(v0)!;
  assert.deepEqual(d.upserts.map((j) => (JSON.parse(j) as { name: string; endpoints: { ip: string }[] }).endpoints[0].ip), ['10.1.1.2']);
  assert.equal(f.reflects(v0), inside.version - 1, 'v0 is behind the in-scope change');
  assert.equal(f.since(outside.version), undefined, 'a node registry version is not a scoped one');
  const gone = b.deleteService('shop', 'app')!;
  assert.equal(f.apply(gone), true);
  assert.deepEqual(f.since(v0)!.deletes, ['shop/app']);
});

test('over a socket: a scoped proxy holds only its scope, is not pushed out-of-scope changes (yet counts as acked), and a Sidecar edit widens it whole', async () => {
  const store = new IstioConfigStore();
  const { services, resources } = fixture();
  const socketPath = path.join(dir, 'cp.sock');
  const cp = await startControlPlane({
    kubeConfig: new KubeConfig(), socketPath, logger: pino({ level: 'silent' }), metrics: new Registry(), clusterDomain: 'cluster.local', compileDebounceMs: 5,
    identifyPeer: async (pid) => (pid === process.pid ? { namespace: 'shop', name: 'web-5f7d-abcde', uid: 'u', ips: ['10.1.0.7'] } : undefined),
    source: () => ({ start: async () => {}, stop: async () => {} }),
    compiled: istioCompiledSource({ store, rootNamespace: 'istio-system' }),
  });
  for (const s of services) cp.apply((b) => b.upsertService({ metadata: { namespace: s.namespace, name: s.name }, spec: { clusterIP: s.clusterIPs[0], ports: s.ports } }));
  cp.apply((b) => b.upsertEndpointSlice({ metadata: { namespace: 'ops', name: 'x', labels: { 'kubernetes.io/service-name': 'shop-exporter' } }, addressType: 'IPv4', endpoints: [{ addresses: ['10.1.0.7'], conditions: { ready: true }, targetRef: { kind: 'Pod', name: 'web-5f7d-abcde', namespace: 'shop' } }], ports: [{ name: 'http', port: 9100, protocol: 'TCP' }] }));
  for (const r of resources) store.upsert({ apiVersion: 'networking.istio.io/v1', kind: r.kind, metadata: { namespace: r.meta.namespace, name: r.meta.name, creationTimestamp: '2026-01-01T00:00:00Z' }, spec: { egress: (r as Sidecar).egress.map((e) => ({ hosts: e.hosts, ...(e.port ? { port: e.port } : {}) })) } });
  const client = new RegistryClient({ socketPath, logger: pino({ level: 'silent' }) });
  const keys = () => [...(client.current()?.services.keys() ?? [])].sort();
  const pushes = () => ((cp.stats() as { proxies: { kinds: Record<string, { pushes: number }> }[] }).proxies[0]?.kinds.Registry.pushes ?? 0);
  try {
    client.start();
    const want = ['data/db', 'istio-system/telemetry', 'ops/shop-exporter', 'shop/web'];
    await until('the scoped registry', () => JSON.stringify(keys()) === JSON.stringify(want));
    assert.deepEqual(client.current()!.services.get('data/db')!.ports.map((p) => p.port), [5432]);
    assert.ok(client.compiled.ignored().some((i) => i.resource === 'Sidecar shop/default' && i.field === 'spec.egress[0].port.protocol'), 'config_dump says the egress port protocol is not applied');
    // An endpoint change outside the scope: no push, and fan-out accounting still settles.
    const before = pushes();
    let v = 0;
    cp.apply((b) => { const d = b.upsertEndpointSlice({ metadata: { namespace: 'other', name: 'search-a', labels: { 'kubernetes.io/service-name': 'search' } }, addressType: 'IPv4', endpoints: [{ addresses: ['10.2.0.1'], conditions: { ready: true } }], ports: [{ name: 'http', port: 8080, protocol: 'TCP' }] }); v = d!.version; return d; });
    await cp.waitAcked(v, 2000);
    assert.equal(pushes(), before, 'nothing in scope changed: nothing sent');
    // One inside: pushed as a delta with that service only.
    cp.apply((b) => { const d = b.upsertEndpointSlice({ metadata: { namespace: 'shop', name: 'web-a', labels: { 'kubernetes.io/service-name': 'web' } }, addressType: 'IPv4', endpoints: [{ addresses: ['10.1.0.9'], conditions: { ready: true } }], ports: [{ name: 'http', port: 8080, protocol: 'TCP' }] }); v = d!.version; return d; });
    await cp.waitAcked(v, 2000);
    assert.equal(client.current()!.services.get('shop/web')!.endpoints[0].ip, '10.1.0.9');
    assert.equal(pushes(), before + 1);
    // The Sidecar now also lists other/*: the registry is sent whole with search in it.
    store.upsert({ apiVersion: 'networking.istio.io/v1', kind: 'Sidecar', metadata: { namespace: 'shop', name: 'default', creationTimestamp: '2026-01-01T00:00:00Z' }, spec: { egress: [{ hosts: ['./*', 'istio-system/*', 'data/*', 'other/*'] }] } });
    await until('search in scope', () => keys().includes('other/search'));
    assert.deepEqual(client.current()!.services.get('data/db')!.ports.map((p) => p.port), [5432, 9187], 'no port listener any more: every port');
    assert.equal(client.v2.nacks, 0);
  } finally {
    client.stop();
    await cp.close();
  }
});
