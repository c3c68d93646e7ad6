// What the proxy checks in a push before applying it (envelope and items,
// errors naming the item and field), the store's per-kind application, and
// the ServiceEntry VIP allocator (range, stability, no overlap with the
// remote-cluster range).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkPush, V2Applier } from '../../src/proxy/v2-applier.js';
import { checkItems } from '../../src/controlplane/v2/item-schema.js';
import { CompiledConfigStore } from '../../src/proxy/compiled/store.js';
import { VipAllocator } from '../../src/controlplane/translate/service-entry-registry.js';

test('push envelope: every bad field is named', () => {
  const { msg, errors } = checkPush({ type: 'push', kind: 'Routes', version: -1, nonce: '', upserts: {}, deletes: [1] });
  assert.equal(msg, undefined);
  assert.deepEqual(errors.map((e) => e.field), ['push.kind', 'push.nonce', 'push.version', 'push.fromVersion', 'push.upserts', 'push.deletes']);
  assert.ok(checkPush({ type: 'push', kind: 'Cluster', version: 3, nonce: 'n', full: true, upserts: [], deletes: [] }).msg);
});

test('items: the key names the item, the path names the field', () => {
  // Compiled kinds: the proxy's compiled-config validator (the --static-config one), its path mapped back to the item.
  const applier = new V2Applier(new CompiledConfigStore(), 'cluster.local', () => {});
  const ok = { name: 'outbound|80||ok', host: 'ok', port: 80, protocol: 'http', selector: {}, loadBalancer: { simple: 'ROUND_ROBIN' }, connectionPool: { connectTimeoutMs: 1, idleTimeoutMs: 1 }, tls: { mode: 'AUTO' } };
  const nack = applier.handle({ type: 'push', kind: 'Cluster', version: 1, nonce: 'n', full: true, upserts: [ok, { ...ok, name: 'outbound|80||a', selector: { v: 1 } }], deletes: [] });
  assert.equal(nack.type, 'nack');
  assert.deepEqual((nack as { errors: { name: string; field: string }[] }).errors.map((e) => [e.name, e.field]), [['outbound|80||a', 'selector.v']]);
  assert.deepEqual(checkItems('Registry', [{ namespace: 'a', name: 'b', kind: 'ClusterIP', clusterIPs: ['10.0.0.300'], ports: [], endpoints: [] }]).map((e) => [e.name, e.field]), [['a/b', 'clusterIPs[0]']]);
  assert.deepEqual(checkItems('Listener', ['x']).map((e) => [e.name, e.field]), [['#0', '']]);
});

test('a rejected push leaves the store untouched; a delta from a version not held is rejected', () => {
  const store = new CompiledConfigStore();
  const applier = new V2Applier(store, 'cluster.local', () => {});
  const vh = (name: string) => ({ name, domains: [name], routes: [{ source: 'default', match: [], action: { route: [{ cluster: `outbound|80||${name}`, weight: 100 }] }, mirrors: [] }] });
  assert.equal(applier.handle({ type: 'push', kind: 'RouteTable', version: 1, nonce: 'a', full: true, upserts: [{ port: 80, virtualHost: vh('b:80') }, { port: 80, virtualHost: vh('a:80') }], deletes: [] }).type, 'ack');
  assert.deepEqual(store.routeTable(80)!.virtualHosts.map((v) => v.name), ['a:80', 'b:80'], 'reassembled in host order');
  const gen = store.generation;
  const bad = applier.handle({ type: 'push', kind: 'RouteTable', version: 2, nonce: 'b', fromVersion: 1, upserts: [{ port: 80, virtualHost: { ...vh('c:80'), routes: [{ source: 'x', match: [{ uri: { regex: '(' } }], action: { route: [] }, mirrors: [] }] } }], deletes: ['80|a:80'] });
  assert.equal(bad.type, 'nack');
  assert.equal(store.generation, gen);
  assert.deepEqual(store.routeTable(80)!.virtualHosts.map((v) => v.name), ['a:80', 'b:80']);
  const stale = applier.handle({ type: 'push', kind: 'RouteTable', version: 3, nonce: 'c', fromVersion: 2, upserts: [], deletes: ['80|a:80'] });
  assert.equal(stale.type, 'nack');
  assert.match((stale as { errors: { message: string }[] }).errors[0].message, /holds RouteTable version 1, not 2/);
  assert.equal(applier.handle({ type: 'push', kind: 'RouteTable', version: 3, nonce: 'd', fromVersion: 1, upserts: [], deletes: ['80|a:80'] }).type, 'ack');
  assert.deepEqual(store.routeTable(80)!.virtualHosts.map((v) => v.name), ['b:80']);
  assert.equal(store.outboundTrafficPolicy, 'ALLOW_ANY');
  assert.equal(applier.handle({ type: 'push', kind: 'Listener', version: 1, nonce: 'e', full: true, upserts: [{ name: 'outbound', outboundTrafficPolicy: 'REGISTRY_ONLY' }], deletes: [] }).type, 'ack');
  assert.equal(store.outboundTrafficPolicy, 'REGISTRY_ONLY');
});

test('auto-allocated VIPs: 240.240/16 only, one per host, stable, released when the host goes', () => {
  const a = new VipAllocator();
  const hosts = Array.from({ length: 2000 }, (_, i) => `h${i}.example.com`);
  const vips = hosts.map((h) => a.vipFor(h));
  assert.ok(vips.every((v) => /^240\.240\.\d+\.\d+$/.test(v) && v !== '240.240.0.0' && v !== '240.240.255.255'));
  assert.equal(new Set(vips).size, hosts.length);
  assert.equal(a.vipFor('h7.example.com'), vips[7]);
  assert.equal(new VipAllocator().vipFor('h7.example.com'), vips[7], 'a restarted agent hands out the same VIP (no collision)');
  a.retain(new Set(['h1.example.com']));
  assert.equal(a.vipFor('h1.example.com'), vips[1]);
});

test('versions are one space across views: a version of another view (or of a dropped one) is never continued by delta', async () => {
  const { VersionedKind, counter } = await import('../../src/controlplane/v2/versioned-kind.js');
  const next = counter();
  const a = new VersionedKind<{ n: string }>((x) => x.n, next);
  const b = new VersionedKind<{ n: string }>((x) => x.n, next);
  a.replaceAll([{ n: 'x' }]);
  b.replaceAll([{ n: 'y' }]);
  a.replaceAll([{ n: 'x' }, { n: 'z' }]);
  assert.deepEqual([a.version(), b.version()], [3, 2]);
  assert.equal(b.since(1), undefined, "a's version 1 is not b's");
  assert.deepEqual(a.since(1), { fromVersion: 1, version: 3, upserts: ['{"n":"z"}'], deletes: [] });
  assert.deepEqual(b.since(0)?.upserts, ['{"n":"y"}'], '0 is the empty kind everywhere');
  assert.equal(a.replaceAll([{ n: 'x' }, { n: 'z' }]), false, 'the same content costs no version');
});
