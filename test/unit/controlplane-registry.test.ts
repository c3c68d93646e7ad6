// RegistryBuilder: Services + EndpointSlices → the compact registry, deltas and resumable history.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { applyDelta, RegistryBuilder } from '../../src/controlplane/registry-builder.js';
import type { KubeEndpointSlice, KubeService } from '../../src/controlplane/kube-shapes.js';

const svc = (name: string, spec: KubeService['spec'], ns = 'app'): KubeService => ({ metadata: { name, namespace: ns }, spec });
const eps = (name: string, service: string, endpoints: KubeEndpointSlice['endpoints'], ports = [{ name: 'http', port: 8080, protocol: 'TCP' }], ns = 'app'): KubeEndpointSlice => ({
  metadata: { name, namespace: ns, labels: { 'kubernetes.io/service-name': service } }, addressType: 'IPv4', endpoints, ports,
});

test('ClusterIP service with endpoints merged across slices; ready/serving/terminating defaults', () => {
  const b = new RegistryBuilder();
  b.upsertService(svc('web', { clusterIP: '10.96.0.10', clusterIPs: ['10.96.0.10', 'fd00::10'], ports: [{ name: 'http', port: 80 }] }));
  b.upsertEndpointSlice(eps('web-1', 'web', [{ addresses: ['10.0.0.1'], targetRef: { kind: 'Pod', name: 'web-a', namespace: 'app' } }]));
  b.upsertEndpointSlice(eps('web-2', 'web', [
    { addresses: ['10.0.0.2'], conditions: { ready: false, serving: true, terminating: true } },
    // the same address seen in two slices (controller moving it): merged, ready wins
    { addresses: ['10.0.0.1'], conditions: { ready: false } },
  ]));
  const web = b.snapshot().services.get('app/web')!;
  assert.equal(web.kind, 'ClusterIP');
  assert.deepEqual(web.clusterIPs, ['10.96.0.10', 'fd00::10']);
  assert.deepEqual(web.endpoints.map((e) => [e.ip, e.ready, e.serving, e.terminating, e.podName]), [
    ['10.0.0.1', true, true, false, 'web-a'],
    ['10.0.0.2', false, true, true, undefined],
  ]);
  assert.deepEqual(web.endpoints[0].ports, [{ name: 'http', port: 8080, protocol: 'TCP' }]);
});

test('headless, ExternalName, NodePort kinds; FQDN slices ignored; slices without their service not routable', () => {
  const b = new RegistryBuilder();
  b.upsertService(svc('db', { clusterIP: 'None', ports: [{ name: 'pg', port: 5432 }] }));
  b.upsertService(svc('ext', { type: 'ExternalName', externalName: 'example.org' }));
  b.upsertService(svc('np', { type: 'NodePort', clusterIP: '10.96.0.11', ports: [{ port: 80 }] }));
  b.upsertEndpointSlice({ ...eps('db-1', 'db', [{ addresses: ['10.0.0.5'] }]), addressType: 'FQDN' });
  b.upsertEndpointSlice(eps('orphan-1', 'orphan', [{ addresses: ['10.0.0.9'] }]));
  const s = b.snapshot().services;
  assert.equal(s.get('app/db')!.kind, 'Headless');
  assert.deepEqual(s.get('app/db')!.clusterIPs, []);
  assert.deepEqual(s.get('app/db')!.endpoints, []);
  assert.equal(s.get('app/ext')!.externalName, 'example.org');
  assert.equal(s.get('app/np')!.kind, 'NodePort');
  assert.equal(s.has('app/orphan'), false);
});

test('versions move only on real changes; deltas carry upserts and deletes', () => {
  const b = new RegistryBuilder();
  const d1 = b.upsertService(svc('web', { clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80 }] }))!;
  assert.deepEqual([d1.fromVersion, d1.version, d1.upserts.length], [0, 1, 1]);
  assert.equal(b.upsertService(svc('web', { clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80 }] })), undefined, 'no-op update');
  const d2 = b.upsertEndpointSlice(eps('web-1', 'web', [{ addresses: ['10.0.0.1'] }]))!;
  assert.equal(d2.version, 2);
  // A slice relabelled to another service moves its endpoints.
  b.upsertService(svc('api', { clusterIP: '10.96.0.12', ports: [{ name: 'http', port: 80 }] }));
  const d4 = b.upsertEndpointSlice(eps('web-1', 'api', [{ addresses: ['10.0.0.1'] }]))!;
  assert.deepEqual(d4.upserts.map((s) => `${s.name}:${s.endpoints.length}`).sort(), ['api:1', 'web:0']);
  const d5 = b.deleteService('app', 'web')!;
  assert.deepEqual(d5.deletes, ['app/web']);
  assert.equal(b.deleteService('app', 'web'), undefined);
});

test('deltaSince brings an old copy up to date, equal to the snapshot; too old → undefined', () => {
  const b = new RegistryBuilder({ historyLimit: 4 });
  b.upsertService(svc('a', { clusterIP: '10.96.0.1', ports: [{ port: 1 }] }));
  const old = b.snapshot();
  b.upsertService(svc('b', { clusterIP: '10.96.0.2', ports: [{ port: 2 }] }));
  b.upsertEndpointSlice(eps('a-1', 'a', [{ addresses: ['10.0.0.1'] }]));
  b.deleteService('app', 'b');
  const d = b.deltaSince(old.version)!;
  const caught = applyDelta(old, d);
  assert.deepEqual(caught, b.snapshot());
  assert.deepEqual(d.deletes, ['app/b']);
  for (let i = 0; i < 6; i++) b.upsertService(svc(`x${i}`, { clusterIP: `10.96.1.${i}`, ports: [{ port: 3 }] }));
  assert.equal(b.deltaSince(old.version), undefined, 'history trimmed: a snapshot is needed');
  assert.deepEqual(b.deltaSince(b.currentVersion())!.upserts, []);
  assert.equal(b.deltaSince(b.currentVersion() + 1), undefined);
});

test('replaceAll after a relist yields one delta with exactly the differences', () => {
  const b = new RegistryBuilder();
  b.upsertService(svc('keep', { clusterIP: '10.96.0.1', ports: [{ port: 1 }] }));
  b.upsertService(svc('gone', { clusterIP: '10.96.0.2', ports: [{ port: 2 }] }));
  const d = b.replaceAll([svc('keep', { clusterIP: '10.96.0.1', ports: [{ port: 1 }] }), svc('new', { clusterIP: '10.96.0.3', ports: [{ port: 3 }] })], [])!;
  assert.deepEqual(d.deletes, ['app/gone']);
  assert.deepEqual(d.upserts.map((s) => s.name), ['new']);
});

test('objects without namespace/name are rejected naming the field; applyDelta refuses a gap', () => {
  const b = new RegistryBuilder();
  assert.throws(() => b.upsertService({ spec: {} }), /metadata\.namespace and metadata\.name/);
  assert.throws(() => applyDelta(b.snapshot(), { fromVersion: 5, version: 6, upserts: [], deletes: [] }), /delta\.fromVersion: expected 0, got 5/);
});
