// Istio resources from the API server (the test API server speaking the real
// list/watch protocol): nothing installed is normal; CRDs that appear later
// are picked up; the served version is chosen from discovery; invalid
// objects are rejected with their problems and never half-applied.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TestApiServer } from '../support/apiserver.js';
import { loadKubeConfig } from '../../src/kube/informers.js';
import { createLogger } from '../../src/common/log.js';
import { IstioConfigSource, IstioConfigStore } from '../../src/controlplane/istio-source.js';
import { compileProxyConfig } from '../../src/controlplane/translate/compile.js';
import { until } from '../support/poll.js';

const dir = mkdtempSync(join(tmpdir(), 'weir-istio-src-'));
let api: TestApiServer;
before(async () => { api = await TestApiServer.start({ bookmarkIntervalMs: 200 }); });
after(async () => { await api.stop(); rmSync(dir, { recursive: true, force: true }); });

const vs = (name: string, spec: object, apiVersion = 'networking.istio.io/v1beta1') => ({ apiVersion, kind: 'VirtualService', metadata: { name, namespace: 'default' }, spec });

test('no Istio installed, then CRDs appear: watched from the served version; bad objects rejected by field', async () => {
  const store = new IstioConfigStore();
  const source = new IstioConfigSource(loadKubeConfig(api.writeKubeconfig(dir)), store, createLogger({ name: 't', level: 'silent' }), { discoveryIntervalMs: 100, watchdogMs: 5000 });
  await source.start();
  try {
    assert.deepEqual(source.status(), { group: 'absent', version: undefined, watching: [] });
    // An Istio that serves only v1beta1/v1alpha3 (before 1.22): weir picks v1beta1.
    api.installCrd({ group: 'networking.istio.io', versions: ['v1beta1', 'v1alpha3'], kind: 'VirtualService', plural: 'virtualservices' });
    api.put(vs('reviews', { hosts: ['reviews'], http: [{ route: [{ destination: { host: 'reviews', subset: 'v1' }, weight: 90 }, { destination: { host: 'reviews', subset: 'v3' }, weight: 10 }] }] }));
    await until('the VirtualService', () => store.resources().length === 1);
    assert.deepEqual(source.status(), { group: 'present', version: 'v1beta1', watching: ['VirtualService'] });
    const services = [{ namespace: 'default', name: 'reviews', kind: 'ClusterIP' as const, clusterIPs: ['10.96.0.13'], ports: [{ name: 'http', port: 9080, protocol: 'TCP' as const }], endpoints: [] }];
    const compiled = compileProxyConfig({ clusterDomain: 'cluster.local', rootNamespace: 'istio-system', proxyNamespace: 'default', services, resources: store.resources() });
    const route = compiled.routes[0].virtualHosts[0].routes[0].action as { route: { weight: number }[] };
    assert.deepEqual(route.route.map((w) => w.weight), [90, 10]);

    // A broken update replaces the good version: rejected, with the field, and nothing of it applied.
    api.put(vs('reviews', { hosts: ['reviews'], http: [{ route: [{ destination: { host: 'reviews' }, weight: 50 }, { destination: { host: 'reviews' }, weight: 20 }] }] }));
    await until('the rejection', () => store.rejectedResources().length === 1);
    assert.equal(store.resources().length, 0);
    assert.equal(store.rejectedResources()[0].problems[0].field, 'spec.http[0].route');
    api.put(vs('reviews', { hosts: ['reviews'], http: [{ route: [{ destination: { host: 'reviews' } }] }] }));
    await until('the fix', () => store.resources().length === 1 && store.rejectedResources().length === 0);
    api.remove('VirtualService', 'default', 'reviews');
    await until('the delete', () => store.resources().length === 0);

    // A second kind's CRD installed later is picked up by the next discovery.
    api.installCrd({ group: 'networking.istio.io', versions: ['v1beta1', 'v1alpha3'], kind: 'DestinationRule', plural: 'destinationrules' });
    api.put({ apiVersion: 'networking.istio.io/v1beta1', kind: 'DestinationRule', metadata: { name: 'reviews', namespace: 'default' }, spec: { host: 'reviews', subsets: [{ name: 'v1', labels: { version: 'v1' } }] } });
    await until('the DestinationRule', () => store.resources().some((r) => r.kind === 'DestinationRule'));
    assert.deepEqual(source.status().watching.sort(), ['DestinationRule', 'VirtualService']);
  } finally {
    await source.stop();
  }
});

test('stop() during a discovery in flight: no informer is started after it (none watches, nothing reaches the store)', async () => {
  api.installCrd({ group: 'networking.istio.io', versions: ['v1'], kind: 'Sidecar', plural: 'sidecars' });
  const store = new IstioConfigStore();
  const source = new IstioConfigSource(loadKubeConfig(api.writeKubeconfig(dir)), store, createLogger({ name: 't', level: 'silent' }), { discoveryIntervalMs: 60_000, watchdogMs: 5000 });
  // Hold the discovery's resource listing until stop() has been called: the order in which a
  // shutdown meets a discovery whose answer is still on the way.
  const custom = (source as unknown as { custom: { getAPIResources: (...a: unknown[]) => Promise<unknown> } }).custom;
  const original = custom.getAPIResources.bind(custom);
  let entered!: () => void;
  let release!: () => void;
  const inFlight = new Promise<void>((r) => { entered = r; });
  const gate = new Promise<void>((r) => { release = r; });
  custom.getAPIResources = async (...a: unknown[]) => { entered(); await gate; return original(...a); };
  await until('the earlier test\'s watches closed at the server', () => api.watchCount() === 0);
  const starting = source.start();
  await inFlight;
  const stopping = source.stop();
  release();
  await Promise.all([starting, stopping]);
  api.put({ apiVersion: 'networking.istio.io/v1', kind: 'Sidecar', metadata: { name: 'default', namespace: 'default' }, spec: { egress: [{ hosts: ['./*'] }] } });
  await new Promise((r) => setTimeout(r, 500));
  assert.deepEqual(source.status().watching, [], 'no informer left after stop()');
  assert.equal(api.watchCount(), 0, 'no watch opened after stop()');
  assert.equal(store.resources().length, 0, 'nothing listed after stop()');
  api.remove('Sidecar', 'default', 'default');
});
