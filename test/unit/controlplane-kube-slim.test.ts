// The control plane's Service and EndpointSlice informers cache slimmed
// objects (src/controlplane/kube-slim.ts) and list in pages: the registry
// built from slimmed objects is byte-for-byte the one built from the full
// objects (every field the registry reads survives, including the rare ones:
// gateways' load-balancer addresses, FQDN slices, null conditions, pod
// targets), the cache holds none of what the registry never reads, and the
// LIST arrives in pages over the real list/watch protocol.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { TestApiServer } from '../support/apiserver.js';
import { until } from '../support/poll.js';
import { endpointSlices, loadKubeConfig, services } from '../../src/kube/informers.js';
import { slimEndpointSlice, slimService } from '../../src/controlplane/kube-slim.js';
import { RegistryBuilder } from '../../src/controlplane/registry-builder.js';
import type { KubeEndpointSlice, KubeService } from '../../src/controlplane/kube-shapes.js';

const managed = [{ manager: 'kube-controller-manager', operation: 'Update', apiVersion: 'v1', time: '2026-01-01T00:00:00Z', fieldsType: 'FieldsV1', fieldsV1: { 'f:metadata': { 'f:labels': {} } } }];
const meta = (name: string, namespace: string, labels: Record<string, string> = {}) => ({
  name, namespace, uid: `uid-${name}`, resourceVersion: '42', creationTimestamp: '2026-01-01T00:00:00Z', generation: 3,
  labels: { app: name, 'app.kubernetes.io/managed-by': 'helm', ...labels },
  annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{"big": "blob"}', 'meta.helm.sh/release-name': 'r' },
  ownerReferences: [{ apiVersion: 'v1', kind: 'Service', name, uid: 'o', controller: true, blockOwnerDeletion: true }],
  managedFields: managed,
});

/** Services of every kind the registry distinguishes, with the fields a real API server adds. */
const SERVICES = [
  { metadata: meta('web', 'shop'), spec: { type: 'ClusterIP', clusterIP: '10.96.0.10', clusterIPs: ['10.96.0.10'], ipFamilies: ['IPv4'], ipFamilyPolicy: 'SingleStack', sessionAffinity: 'None', internalTrafficPolicy: 'Cluster', selector: { app: 'web' }, ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 }, { name: 'grpc', port: 9090, protocol: 'TCP', appProtocol: 'grpc', targetPort: 'grpc' }, { name: 'dns', port: 53, protocol: 'UDP', targetPort: 53 }] }, status: { loadBalancer: {} } },
  { metadata: meta('dual', 'shop'), spec: { clusterIP: '10.96.0.11', clusterIPs: ['10.96.0.11', 'fd00::11'], ports: [{ port: 443 }] } },
  { metadata: meta('db', 'shop'), spec: { clusterIP: 'None', clusterIPs: ['None'], ports: [{ name: 'pg', port: 5432 }] } },
  { metadata: meta('ext', 'shop'), spec: { type: 'ExternalName', externalName: 'db.example.com' } },
  { metadata: meta('np', 'shop'), spec: { type: 'NodePort', clusterIP: '10.96.0.12', ports: [{ name: 'http', port: 80, nodePort: 30080 }] } },
  { metadata: meta('eastwest', 'istio-system', { 'topology.istio.io/network': 'net-b' }), spec: { type: 'LoadBalancer', clusterIP: '10.96.0.13', externalIPs: ['192.0.2.9'], ports: [{ name: 'tls', port: 15443 }] }, status: { loadBalancer: { ingress: [{ ip: '198.51.100.7', ipMode: 'VIP' }, { hostname: 'lb.example.com' }] } } },
] as unknown as KubeService[];

