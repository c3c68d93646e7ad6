// The shared base view (translate/shared-base.ts, v2/layered-kind.ts,
// v2/views.ts, v2/full-body.ts): a namespace without a Sidecar is the base
// plus its overlay, and that must be exactly what compiling it whole gives;
// proxies of different namespaces share the base's items and its encoded
// whole push; a VirtualService change compiles the base once and reaches
// each view as the items it changed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { compileProxyConfig } from '../../src/controlplane/translate/compile.js';
import { BASE_NAMESPACE, compiledWhole, namespaceOverlay } from '../../src/controlplane/translate/shared-base.js';
import { COMPILED_KINDS, itemsOf, keyOf, type CompiledKind } from '../../src/controlplane/v2/kinds.js';
import { LayeredKind } from '../../src/controlplane/v2/layered-kind.js';
import { counter, VersionedKind } from '../../src/controlplane/v2/versioned-kind.js';
import { fullBody } from '../../src/controlplane/v2/full-body.js';
import { CompiledViews } from '../../src/controlplane/v2/views.js';
import { baseView } from '../../src/controlplane/v2/base-view.js';
import { istioCompiledSource } from '../../src/controlplane/v2/compiled-source.js';
import { IstioConfigStore } from '../../src/controlplane/istio-source.js';
import { readIstioResource } from '../../src/istio/read.js';
import type { IstioResource } from '../../src/istio/types.js';
import type { RegistryService } from '../../src/controlplane/types.js';
import { loadIstioFixtures } from '../support/istio-fixtures.js';
import { until } from '../support/poll.js';

const DOMAIN = 'cluster.local';
const ROOT = 'istio-system';
const silent = pino({ level: 'silent' });

const compile = (services: RegistryService[], resources: IstioResource[], ns: string) =>
  itemsOf(compileProxyConfig({ clusterDomain: DOMAIN, rootNamespace: ROOT, proxyNamespace: ns, services, resources }));

/** key → JSON of one compiled kind, as a view holds it. */
const texts = (kind: CompiledKind, items: readonly unknown[]): Map<string, string> => new Map(items.map((it) => [keyOf(kind, it as never), JSON.stringify(it)]));

/** The base compiled for no namespace, and namespace `ns` layered on it, as the agent's views build them. */
function layered(services: RegistryService[], resources: IstioResource[], ns: string): Record<CompiledKind, LayeredKind> {
  const next = counter();
  const base = compile(services, resources, BASE_NAMESPACE);
  const out = {} as Record<CompiledKind, LayeredKind>;
  for (const k of COMPILED_KINDS) {
    const kind = new VersionedKind<unknown>((it) => keyOf(k, it as never), next);
    kind.replaceAll(base[k]);
    const overlay = k === 'RouteTable' ? namespaceOverlay(services, ns, DOMAIN, (port, name) => kind.get(`${port}|${name}`)) : [];
    out[k] = new LayeredKind(kind, (it) => keyOf(k, it as never), overlay, next);
  }
  return out;
}

// Every golden fixture set (test/unit/istio-compile-golden.test.ts) and one with namespace-local exports of every kind.
const FIXTURE_SETS = [
  ['bookinfo-services.yaml', 'destination-rule-all.yaml', 'virtual-service-reviews-90-10.yaml'],
  ['bookinfo-services.yaml', 'destination-rule-all.yaml', 'virtual-service-ratings-test-delay.yaml'],
  ['bookinfo-services.yaml', 'destination-rule-all.yaml', 'virtual-service-ratings-test-abort.yaml'],
  ['precedence.yaml'],
  ['sidecar-scope.yaml'],
  ['sidecar-ports.yaml'],
];

test('a namespace layered on the base holds exactly what compiling it whole gives (golden fixtures)', () => {
  let layeredCount = 0;
  let wholeCount = 0;
  for (const files of FIXTURE_SETS) {
    const { services, resources } = loadIstioFixtures(files);
    const namespaces = new Set([...services.map((s) => s.namespace), ...resources.map((r) => r.meta.namespace), 'no-services-here']);
    for (const ns of namespaces) {
      if (compiledWhole(resources, services, ns, ROOT)) { wholeCount++; continue; }
      layeredCount++;
      const want = compile(services, resources, ns);
      const view = layered(services, resources, ns);
      for (const k of COMPILED_KINDS) {
        assert.deepEqual(new Map(view[k].full().upserts.map((j) => [keyOf(k, JSON.parse(j)), j])), texts(k, want[k]), `${files.join('+')}: ${ns} ${k}`);
        // The encoded whole push (shared base slices + own items) is the same items.
        const body = fullBody(view[k]);
        const bytes = Buffer.concat(body.parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : p)));
        assert.equal(bytes.length, body.bytes);
        assert.deepEqual(texts(k, JSON.parse(bytes.toString()) as unknown[]), texts(k, want[k]), `${files.join('+')}: ${ns} ${k} encoded`);
      }
    }
  }
  assert.ok(layeredCount >= 8, `layered namespaces checked: ${layeredCount}`);
  assert.ok(wholeCount >= 3, `whole namespaces: ${wholeCount}`);
});

