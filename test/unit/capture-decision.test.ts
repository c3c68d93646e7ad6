import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decideCapture } from '../../src/kube/capture-decision.js';
import type { Pod } from '../../src/kube/pod-types.js';

const base = (): Pod => ({ metadata: { name: 'a', namespace: 'default', labels: {}, annotations: {} }, spec: { containers: [{ name: 'app' }] } });

test('pod without proxy container is not captured', () => {
  assert.deepEqual(decideCapture(base()).reason, 'no-proxy');
});

test('regular proxy container and native sidecar are captured', () => {
  const p = base();
  p.spec.containers.push({ name: 'istio-proxy' });
  p.metadata.annotations!['sidecar.istio.io/status'] = '{}';
  assert.equal(decideCapture(p).capture, true);
  const q = base();
  q.spec.initContainers = [{ name: 'weir-proxy', restartPolicy: 'Always' }];
  assert.equal(decideCapture(q).capture, true);
  const r = base();
  r.spec.initContainers = [{ name: 'weir-proxy' }];
  assert.equal(decideCapture(r).reason, 'no-proxy', 'a plain init container is not a sidecar');
});

test('opt-out: label wins over annotation', () => {
  const p = base();
  p.spec.containers.push({ name: 'weir-proxy' });
  p.metadata.annotations!['sidecar.istio.io/inject'] = 'false';
  assert.equal(decideCapture(p).reason, 'opted-out');
  p.metadata.labels!['sidecar.istio.io/inject'] = 'true';
  assert.equal(decideCapture(p).capture, true);
});

test('hostNetwork and excluded namespace are never captured', () => {
  const p = base();
  p.spec.containers.push({ name: 'weir-proxy' });
  p.spec.hostNetwork = true;
  assert.equal(decideCapture(p).reason, 'host-network');
  const q = base();
  q.spec.containers.push({ name: 'weir-proxy' });
  q.metadata.namespace = 'kube-system';
  assert.equal(decideCapture(q).reason, 'excluded-namespace');
});

// Every row of the istio-cni / linkerd-cni compatible decision.
const STATUS = { 'sidecar.istio.io/status': '{"containers":["istio-proxy"]}' };
const rows: { name: string; pod: Pod; reason: string; kind?: string }[] = [
  { name: 'istio-proxy with sidecar.istio.io/status', reason: 'captured', kind: 'istio',
    pod: { metadata: { name: 'a', annotations: STATUS }, spec: { containers: [{ name: 'app' }, { name: 'istio-proxy', args: ['proxy', 'sidecar'] }] } } },
  { name: 'istio-proxy without sidecar.istio.io/status (not injected)', reason: 'not-injected', kind: 'istio',
    pod: { metadata: { name: 'a' }, spec: { containers: [{ name: 'app' }, { name: 'istio-proxy' }] } } },
  { name: 'gateway: istio-proxy run as router', reason: 'gateway', kind: 'istio',
    pod: { metadata: { name: 'gw', annotations: STATUS }, spec: { containers: [{ name: 'istio-proxy', args: ['proxy', 'router', '--domain', 'x'] }] } } },
  { name: 'istio-init already programs the rules', reason: 'istio-init', kind: 'istio',
    pod: { metadata: { name: 'a', annotations: STATUS }, spec: { initContainers: [{ name: 'istio-init' }], containers: [{ name: 'app' }, { name: 'istio-proxy' }] } } },
  { name: 'istio-init next to weir-proxy: still not captured twice', reason: 'istio-init', kind: 'weir',
    pod: { metadata: { name: 'a' }, spec: { initContainers: [{ name: 'istio-init' }], containers: [{ name: 'app' }, { name: 'weir-proxy' }] } } },
  { name: 'DISABLE_ENVOY=true', reason: 'envoy-disabled', kind: 'istio',
    pod: { metadata: { name: 'a', annotations: STATUS }, spec: { containers: [{ name: 'istio-proxy', env: [{ name: 'DISABLE_ENVOY', value: 'true' }] }] } } },
  { name: 'DISABLE_ENVOY=false is an ordinary sidecar', reason: 'captured', kind: 'istio',
    pod: { metadata: { name: 'a', annotations: STATUS }, spec: { containers: [{ name: 'istio-proxy', env: [{ name: 'DISABLE_ENVOY', value: 'false' }] }] } } },
  { name: 'sidecar.istio.io/inject: "false" annotation', reason: 'opted-out',
    pod: { metadata: { name: 'a', annotations: { ...STATUS, 'sidecar.istio.io/inject': 'false' } }, spec: { containers: [{ name: 'istio-proxy' }] } } },
  { name: 'weir-proxy needs no status annotation', reason: 'captured', kind: 'weir',
    pod: { metadata: { name: 'a' }, spec: { containers: [{ name: 'app' }, { name: 'weir-proxy' }] } } },
  { name: 'linkerd-proxy', reason: 'captured', kind: 'linkerd',
    pod: { metadata: { name: 'a' }, spec: { containers: [{ name: 'app' }, { name: 'linkerd-proxy' }] } } },
  { name: 'linkerd-proxy as a native sidecar', reason: 'captured', kind: 'linkerd',
    pod: { metadata: { name: 'a' }, spec: { initContainers: [{ name: 'linkerd-proxy', restartPolicy: 'Always' }], containers: [{ name: 'app' }] } } },
];
for (const row of rows) {
  test(`decision: ${row.name} → ${row.reason}`, () => {
    const d = decideCapture(row.pod);
    assert.equal(d.reason, row.reason);
    assert.equal(d.capture, row.reason === 'captured');
    assert.equal(d.proxyKind, row.kind);
  });
}