const SLICES = [
  {
    metadata: meta('web-abc', 'shop', { 'kubernetes.io/service-name': 'web', 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' }), addressType: 'IPv4',
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }, { name: 'dns', port: 53, protocol: 'UDP' }, { name: 'grpc', port: 9090, protocol: 'TCP', appProtocol: 'grpc' }],
    endpoints: [
      { addresses: ['10.1.0.1'], conditions: { ready: true, serving: true, terminating: false }, nodeName: 'n1', zone: 'z1', hints: { forZones: [{ name: 'z1' }] }, targetRef: { kind: 'Pod', name: 'web-1', namespace: 'shop', uid: 'p1', resourceVersion: '7' } },
      { addresses: ['10.1.0.2'], conditions: { ready: false, serving: true, terminating: true }, nodeName: 'n2', targetRef: { kind: 'Pod', name: 'web-2', namespace: 'shop' } },
      { addresses: ['10.1.0.3'], conditions: { ready: null, serving: null, terminating: null } },
      { addresses: ['10.1.0.4'], hostname: 'web-4', deprecatedTopology: { 'kubernetes.io/hostname': 'n4' }, targetRef: { kind: 'Node', name: 'n4' } },
    ],
  },
  // The same address in a second slice (the controller moving it): merged, ports unioned.
  { metadata: meta('web-def', 'shop', { 'kubernetes.io/service-name': 'web' }), addressType: 'IPv4', ports: [{ name: 'admin', port: 9901 }], endpoints: [{ addresses: ['10.1.0.1'], conditions: { ready: false } }] },
  { metadata: meta('web-fqdn', 'shop', { 'kubernetes.io/service-name': 'web' }), addressType: 'FQDN', ports: [{ name: 'http', port: 80 }], endpoints: [{ addresses: ['web.example.com'] }] },
  { metadata: meta('dual-v6', 'shop', { 'kubernetes.io/service-name': 'dual' }), addressType: 'IPv6', ports: [{ port: 8443 }], endpoints: [{ addresses: ['fd00::1:1'] }] },
  { metadata: meta('db-0', 'shop', { 'kubernetes.io/service-name': 'db' }), addressType: 'IPv4', ports: [{ name: 'pg', port: 5432 }], endpoints: [{ addresses: ['10.1.1.1'], hostname: 'db-0', targetRef: { kind: 'Pod', name: 'db-0' } }] },
  { metadata: meta('orphan', 'shop'), addressType: 'IPv4', ports: [{ port: 1 }], endpoints: [{ addresses: ['10.9.9.9'] }] },
  { metadata: meta('gw-a', 'istio-system', { 'kubernetes.io/service-name': 'eastwest' }), addressType: 'IPv4', ports: [{ name: 'tls', port: 15443 }], endpoints: null },
] as unknown as KubeEndpointSlice[];

function registryOf(svcs: KubeService[], slices: KubeEndpointSlice[]): string[] {
  const b = new RegistryBuilder();
  // A remote cluster on another network makes the gateway's addresses matter (networks.ts reads them).
  b.setClusterNetwork('west', 'net-b');
  b.setTopology({ localNetwork: 'net-a' });
  for (const s of svcs) b.upsertService(s);
  for (const s of slices) b.upsertEndpointSlice(s);
  b.upsertService({ metadata: { name: 'web', namespace: 'shop' }, spec: { clusterIP: '10.200.0.10', ports: [{ name: 'http', port: 80 }] } }, 'west');
  b.upsertEndpointSlice({ metadata: { name: 'web-w', namespace: 'shop', labels: { 'kubernetes.io/service-name': 'web' } }, addressType: 'IPv4', ports: [{ name: 'http', port: 8080 }], endpoints: [{ addresses: ['10.201.0.1'] }] }, 'west');
  return b.serviceJsons().sort();
}

test('the registry from slimmed Services and EndpointSlices is the registry from the full objects', () => {
  const full = registryOf(SERVICES, SLICES);
  const slim = registryOf(SERVICES.map(slimService), SLICES.map(slimEndpointSlice));
  assert.deepEqual(slim, full);
  // The rare fields made it into the registry (else the comparison above proves little).
  const all = full.join('\n');
  for (const needle of ['"ip":"198.51.100.7"', '"externalName":"db.example.com"', '"appProtocol":"grpc"', '"podName":"web-1"', '"hostname":"web-4"', '"ready":false', '"fd00::11"', '"protocol":"UDP"', '"name":"admin"']) assert.ok(all.includes(needle), needle);
  assert.ok(!all.includes('web.example.com'), 'FQDN slices are not routable');
});