test('what makes a namespace compiled whole: a Sidecar, its own DestinationRule, namespace-local exports, an ExternalName', () => {
  const { services, resources } = loadIstioFixtures(['bookinfo-services.yaml']);
  const read = (o: object): IstioResource => readIstioResource(o).resource!;
  assert.equal(compiledWhole(resources, services, 'default', ROOT), false);
  const vsLocal = read({ apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { namespace: 'team', name: 'local' }, spec: { hosts: ['x'], exportTo: ['.'], http: [{ route: [{ destination: { host: 'x' } }] }] } });
  assert.equal(compiledWhole([vsLocal], services, 'team', ROOT), true, 'exported to its own namespace only');
  assert.equal(compiledWhole([vsLocal], services, 'default', ROOT), false, 'not visible there: the base does not see it either');
  const drListed = read({ apiVersion: 'networking.istio.io/v1', kind: 'DestinationRule', metadata: { namespace: 'team', name: 'to-default' }, spec: { host: 'reviews.default.svc.cluster.local', exportTo: ['default'] } });
  assert.equal(compiledWhole([drListed], services, 'default', ROOT), true, 'exported to a list naming it');
  const drOwn = read({ apiVersion: 'networking.istio.io/v1', kind: 'DestinationRule', metadata: { namespace: 'default', name: 'own' }, spec: { host: 'ratings.default.svc.cluster.local' } });
  assert.equal(compiledWhole([drOwn], services, 'default', ROOT), true, "the proxy's namespace is looked up first");
  assert.equal(compiledWhole([drOwn], services, 'other', ROOT), false);
  const sidecar = read({ apiVersion: 'networking.istio.io/v1', kind: 'Sidecar', metadata: { namespace: 'default', name: 'default' }, spec: { outboundTrafficPolicy: { mode: 'REGISTRY_ONLY' } } });
  assert.equal(compiledWhole([sidecar], services, 'default', ROOT), true);
  const ext = { ...services[0], name: 'alias', kind: 'ExternalName' as const, externalName: 'ratings.default.svc.cluster.local' };
  assert.equal(compiledWhole([], [...services, ext], 'default', ROOT), true);
});

/** A mesh of `n` namespaces × 3 Services, one VirtualService each, as the agent's views see it. */
function mesh(n: number) {
  const services: RegistryService[] = [];
  const store = new IstioConfigStore();
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < 3; j++) services.push({ namespace: `ns-${i}`, name: `svc-${j}`, kind: 'ClusterIP', clusterIPs: [`10.96.${i}.${j + 1}`], ports: [{ name: 'http', port: 80, protocol: 'TCP' }], endpoints: [] } as unknown as RegistryService);
    store.upsert({ apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { namespace: `ns-${i}`, name: 'vs' }, spec: { hosts: ['svc-0'], http: [{ timeout: '2s', route: [{ destination: { host: 'svc-0' } }] }] } });
  }
  const source = istioCompiledSource({ store, rootNamespace: ROOT });
  const changed: string[] = [];
  const views = new CompiledViews({
    logger: silent, debounceMs: 1, kinds: COMPILED_KINDS,
    compile: (key) => itemsOf(source.compile(key, services, DOMAIN)),
    base: baseView(source, () => services, DOMAIN, () => 0),
    onChanged: (key, kinds) => changed.push(...kinds.map((k) => `${key}:${k}`)),
  });
  return { services, store, source, views, changed };
}

test('proxies of different namespaces share one base: the same item objects and one encoded whole push', () => {
  const { views } = mesh(20);
  try {
    for (let i = 0; i < 20; i++) views.acquire(`ns-${i}`);
    assert.equal(views.baseCompiles, 1, 'the base is compiled once');
    assert.equal(views.compiles, 1, 'and no view is compiled whole');
    for (const k of COMPILED_KINDS) {
      const a = views.feed('ns-0', k) as LayeredKind;
      const b = views.feed('ns-7', k) as LayeredKind;
      assert.ok(a instanceof LayeredKind && b instanceof LayeredKind);
      assert.equal(a.base, b.base, `${k}: the same base object`);
    }
    const st = views.layering();
    assert.equal(st.layered.length, 20);
    assert.equal(st.overlayItems, 20 * 3, "each namespace replaces only its own 3 virtual hosts");
    const a = fullBody(views.feed('ns-0', 'RouteTable')!);
    const b = fullBody(views.feed('ns-7', 'RouteTable')!);
    assert.equal(a.shared, b.shared, 'one encoded body for both pushes');
    const ownBytes = (x: typeof a) => x.parts.filter((p) => typeof p === 'string').reduce((n, p) => n + Buffer.byteLength(p as string), 0);
    assert.ok(ownBytes(a) < a.bytes / 10, `each push's own bytes are its overlay: ${ownBytes(a)} of ${a.bytes}`);
  } finally {
    views.close();
  }
});

