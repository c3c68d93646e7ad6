// The agent's multi-cluster settings (flags and env, as Istio names them),
// the remote kubeconfig check (errors name the Secret and field, never the
// content), endpoints of other networks behind their east-west gateway, and
// local-first endpoints.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { resolveAgentConfig } from '../../src/agent/config.js';
import { loadRemoteKubeconfig } from '../../src/controlplane/remote-clusters.js';
import { RegistryBuilder } from '../../src/controlplane/registry-builder.js';
import type { KubeEndpointSlice, KubeService } from '../../src/controlplane/kube-shapes.js';

test('cluster id, network and remote-secret namespace: defaults, env, flags, and bad values named', () => {
  const d = resolveAgentConfig({ nodeName: 'n' }, {});
  assert.equal(d.clusterId, 'Kubernetes');
  assert.equal(d.network, undefined);
  assert.equal(d.remoteSecretNamespace, undefined, 'no namespace known: remote clusters off');
  assert.equal(d.preferLocalCluster, false);
  const e = resolveAgentConfig({ nodeName: 'n' }, { CLUSTER_ID: 'east', WEIR_NETWORK: 'net-1', POD_NAMESPACE: 'weir-system', WEIR_PREFER_LOCAL_CLUSTER: 'true' });
  assert.deepEqual([e.clusterId, e.network, e.remoteSecretNamespace, e.preferLocalCluster], ['east', 'net-1', 'weir-system', true]);
  assert.equal(resolveAgentConfig({ nodeName: 'n', remoteSecretNamespace: 'istio-system' }, { POD_NAMESPACE: 'weir-system' }).remoteSecretNamespace, 'istio-system');
  assert.equal(resolveAgentConfig({ nodeName: 'n', remoteClusters: false }, { POD_NAMESPACE: 'weir-system' }).remoteSecretNamespace, undefined);
  assert.equal(resolveAgentConfig({ nodeName: 'n' }, { POD_NAMESPACE: 'weir-system', WEIR_REMOTE_CLUSTERS: 'false' }).remoteSecretNamespace, undefined);
  assert.throws(() => resolveAgentConfig({ nodeName: 'n', clusterId: 'bad name!' }, {}), /--cluster-id \(env CLUSTER_ID\)/);
  assert.throws(() => resolveAgentConfig({ nodeName: 'n', remoteSecretNamespace: 'Not_A_NS' }, {}), /--remote-secret-namespace \(env WEIR_REMOTE_SECRET_NAMESPACE\)/);
  assert.throws(() => resolveAgentConfig({ nodeName: 'n' }, { WEIR_REMOTE_CLUSTERS: 'maybe', POD_NAMESPACE: 'x' }), /--no-remote-clusters \(env WEIR_REMOTE_CLUSTERS\)/);
});

const SECRET_TOKEN = 'sekrit-token-7f3a9c';
const CERT_BYTES = 'LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJ';
const kubeconfig = (over: { server?: string; context?: string; user?: boolean } = {}) => [
  'apiVersion: v1', 'kind: Config',
  'clusters:', '- name: b', '  cluster:', `    server: ${over.server ?? 'https://10.0.0.1:6443'}`, `    certificate-authority-data: ${CERT_BYTES}`,
  'contexts:', '- name: b', '  context:', '    cluster: b', '    user: b',
  `current-context: ${over.context ?? 'b'}`,
  ...(over.user === false ? [] : ['users:', '- name: b', '  user:', `    token: ${SECRET_TOKEN}`]),
].join('\n');

test('a malformed remote kubeconfig is an error naming the Secret and the field, never quoting the credentials', () => {
  const where = 'Secret weir-system/istio-remote-secret-b data["b"]';
  assert.ok(loadRemoteKubeconfig(kubeconfig(), where).getCurrentCluster());
  const cases: [string, RegExp][] = [
    [`{{ not yaml: [${SECRET_TOKEN}`, /not a kubeconfig/],
    [kubeconfig({ context: 'nope' }), /current-context "nope" names no cluster/],
    [kubeconfig({ server: 'not a url' }), /clusters\["b"\]\.cluster\.server is not a URL/],
    [kubeconfig({ server: 'ftp://10.0.0.1' }), /cluster\.server must be https/],
    [kubeconfig({ user: false }), /names no user in users\[\]/],
  ];
  for (const [text, re] of cases) {
    let msg = '';
    try { loadRemoteKubeconfig(text, where); } catch (e) { msg = (e as Error).message; }
    assert.match(msg, re, text.slice(0, 40));
    assert.ok(msg.startsWith(where), msg);
    assert.ok(!msg.includes(SECRET_TOKEN) && !msg.includes(CERT_BYTES), `no credential bytes in: ${msg}`);
  }
});

const svc = (ns: string, name: string, ip: string, labels?: Record<string, string>, extra: Record<string, unknown> = {}): KubeService => ({ metadata: { namespace: ns, name, ...(labels ? { labels } : {}) }, spec: { clusterIP: ip, clusterIPs: [ip], ports: [{ name: 'http', port: 80, protocol: 'TCP' }] }, ...extra }) as KubeService;
const slice = (ns: string, svcName: string, name: string, ips: string[], ready = true): KubeEndpointSlice => ({
  metadata: { namespace: ns, name, labels: { 'kubernetes.io/service-name': svcName } }, addressType: 'IPv4',
  ports: [{ name: 'http', port: 8080, protocol: 'TCP' }], endpoints: ips.map((ip) => ({ addresses: [ip], conditions: { ready } })),
}) as KubeEndpointSlice;
const gateway = (ip: string, network: string): KubeService => ({
  metadata: { namespace: 'istio-system', name: 'istio-eastwestgateway', labels: { 'topology.istio.io/network': network } },
  spec: { type: 'LoadBalancer', clusterIP: '10.20.9.9', ports: [{ name: 'status-port', port: 15021 }, { name: 'tls', port: 15443 }] },
  status: { loadBalancer: { ingress: [{ ip }] } },
}) as KubeService;

