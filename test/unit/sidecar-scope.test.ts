// Which Sidecar applies to a proxy (workloadSelector in its namespace, else
// the namespace's, else the root default; oldest wins) and the view key the
// control plane shares between proxies; egress host forms "*/*", "~/*", "ns/*.suffix".
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { selectSidecar, EgressScope } from '../../src/controlplane/translate/sidecar-scope.js';
import { istioCompiledSource } from '../../src/controlplane/v2/compiled-source.js';
import { IstioConfigStore } from '../../src/controlplane/istio-source.js';
import type { Sidecar } from '../../src/istio/types.js';

const sc = (namespace: string, name: string, created: number, extra: Partial<Sidecar> = {}): Sidecar => ({
  kind: 'Sidecar', meta: { namespace, name, created }, egress: [{ hosts: ['./*'] }], outboundTrafficPolicy: 'ALLOW_ANY', ...extra,
});

test('selection: selector match in the namespace, then the namespace default, then the root default; oldest wins', () => {
  const all = [sc('istio-system', 'mesh', 1), sc('shop', 'ns-default-new', 5), sc('shop', 'ns-default-old', 2), sc('shop', 'checkout', 3, { workloadSelector: { app: 'checkout' } })];
  assert.equal(selectSidecar(all, 'shop', 'istio-system', { app: 'checkout', v: '1' })?.meta.name, 'checkout');
  assert.equal(selectSidecar(all, 'shop', 'istio-system', { app: 'cart' })?.meta.name, 'ns-default-old');
  assert.equal(selectSidecar(all, 'other', 'istio-system', {})?.meta.name, 'mesh');
  assert.equal(selectSidecar([], 'other', 'istio-system', {}), undefined);
});

test('egress host forms', () => {
  const scope = (hosts: string[]) => new EgressScope(sc('shop', 's', 1, { egress: [{ hosts }] }), 'shop', 'cluster.local');
  assert.ok(scope(['*/*']).allowsHost('pay', 'pay.pay.svc.cluster.local'));
  assert.ok(!scope(['~/*']).allowsHost('shop', 'api.shop.svc.cluster.local'));
  assert.ok(scope(['pay/*.pay.svc.cluster.local']).allowsHost('pay', 'fraud.pay.svc.cluster.local'));
  assert.ok(!scope(['pay/*.pay.svc.cluster.local']).allowsHost('shop', 'fraud.pay.svc.cluster.local'), 'the namespace must match too');
  assert.ok(scope(['./*']).allowsHost('shop', 'api.shop.svc.cluster.local'));
  assert.ok(!scope(['./*']).allowsHost('pay', 'pay.pay.svc.cluster.local'));
});

test('view keys: proxies share a view per namespace unless a selector Sidecar picks them', () => {
  const store = new IstioConfigStore();
  const labels: Record<string, Record<string, string>> = { 'shop/checkout-1': { app: 'checkout' }, 'shop/cart-1': { app: 'cart' } };
  const src = istioCompiledSource({ store, rootNamespace: 'istio-system', podLabels: (ns, n) => labels[`${ns}/${n}`] });
  const id = (name: string) => ({ namespace: 'shop', name, uid: name, ips: [] });
  assert.equal(src.viewKey(id('checkout-1')), 'shop');
  store.upsert({ apiVersion: 'networking.istio.io/v1', kind: 'Sidecar', metadata: { namespace: 'shop', name: 'checkout' }, spec: { workloadSelector: { labels: { app: 'checkout' } }, egress: [{ hosts: ['./*'] }] } });
  assert.equal(src.viewKey(id('checkout-1')), 'shop#checkout');
  assert.equal(src.viewKey(id('cart-1')), 'shop');
});