/** Each view's items against compiling its namespace whole now. */
function assertWhole(views: CompiledViews<CompiledKind>, services: RegistryService[], store: IstioConfigStore, namespaces: string[]): void {
  for (const ns of namespaces) {
    const want = itemsOf(compileProxyConfig({ clusterDomain: DOMAIN, rootNamespace: ROOT, proxyNamespace: ns, services, resources: store.resources(), ignored: store.rejectedResources().flatMap((r) => r.problems.filter((p) => p.severity === 'error').map((p) => ({ resource: `${r.kind} ${r.namespace}/${r.name}`, field: p.field, message: `rejected: ${p.message}` }))) }));
    for (const k of COMPILED_KINDS) assert.deepEqual(new Map(views.feed(ns, k)!.full().upserts.map((j) => [keyOf(k, JSON.parse(j)), j])), texts(k, want[k]), `${ns} ${k}`);
  }
}

test('VirtualService changes recompile only the hosts they match, and every view still equals its whole compile', async () => {
  const { store, views, services } = mesh(4);
  const base = (views as unknown as { opts: { base: { stats: { wholeCompiles: number; hostCompiles: number; hostsRecompiled: number } } } }).opts.base;
  const ns = ['ns-0', 'ns-1', 'ns-2', 'ns-3'];
  try {
    for (const n of ns) views.acquire(n);
    const round = async (): Promise<void> => { const r = views.rounds; views.invalidate(); await until('round', () => views.rounds > r); };
    assert.equal(base.stats.wholeCompiles, 1);
    // A route to a subset nobody defines (an Ignored entry owned by the host), a second VirtualService merged on the same host, a wildcard.
    store.upsert({ apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { namespace: 'ns-1', name: 'vs' }, spec: { hosts: ['svc-0'], http: [{ route: [{ destination: { host: 'svc-0', subset: 'v9' } }] }] } });
    await round();
    assert.deepEqual([base.stats.wholeCompiles, base.stats.hostCompiles, base.stats.hostsRecompiled], [1, 1, 1]);
    assertWhole(views, services, store, ns);
    assert.ok(views.feed('ns-0', 'Ignored')!.full().upserts.some((j) => j.includes('v9')), 'the missing subset is reported');
    store.upsert({ apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { namespace: 'ns-2', name: 'wide' }, spec: { hosts: ['*.ns-2.svc.cluster.local'], http: [{ route: [{ destination: { host: 'svc-1.ns-2.svc.cluster.local' } }] }] } });
    await round();
    assert.deepEqual([base.stats.hostCompiles, base.stats.hostsRecompiled], [2, 1 + 3]);
    assertWhole(views, services, store, ns);
    store.upsert({ apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { namespace: 'ns-1', name: 'vs' }, spec: { hosts: ['svc-0'], http: [{ route: [{ destination: { host: 'svc-0' } }] }] } });
    store.remove('VirtualService', 'ns-2', 'wide');
    await round();
    assertWhole(views, services, store, ns);
    assert.ok(!views.feed('ns-0', 'Ignored')!.full().upserts.some((j) => j.includes('v9')), 'the report went with its route');
    // An invalid VirtualService is rejected (an Ignored entry from the store) and its old version's routes go.
    store.upsert({ apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { namespace: 'ns-1', name: 'vs' }, spec: { hosts: 'svc-0' } });
    await round();
    assertWhole(views, services, store, ns);
    // Anything but a VirtualService compiles the base whole.
    const whole = base.stats.wholeCompiles;
    store.upsert({ apiVersion: 'networking.istio.io/v1', kind: 'DestinationRule', metadata: { namespace: 'ns-3', name: 'x' }, spec: { host: 'svc-2.ns-0.svc.cluster.local', exportTo: ['ns-0'] } });
    await round();
    assert.equal(base.stats.wholeCompiles, whole + 1);
    assertWhole(views, services, store, ns);
  } finally {
    views.close();
  }
});

