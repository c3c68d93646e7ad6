// The v2 Security kind: the agent's per-workload compile travels as items
// and comes back as the same compiled security at the proxy; a bad item is
// NACKed with its name and field and the proxy keeps its last good
// policies; deltas replace one policy.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { IstioConfigStore } from '../../src/controlplane/istio-source.js';
import { createSecurityFeeds, istioSecuritySource } from '../../src/controlplane/v2/security-feed.js';
import type { Session } from '../../src/controlplane/server.js';
import { createLogger } from '../../src/common/log.js';
import { until } from '../support/poll.js';
import { checkItems } from '../../src/controlplane/v2/item-schema.js';
import { compileSecurity } from '../../src/security/compile.js';
import { authorize } from '../../src/security/evaluate.js';
import { compiledFromItems, securityItems, type SecurityItem } from '../../src/security/items.js';
import { readSecurityResource } from '../../src/security/read.js';
import type { SecurityResource } from '../../src/security/types.js';
import { V2Applier } from '../../src/proxy/v2-applier.js';
import { CompiledConfigStore } from '../../src/proxy/compiled/store.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const docs = () => parseAllDocuments(readFileSync(path.join(ROOT, 'test/fixtures/security/policies.yaml'), 'utf8')).map((d) => d.toJS() as unknown);

test('items round-trip: what the agent compiles per workload is what the proxy enforces', () => {
  const store = new IstioConfigStore<SecurityResource>((o) => readSecurityResource(o));
  for (const d of docs()) store.upsert(d);
  const source = istioSecuritySource({ store, rootNamespace: 'istio-system', podLabels: (_ns, name): Record<string, string> => (name === 'details-1' ? { app: 'details' } : {}) });
  const key = source.workloadKey({ namespace: 'shop', name: 'details-1', uid: 'u', ips: [] });
  const items = JSON.parse(JSON.stringify(source.compile(key))) as SecurityItem[];
  assert.deepEqual(checkItems('Security', items), []);
  const direct = compileSecurity(store.resources(), { namespace: 'shop', labels: { app: 'details' } });
  const back = compiledFromItems(items);
  assert.deepEqual({ ...back, ignored: [] }, JSON.parse(JSON.stringify({ ...direct, ignored: [] })));
  assert.ok(back.ignored.some((i) => /CUSTOM/.test(i)), back.ignored.join('\n'));
  assert.equal(back.mode, 'STRICT');
  assert.deepEqual(back.portLevel, { 9080: 'PERMISSIVE', 9443: 'STRICT' });
  const req = (principal: string, method: string, p: string) => ({ sourcePrincipal: principal, sourceIp: '10.0.0.1', destinationPort: 9080, http: { host: 'details', method, path: p, headers: {} } });
  assert.equal(authorize(back, req('cluster.local/ns/shop/sa/productpage', 'GET', '/details/1')).allowed, true);
  assert.equal(authorize(back, req('cluster.local/ns/shop/sa/reviews', 'GET', '/details/1')).allowed, false);
  // Another workload of the namespace: deny-all applies, details-viewer (selector) does not.
  const other = compiledFromItems(source.compile(source.workloadKey({ namespace: 'shop', name: 'ratings-1', uid: 'u2', ips: [] })));
  assert.deepEqual(other.allow.map((p) => p.name), ['shop/deny-all']);
  assert.deepEqual(Object.keys(other.portLevel), []);
});

test('a bad Security item is named by key and field; every unknown field is refused', () => {
  const errs = checkItems('Security', [
    { name: 'mtls', mode: 'STRICTER', portLevel: { 99999: 'STRICT', 80: 'UNSET' }, peerAuthentications: [], ignored: [] },
    { name: 'shop/p', action: 'ALLOW', rules: [{ from: [{ ipBlocks: ['10.0.0.0/40'], principalz: ['x'] }], to: [{ ports: ['http'] }], when: [{ key: 1 }] }] },
    { name: 'shop/q', action: 'CUSTOM', rules: [] },
  ]);
  assert.deepEqual(errs.map((e) => `${e.name} ${e.field}`), [
    'mtls mode', 'mtls portLevel.80', 'mtls portLevel.99999',
    'shop/p rules[0].from[0].principalz', 'shop/p rules[0].from[0].ipBlocks[0]', 'shop/p rules[0].to[0].ports[0]', 'shop/p rules[0].when[0].key',
    'shop/q action',
  ]);
});