test('endpoints of a cluster on another network are replaced by that network\'s east-west gateway; same network stays direct', () => {
  const b = new RegistryBuilder();
  b.setTopology({ localNetwork: 'net-a' });
  b.setClusterNetwork('b', 'net-b');
  b.upsertService(svc('ns', 'web', '10.96.0.1'));
  b.upsertEndpointSlice(slice('ns', 'web', 'web-a', ['10.1.0.1']));
  b.upsertService(svc('ns', 'web', '10.20.0.1'), 'b');
  b.upsertEndpointSlice(slice('ns', 'web', 'web-b', ['10.2.0.1', '10.2.0.2']), 'b');
  // No gateway for net-b yet: b's endpoints are unreachable, so none are offered (never a black-holing pod IP).
  assert.deepEqual(b.snapshot().services.get('ns/web')!.endpoints.map((e) => e.ip), ['10.1.0.1']);
  const d = b.upsertService(gateway('192.0.2.50', 'net-b'), 'b')!;
  assert.ok(d.upserts.some((s) => s.name === 'web'), 'the gateway appearing re-decides the service in the same delta');
  const eps = b.snapshot().services.get('ns/web')!.endpoints;
  assert.deepEqual(eps.map((e) => [e.ip, e.cluster ?? 'local', e.network ?? '-', e.ports.map((p) => `${p.name}:${p.port}`).join()]).sort(),
    [['10.1.0.1', 'local', '-', 'http:8080'], ['192.0.2.50', 'b', 'net-b', 'http:15443']]);
  // Same network (or none set): direct again.
  b.setClusterNetwork('b', 'net-a');
  assert.deepEqual(b.snapshot().services.get('ns/web')!.endpoints.map((e) => e.ip).sort(), ['10.1.0.1', '10.2.0.1', '10.2.0.2']);
  b.setClusterNetwork('b', 'net-b');
  b.deleteService('istio-system', 'istio-eastwestgateway', 'b');
  assert.deepEqual(b.snapshot().services.get('ns/web')!.endpoints.map((e) => e.ip), ['10.1.0.1'], 'gateway gone: b unreachable');
});

test('preferLocal: local endpoints only while one is ready; remote ones on failover', () => {
  const b = new RegistryBuilder();
  b.upsertService(svc('ns', 'web', '10.96.0.1'));
  b.upsertEndpointSlice(slice('ns', 'web', 'web-a', ['10.1.0.1']));
  b.upsertService(svc('ns', 'web', '10.20.0.1'), 'b');
  b.upsertEndpointSlice(slice('ns', 'web', 'web-b', ['10.2.0.1']), 'b');
  const ips = () => b.snapshot().services.get('ns/web')!.endpoints.map((e) => e.ip).sort();
  assert.deepEqual(ips(), ['10.1.0.1', '10.2.0.1'], 'default: all clusters');
  b.setTopology({ preferLocal: true });
  assert.deepEqual(ips(), ['10.1.0.1']);
  b.upsertEndpointSlice(slice('ns', 'web', 'web-a', ['10.1.0.1'], false));
  assert.deepEqual(ips(), ['10.1.0.1', '10.2.0.1'], 'no ready local endpoint: remote ones take over');
  assert.deepEqual(b.clusterCounts('b'), { services: 1, endpoints: 1 });
});

test('the cluster id reaches the proxy: the injector writes ISTIO_META_CLUSTER_ID from CLUSTER_ID, the proxy reads it (flag wins)', async () => {
  const { resolveInjectorConfig } = await import('../../src/injector/options.js');
  const { proxyContainer } = await import('../../src/injector/sidecar.js');
  const { resolveProxyConfig } = await import('../../src/proxy/config.js');
  const opts = { native: true, holdApplication: false, exitWhenAppExits: false, resources: { requests: {}, limits: {} }, appContainers: ['app'] };
  const env = (c: ReturnType<typeof proxyContainer>) => (c.env ?? []).find((e) => e.name === 'ISTIO_META_CLUSTER_ID')?.value;
  assert.equal(env(proxyContainer(resolveInjectorConfig({}, { CLUSTER_ID: 'east' }), opts)), 'east');
  assert.equal(env(proxyContainer(resolveInjectorConfig({}, {}), opts)), undefined, 'unset: nothing injected (goldens unchanged)');
  assert.throws(() => resolveInjectorConfig({ clusterId: 'a b' }, {}), /--cluster-id/);
  assert.equal(resolveProxyConfig({}, { ISTIO_META_CLUSTER_ID: 'east' }).clusterId, 'east');
  assert.equal(resolveProxyConfig({ clusterId: 'west' }, { ISTIO_META_CLUSTER_ID: 'east' }).clusterId, 'west');
  assert.equal(resolveProxyConfig({}, {}).clusterId, 'Kubernetes');
  assert.throws(() => resolveProxyConfig({}, { ISTIO_META_CLUSTER_ID: '-bad-' }), /ISTIO_META_CLUSTER_ID/);
});
