// Services of several clusters in one registry (namespace sameness): union
// of endpoints tagged by cluster, remote-only services with their ClusterIP
// or a stable VIP when it collides with a local one, and a removed cluster
// leaving nothing behind.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RegistryBuilder } from '../../src/controlplane/registry-builder.js';
import type { KubeEndpointSlice, KubeService } from '../../src/controlplane/kube-shapes.js';

const svc = (ns: string, name: string, ip: string, port = 80): KubeService => ({ metadata: { namespace: ns, name }, spec: { clusterIP: ip, clusterIPs: [ip], ports: [{ name: 'http', port, protocol: 'TCP' }] } }) as KubeService;
const slice = (ns: string, svcName: string, name: string, ips: string[]): KubeEndpointSlice => ({
  metadata: { namespace: ns, name, labels: { 'kubernetes.io/service-name': svcName } }, addressType: 'IPv4',
  ports: [{ name: 'http', port: 8080, protocol: 'TCP' }], endpoints: ips.map((ip) => ({ addresses: [ip], conditions: { ready: true } })),
}) as KubeEndpointSlice;

test('a Service only in cluster b is in the registry with b\'s ClusterIP and b-tagged endpoints', () => {
  const b = new RegistryBuilder();
  b.upsertService(svc('ns', 'b-only', '10.20.0.5'), 'b');
  const d = b.upsertEndpointSlice(slice('ns', 'b-only', 'b-only-1', ['10.2.0.7']), 'b')!;
  assert.equal(d.upserts.length, 1);
  const s = b.snapshot().services.get('ns/b-only')!;
  assert.deepEqual(s.clusterIPs, ['10.20.0.5']);
  assert.deepEqual(s.clusters, ['b']);
  assert.deepEqual(s.endpoints.map((e) => [e.ip, e.cluster]), [['10.2.0.7', 'b']]);
});

test('a Service in both clusters has endpoints from both; kind and ports from the local one; local output unchanged otherwise', () => {
  const b = new RegistryBuilder();
  b.upsertService(svc('ns', 'web', '10.96.0.10'));
  b.upsertEndpointSlice(slice('ns', 'web', 'web-a', ['10.1.0.4']));
  const localOnly = JSON.stringify(b.snapshot().services.get('ns/web'));
  assert.ok(!/"clusters?":/.test(localOnly), 'a one-cluster registry carries no cluster fields');
  b.upsertService(svc('ns', 'web', '10.20.0.10', 9999), 'b');
  b.upsertEndpointSlice(slice('ns', 'web', 'web-b', ['10.2.0.4']), 'b');
  const s = b.snapshot().services.get('ns/web')!;
  assert.deepEqual(s.clusterIPs, ['10.96.0.10']);
  assert.equal(s.ports[0].port, 80);
  assert.deepEqual(s.clusters, ['local', 'b']);
  assert.deepEqual(s.endpoints.map((e) => [e.ip, e.cluster ?? 'local']).sort(), [['10.1.0.4', 'local'], ['10.2.0.4', 'b']]);
  // Slices of b for a Service b does not define do not count (namespace sameness needs the Service in b).
  b.upsertEndpointSlice(slice('ns', 'other', 'other-b', ['10.2.0.9']), 'b');
  assert.equal(b.snapshot().services.get('ns/other'), undefined);
});

test('a remote-only ClusterIP that is a local Service\'s gets a stable VIP from 240.241.0.0/16, and its own back when the collision ends', () => {
  const b = new RegistryBuilder();
  b.upsertService(svc('ns', 'local-svc', '10.96.0.20'));
  b.upsertService(svc('ns', 'remote-svc', '10.96.0.20'), 'b');
  const vip = b.snapshot().services.get('ns/remote-svc')!.clusterIPs[0];
  assert.match(vip, /^240\.241\.\d+\.\d+$/);
  b.upsertEndpointSlice(slice('ns', 'remote-svc', 'r1', ['10.2.0.1']), 'b');
  assert.equal(b.snapshot().services.get('ns/remote-svc')!.clusterIPs[0], vip, 'stable across changes');
  assert.deepEqual(b.snapshot().services.get('ns/local-svc')!.clusterIPs, ['10.96.0.20']);
  const d = b.deleteService('ns', 'local-svc')!;
  assert.ok(d.upserts.some((s) => s.name === 'remote-svc' && s.clusterIPs[0] === '10.96.0.20'), 'the collision is gone: its own ClusterIP again');
  // …and a local Service that starts colliding later pushes the remote one onto a VIP in the same delta.
  const d2 = b.upsertService(svc('ns', 'late-local', '10.96.0.20'))!;
  assert.ok(d2.upserts.some((s) => s.name === 'remote-svc' && s.clusterIPs[0].startsWith('240.241.')));
});

test('removing a cluster removes its services and endpoints in one delta', () => {
  const b = new RegistryBuilder();
  b.upsertService(svc('ns', 'web', '10.96.0.10'));
  b.upsertEndpointSlice(slice('ns', 'web', 'web-a', ['10.1.0.4']));
  b.upsertService(svc('ns', 'web', '10.20.0.10'), 'b');
  b.upsertEndpointSlice(slice('ns', 'web', 'web-b', ['10.2.0.4']), 'b');
  b.upsertService(svc('ns', 'b-only', '10.20.0.5'), 'b');
  assert.deepEqual(b.clusterNames(), ['b']);
  const d = b.deleteCluster('b')!;
  assert.deepEqual(d.deletes, ['ns/b-only']);
  assert.deepEqual(d.upserts.map((s) => s.name), ['web']);
  const web = b.snapshot().services.get('ns/web')!;
  assert.deepEqual(web.endpoints.map((e) => e.ip), ['10.1.0.4']);
  assert.equal(web.clusters, undefined);
  assert.equal(b.deleteCluster('b'), undefined, 'idempotent');
  assert.throws(() => b.deleteCluster(''), /local cluster/);
});