test('the proxy applies a Security push whole or not at all; a delta replaces one policy', () => {
  let enforced: SecurityItem[] | undefined;
  const applier = new V2Applier(new CompiledConfigStore(), 'cluster.local', () => {}, (items) => { enforced = items; });
  const mtls = { name: 'mtls', mode: 'STRICT', portLevel: {}, peerAuthentications: ['a/default'], ignored: [] };
  const allowGet = { name: 'a/allow', action: 'ALLOW', rules: [{ to: [{ methods: ['GET'] }] }] };
  assert.equal(applier.handle({ type: 'push', kind: 'Security', version: 1, nonce: 'n1', full: true, upserts: [mtls, allowGet], deletes: [] }).type, 'ack');
  assert.deepEqual(enforced?.map((i) => i.name), ['mtls', 'a/allow']);
  // Bad: nacked, nothing of it applied (the listener is not even called).
  const before = enforced;
  const nack = applier.handle({ type: 'push', kind: 'Security', version: 2, nonce: 'n2', fromVersion: 1, upserts: [{ ...allowGet, action: 'ALLOWED' }], deletes: ['mtls'] });
  assert.equal(nack.type, 'nack');
  assert.deepEqual((nack as { errors: unknown[] }).errors, [{ name: 'a/allow', field: 'action', message: 'must be one of ALLOW, DENY, AUDIT' }]);
  assert.equal(enforced, before);
  assert.deepEqual(applier.versions(), { Security: 1 });
  // A delta from the held version: one policy replaced, the mtls item kept.
  assert.equal(applier.handle({ type: 'push', kind: 'Security', version: 3, nonce: 'n3', fromVersion: 1, upserts: [{ name: 'a/deny', action: 'DENY', rules: [{}] }], deletes: ['a/allow'] }).type, 'ack');
  assert.deepEqual(enforced?.map((i) => i.name), ['mtls', 'a/deny']);
  // The enforcer refusing it (throws) is a nack too, and the last good set stays.
  const refusing = new V2Applier(new CompiledConfigStore(), 'cluster.local', () => {}, () => { throw new Error('no'); });
  assert.equal(refusing.handle({ type: 'push', kind: 'Security', version: 1, nonce: 'x', full: true, upserts: [mtls], deletes: [] }).type, 'nack');
});

test('a proxy moves to its workload\'s compile when its pod\'s labels change (pushed whole)', async () => {
  const store = new IstioConfigStore<SecurityResource>((o) => readSecurityResource(o));
  for (const d of docs()) store.upsert(d);
  let labels: Record<string, string> = {};
  let labelsChanged = () => {};
  const source = istioSecuritySource({ store, rootNamespace: 'istio-system', podLabels: () => labels, onLabelsChange: (cb) => { labelsChanged = cb; } });
  const calls: string[] = [];
  const session = { identity: { namespace: 'shop', name: 'p-1', uid: 'u', ips: [] }, v2: { restart: (k: string[]) => calls.push(`restart ${k}`), catchUp: (k: string[]) => calls.push(`catchUp ${k}`) } } as unknown as Session;
  const feeds = createSecurityFeeds({ source, logger: createLogger({ name: 't', level: 'silent' }), debounceMs: 1, sessions: () => [session], synced: () => true });
  feeds.admit(session, session.identity!);
  const allowOf = () => compiledFromItems(feeds.feed(session)!.full().upserts.map((j) => JSON.parse(j) as SecurityItem)).allow.map((p) => p.name);
  assert.deepEqual(allowOf(), ['shop/deny-all']);
  labels = { app: 'details' };
  labelsChanged();
  await until('the proxy re-keyed', () => calls.length >= 2);
  assert.deepEqual(calls, ['restart Security', 'catchUp Security']);
  assert.deepEqual(allowOf(), ['shop/deny-all', 'shop/details-viewer']);
  feeds.close();
});
