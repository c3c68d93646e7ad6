// The seeds' injection table (002: namespaceSelector × default policy × pod
// override → injected?), every row, then the safety rules that override it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decideInjection, namespaceSelected, podOverride } from '../../src/injector/decision.js';
import { SEED_TABLE } from '../support/seed-table.js';


const spec = { containers: [{ name: 'app' }] };

for (const r of SEED_TABLE) {
  test(`seed table row ${r.row}: ns ${r.nsMatch ? 'yes' : 'no'} × ${r.policy} × override ${r.override ?? 'default'} → ${r.injected ? 'yes' : 'no'}`, () => {
    const annotations: Record<string, string> = r.override === undefined ? {} : { 'sidecar.istio.io/inject': String(r.override) };
    const d = decideInjection({ namespace: 'shop', namespaceSelected: r.nsMatch, policy: r.policy, metadata: { annotations }, spec });
    assert.equal(d.inject, r.injected, d.reason);
  });
}

test('the explicit default rows: "true" under enabled and "false" under disabled equal the default', () => {
  assert.equal(decideInjection({ namespace: 'shop', namespaceSelected: true, policy: 'enabled', metadata: { annotations: { 'sidecar.istio.io/inject': 'true' } }, spec }).inject, true);
  assert.equal(decideInjection({ namespace: 'shop', namespaceSelected: true, policy: 'disabled', metadata: { annotations: { 'sidecar.istio.io/inject': 'false' } }, spec }).inject, false);
});

for (const ns of ['kube-system', 'kube-public']) {
  test(`safety: never ${ns}, whatever the selector, policy and override say`, () => {
    for (const policy of ['enabled', 'disabled'] as const) {
      const d = decideInjection({ namespace: ns, namespaceSelected: true, policy, metadata: { labels: { 'sidecar.istio.io/inject': 'true' } }, spec });
      assert.deepEqual(d, { inject: false, reason: 'protected-namespace' });
    }
  });
}

test('safety: never a hostNetwork pod, even opted in', () => {
  const d = decideInjection({ namespace: 'shop', namespaceSelected: true, policy: 'enabled', metadata: { labels: { 'sidecar.istio.io/inject': 'true' } }, spec: { ...spec, hostNetwork: true } });
  assert.deepEqual(d, { inject: false, reason: 'host-network' });
});

test('configured exclusions (weir-system) are never injected', () => {
  const d = decideInjection({ namespace: 'weir-system', excludeNamespaces: ['weir-system'], namespaceSelected: true, policy: 'enabled', metadata: {}, spec });
  assert.equal(d.reason, 'protected-namespace');
});

test('the label wins over the annotation; unknown values are no opinion', () => {
  assert.equal(podOverride({ labels: { 'sidecar.istio.io/inject': 'false' }, annotations: { 'sidecar.istio.io/inject': 'true' } }), false);
  assert.equal(podOverride({ labels: { 'sidecar.istio.io/inject': 'true' }, annotations: { 'sidecar.istio.io/inject': 'false' } }), true);
  assert.equal(podOverride({ annotations: { 'sidecar.istio.io/inject': 'maybe' } }), undefined);
  assert.equal(podOverride({ annotations: { 'sidecar.istio.io/inject': 'False' } }), false);
});

test('namespace selector: istio-injection=enabled or weir.io/injection=enabled', () => {
  assert.equal(namespaceSelected({ 'istio-injection': 'enabled' }), true);
  assert.equal(namespaceSelected({ 'weir.io/injection': 'enabled' }), true);
  assert.equal(namespaceSelected({ 'istio-injection': 'disabled' }), false);
  assert.equal(namespaceSelected(undefined), false);
});