test('a VirtualService change compiles the base once and reaches each view as the one item it changed', async () => {
  const { store, views, changed } = mesh(10);
  try {
    for (let i = 0; i < 10; i++) views.acquire(`ns-${i}`);
    // One Sidecar-scoped view (compiled whole) that does not see ns-1.
    store.upsert({ apiVersion: 'networking.istio.io/v1', kind: 'Sidecar', metadata: { namespace: 'ns-9', name: 'default' }, spec: { egress: [{ hosts: ['./*'] }] } });
    views.invalidate();
    await until('round after the Sidecar', () => views.rounds === 1);
    assert.deepEqual(views.layering().layered.length, 9);
    const versions = new Map([...Array(10).keys()].map((i) => [`ns-${i}`, views.feed(`ns-${i}`, 'RouteTable')!.version()]));
    const [b0, c0] = [views.baseCompiles, views.compiles];
    changed.length = 0;
    store.upsert({ apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { namespace: 'ns-1', name: 'vs' }, spec: { hosts: ['svc-0'], http: [{ timeout: '3s', route: [{ destination: { host: 'svc-0' } }] }] } });
    views.invalidate();
    await until('round after the VirtualService', () => views.rounds === 2);
    assert.equal(views.baseCompiles - b0, 1, 'one base compile (of the one host)');
    assert.equal(views.compiles - c0, 2, 'plus the one view compiled whole');
    assert.deepEqual(changed.sort(), [...Array(9).keys()].map((i) => `ns-${i}:RouteTable`).sort(), 'the scoped view (it does not see ns-1) is not changed');
    for (let i = 0; i < 9; i++) {
      const d = views.feed(`ns-${i}`, 'RouteTable')!.since(versions.get(`ns-${i}`)!)!;
      assert.equal(d.upserts.length, 1, `ns-${i}: one item`);
      const vh = (JSON.parse(d.upserts[0]) as { virtualHost: { name: string; domains: string[]; routes: { timeoutMs?: number }[] } }).virtualHost;
      assert.equal(vh.name, 'svc-0.ns-1.svc.cluster.local:80');
      assert.equal(vh.routes[0].timeoutMs, 3000);
      assert.equal(vh.domains.includes('svc-0'), i === 1, 'the bare name only in its own namespace');
    }
    assert.equal(views.feed('ns-9', 'RouteTable')!.version(), versions.get('ns-9'));
  } finally {
    views.close();
  }
});

test('a namespace that becomes namespace-sensitive is compiled whole at once, and layered again when that goes', async () => {
  const { store, views, services, changed } = mesh(3);
  try {
    for (let i = 0; i < 3; i++) views.acquire(`ns-${i}`);
    store.upsert({ apiVersion: 'networking.istio.io/v1', kind: 'DestinationRule', metadata: { namespace: 'ns-2', name: 'own' }, spec: { host: 'svc-1.ns-0.svc.cluster.local', trafficPolicy: { loadBalancer: { simple: 'ROUND_ROBIN' } } } });
    views.invalidate();
    await until('round', () => views.rounds === 1);
    assert.deepEqual(views.layering().layered.sort(), ['ns-0', 'ns-1']);
    assert.ok(changed.includes('ns-2:Cluster'));
    const resources = store.resources();
    for (const i of [0, 1, 2]) {
      const want = compile(services, resources, `ns-${i}`);
      for (const k of COMPILED_KINDS) assert.deepEqual(new Map(views.feed(`ns-${i}`, k)!.full().upserts.map((j) => [keyOf(k, JSON.parse(j)), j])), texts(k, want[k]), `ns-${i} ${k}`);
    }
    store.remove('DestinationRule', 'ns-2', 'own');
    views.invalidate();
    await until('round 2', () => views.rounds === 2);
    assert.equal(views.layering().layered.length, 3);
  } finally {
    views.close();
  }
});

test('a base compile that throws leaves every layered view on the last good base', async () => {
  const services: RegistryService[] = [{ namespace: 'a', name: 'web', kind: 'ClusterIP', clusterIPs: ['10.96.0.1'], ports: [{ name: 'http', port: 80, protocol: 'TCP' }], endpoints: [] } as unknown as RegistryService];
  const source = istioCompiledSource({ store: new IstioConfigStore(), rootNamespace: ROOT });
  const real = baseView(source, () => services, DOMAIN, () => 0)!;
  let fail = false;
  const views = new CompiledViews({
    logger: silent, debounceMs: 1, kinds: COMPILED_KINDS, compile: (key) => itemsOf(source.compile(key, services, DOMAIN)), onChanged: () => {},
    base: { ...real, compile: (baseItem) => { if (fail) throw new Error('translator bug'); return real.compile(baseItem); } },
  });
  try {
    views.acquire('a');
    const before = views.feed('a', 'RouteTable')!.full();
    assert.equal(before.upserts.length, 1);
    fail = true;
    views.invalidate();
    await until('round', () => views.rounds === 1);
    assert.deepEqual(views.feed('a', 'RouteTable')!.full(), before);
    assert.deepEqual(views.layering().layered, ['a']);
  } finally {
    views.close();
  }
});