test('slimmed objects keep nothing the registry never reads, and slimming twice changes nothing', () => {
  const pairs: [KubeService | KubeEndpointSlice, KubeService | KubeEndpointSlice, (o: never) => unknown][] = [
    ...SERVICES.map((s) => [s, slimService(s), slimService] as [KubeService, KubeService, (o: never) => unknown]),
    ...SLICES.map((s) => [s, slimEndpointSlice(s), slimEndpointSlice] as [KubeEndpointSlice, KubeEndpointSlice, (o: never) => unknown]),
  ];
  for (const [o, slim, again] of pairs) {
    const text = JSON.stringify(slim);
    for (const gone of ['managedFields', 'annotations', 'ownerReferences', 'uid', 'creationTimestamp', 'app.kubernetes.io/managed-by', 'selector', 'zone', 'hints', 'deprecatedTopology', 'nodePort', 'ipFamilies', 'hostname":"lb']) assert.ok(!text.includes(gone), `${o.metadata?.name}: ${gone} dropped`);
    assert.equal(slim.metadata?.resourceVersion, '42', 'the informer still tells updates apart');
    assert.equal(JSON.stringify(again(slim as never)), text);
    assert.ok(text.length < JSON.stringify(o).length / 2, `${o.metadata?.name}: ${text.length} of ${JSON.stringify(o).length} bytes`);
  }
});

test('over list/watch: Services and EndpointSlices are listed in pages and cached slim, watch events too', { timeout: 30_000 }, async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'wx-slim-'));
  const api = await TestApiServer.start();
  t.after(async () => { await api.stop(); rmSync(dir, { recursive: true, force: true }); });
  const kubeConfig = loadKubeConfig(api.writeKubeconfig(dir));
  for (let i = 0; i < 1201; i++) {
    api.put({ apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { ...meta(`s-${i}-a`, `ns-${i % 7}`, { 'kubernetes.io/service-name': `s-${i}` }) }, addressType: 'IPv4', ports: [{ name: 'http', port: 8080, protocol: 'TCP' }], endpoints: [{ addresses: [`10.2.${i >> 8}.${i & 255}`], conditions: { ready: true }, zone: 'z' }] } as never);
  }
  for (let i = 0; i < 3; i++) api.put({ apiVersion: 'v1', kind: 'Service', ...(SERVICES[i] as object), metadata: { ...(SERVICES[i].metadata as object), resourceVersion: undefined } } as never);
  const logger = pino({ level: 'silent' });
  const slices = endpointSlices({ kubeConfig, logger, pageSize: 500 });
  const svcs = services({ kubeConfig, logger, pageSize: 2 });
  t.after(() => Promise.all([slices.stop(), svcs.stop()]));
  await Promise.all([slices.start(), svcs.start()]);
  const lists = (p: string) => api.requests.filter((r) => !r.watch && r.path === p);
  assert.deepEqual(lists('/apis/discovery.k8s.io/v1/endpointslices').map((r) => [r.query.limit, r.query.continue !== undefined]), [['500', false], ['500', true], ['500', true]], 'three pages of 500');
  assert.equal(lists('/api/v1/services').length, 2, 'three Services in pages of 2');
  assert.equal(slices.list().length, 1201);
  assert.equal(svcs.list().length, 3);
  const cached = JSON.stringify([...slices.list(), ...svcs.list()]);
  for (const gone of ['managedFields', 'annotations', 'uid', '"zone"', 'selector']) assert.ok(!cached.includes(gone), `${gone} not cached`);
  assert.deepEqual(slices.get('ns-0', 's-0-a'), slimEndpointSlice(api.get('EndpointSlice', 'ns-0', 's-0-a') as never));

  // A watch event is slimmed before it is cached or emitted.
  const updates: KubeEndpointSlice[] = [];
  slices.on('update', (o) => updates.push(o));
  api.put({ apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: meta('s-1-a', 'ns-1', { 'kubernetes.io/service-name': 's-1' }), addressType: 'IPv4', ports: [{ port: 8080 }], endpoints: [{ addresses: ["10.3.0.1"], zone: 'z' }] } as never);
  await until('update seen', () => updates.length === 1);
  assert.deepEqual(updates[0].endpoints, [{ addresses: ['10.3.0.1'] }]);
  assert.ok(!JSON.stringify(slices.get('ns-1', 's-1-a')).includes('managedFields'));
});
