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
