// The pure parts behind `weir proxy-config` and `weir pods`: the proxy's
// config dump from its state objects, and a pod's row from what is
// programmed and verified.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildConfigDump } from '../../src/proxy/config-dump.js';
import { podView } from '../../src/agent/pod-view.js';
import { buildPlan } from '../../src/redirect/plan.js';
import { planHash } from '../../src/redirect/plan.js';
import { DEFAULT_CAPTURE_SETTINGS } from '../../src/kube/capture-decision.js';
import type { Registry, RegistryService } from '../../src/controlplane/types.js';
import type { Pod } from '../../src/kube/pod-types.js';
import type { StoredSandbox } from '../../src/agent/sandbox-store.js';

const ep = (ip: string, ready: boolean, terminating = false) => ({ ip, ready, serving: ready || terminating, terminating, podName: `p-${ip}`, podNamespace: 'shop', ports: [{ name: 'http', port: 8080, protocol: 'TCP' as const }, { name: 'dns', port: 53, protocol: 'UDP' as const }] });

function registry(services: RegistryService[]): Registry {
  return { version: 7, clusterDomain: 'cluster.local', services: new Map(services.map((s) => [`${s.namespace}/${s.name}`, s])) };
}

const agent = { connected: true, snapshots: 1, deltas: 2, socketPath: '/run/weir/proxy.sock' };

test('config dump: routes and clusters per TCP port, endpoint health and routability, ignored UDP and ExternalName', () => {
  const web: RegistryService = { namespace: 'shop', name: 'web', kind: 'ClusterIP', clusterIPs: ['10.96.0.5', 'fd00::5'], ports: [{ name: 'http', port: 80, protocol: 'TCP' }, { name: 'dns', port: 53, protocol: 'UDP' }], endpoints: [ep('10.1.0.1', true), ep('10.1.0.2', false, true), ep('10.1.0.3', false)] };
  const ext: RegistryService = { namespace: 'shop', name: 'ext', kind: 'ExternalName', clusterIPs: [], ports: [], externalName: 'example.com', endpoints: [] };
  const d = buildConfigDump({ registry: registry([web, ext]), agent, listeners: [], activeFor: (ip) => (ip === '10.1.0.1' ? 3 : 0) });
  assert.deepEqual(d.version, { acknowledged: 7, source: 'agent /run/weir/proxy.sock', connected: true, snapshots: 1, deltas: 2 });
  const cluster = 'outbound|80||web.shop.svc.cluster.local';
  assert.deepEqual(d.clusters.map((c) => c.name), [cluster]);
  assert.deepEqual(d.routes.map((r) => r.name), ['10.96.0.5:80', '[fd00::5]:80']);
  assert.deepEqual(d.endpoints.map((e) => [e.address, e.health, e.routable, e.activeConnections]), [['10.1.0.1', 'HEALTHY', true, 3], ['10.1.0.2', 'DRAINING', false, 0], ['10.1.0.3', 'UNHEALTHY', false, 0]]);
  assert.deepEqual(d.ignored.map((i) => i.name), ['shop/ext', 'shop/web:53/UDP']);
  assert.deepEqual(d.secrets, []);
  // No ready endpoint: serving-but-terminating ones take traffic (as the data path does).
  const draining = buildConfigDump({ registry: registry([{ ...web, endpoints: [ep('10.1.0.2', false, true)] }]), agent, listeners: [] });
  assert.equal(draining.endpoints[0].routable, true);
  // Headless: a route per endpoint IP:port, ORIGINAL_DST cluster.
  const headless = buildConfigDump({ registry: registry([{ ...web, kind: 'Headless', clusterIPs: [] }]), agent, listeners: [] });
  assert.equal(headless.clusters[0].type, 'ORIGINAL_DST');
  assert.deepEqual(headless.routes.map((r) => r.name), ['10.1.0.1:8080', '10.1.0.2:8080', '10.1.0.3:8080']);
  // Nothing from the agent yet, and a refusal: version -1, the refusal listed as rejected.
  const none = buildConfigDump({ registry: undefined, agent: { ...agent, connected: false, lastRefusal: 'peer not a pod of this node' }, listeners: [] });
  assert.equal(none.version.acknowledged, -1);
  assert.deepEqual(none.rejected, [{ what: 'control-plane session', reason: 'peer not a pod of this node' }]);
});

const pod = (annotations: Record<string, string> = {}, proxy = true): Pod => ({
  metadata: { name: 'web-1', namespace: 'shop', uid: 'u1', annotations },
  spec: { containers: [{ name: 'app' }, ...(proxy ? [{ name: 'weir-proxy' }] : [])] },
  status: { phase: 'Running' },
});
const rec = (p: Pod, over: Partial<StoredSandbox> = {}): StoredSandbox => ({ containerId: 'c1', ifName: 'eth0', netns: '/run/netns/x', podNamespace: 'shop', podName: 'web-1', podUid: 'u1', ips: [], captured: true, reason: 'captured', backend: 'nftables', planHash: planHash(buildPlan(p)), updatedAt: 1000, ...over });
const deps = (sandboxes: StoredSandbox[], extra: object = {}) => ({ settings: DEFAULT_CAPTURE_SETTINGS, planner: (p: Pod) => buildPlan(p), sandboxes, errors: [], ...extra });

test('pod view: captured only when programmed with today\'s plan and not found drifted', () => {
  const p = pod();
  assert.equal(podView(p, deps([rec(p)])).state, 'captured');
  assert.equal(podView(p, deps([rec(p)])).verified, 'never');
  const ok = podView(p, deps([rec(p)], { lastCheck: { at: 2000, outcome: { namespace: 'shop', name: 'web-1', result: 'ok' } } }));
  assert.deepEqual([ok.captured, ok.verified], [true, 'ok']);
  const drift = podView(p, deps([rec(p)], { lastCheck: { at: 2000, outcome: { namespace: 'shop', name: 'web-1', result: 'failed', differences: ['missing: x'] } } }));
  assert.deepEqual([drift.captured, drift.state, drift.reason, drift.error], [false, 'failed', 'drift', 'missing: x']);
  // A check older than the record was about an earlier sandbox.
  assert.equal(podView(p, deps([rec(p, { updatedAt: 3000 })], { lastCheck: { at: 2000, outcome: { namespace: 'shop', name: 'web-1', result: 'failed' } } })).state, 'captured');
  // Annotations changed after programming.
  const stale = podView(pod({ 'traffic.sidecar.istio.io/excludeOutboundPorts': '5432' }), deps([rec(p)]));
  assert.deepEqual([stale.captured, stale.state], [false, 'stale']);
});

test('pod view: a bad annotation is invalid with the annotation named; no record is pending or failed with the error', () => {
  const bad = podView(pod({ 'traffic.sidecar.istio.io/excludeOutboundIPRanges': '10.0.0.0/33' }), deps([]));
  assert.deepEqual([bad.captured, bad.state, bad.field], [false, 'invalid', 'traffic.sidecar.istio.io/excludeOutboundIPRanges']);
  assert.match(bad.error!, /10\.0\.0\.0\/33/);
  assert.equal(podView(pod(), deps([])).state, 'pending');
  const failed = podView(pod(), deps([], { errors: [{ at: 'now', kind: 'failed', error: 'programming capture failed: EPERM' }] }));
  assert.deepEqual([failed.state, failed.error], ['failed', 'programming capture failed: EPERM']);
  assert.deepEqual([podView(pod({}, false), deps([])).state, podView(pod({}, false), deps([])).reason], ['not-captured', 'no-proxy']);
});
