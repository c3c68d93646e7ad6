// ResilientInformer against the TestApiServer with the real client: cold
// start cost, closed watches, 410 Gone, stalled watches, failing lists.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { TestApiServer, type KubeObject } from '../support/apiserver.js';
import { loadKubeConfig, podsOfNode } from '../../src/kube/informers.js';
import type { ResilientInformer } from '../../src/kube/informer.js';
import type { Pod } from '../../src/kube/pod-types.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { until } from '../support/poll.js';

const logger = pino({ level: 'silent' });
let api: TestApiServer;
let dir: string;

before(async () => {
  api = await TestApiServer.start({ bookmarkIntervalMs: 200 });
  dir = mkdtempSync(join(tmpdir(), 'wk-inf-'));
});
after(async () => {
  await api.stop();
  rmSync(dir, { recursive: true, force: true });
});

function pod(name: string, node: string, ns = 'default'): KubeObject {
  return { kind: 'Pod', metadata: { name, namespace: ns }, spec: { nodeName: node, containers: [{ name: 'app' }] } };
}

function informer(node: string, extra: { watchdogMs?: number } = {}): ResilientInformer<Pod> {
  const kubeConfig = loadKubeConfig(api.writeKubeconfig(dir));
  return podsOfNode({ kubeConfig, logger, nodeName: node, minBackoffMs: 50, maxBackoffMs: 200, ...extra });
}

function podRequests(): { lists: number; watches: number } {
  const r = api.requests.filter((x) => x.path === '/api/v1/pods');
  return { lists: r.filter((x) => !x.watch).length, watches: r.filter((x) => x.watch).length };
}

test('cold start with 110 pods: one list and one watch, only this node', async (t) => {
  const node = `wk-node-${Math.random().toString(16).slice(2, 8)}`;
  for (let i = 0; i < 110; i++) api.put(pod(`p${i}`, node));
  for (let i = 0; i < 20; i++) api.put(pod(`other${i}`, `${node}-x`));
  api.requests.length = 0;
  const inf = informer(node);
  t.after(() => inf.stop());
  await inf.start();
  assert.equal(inf.list().length, 110);
  await until('watch open', () => api.watchCount() >= 1);
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(podRequests(), { lists: 1, watches: 1 });
  const w = api.requests.find((x) => x.watch)!;
  assert.equal(w.query.fieldSelector, `spec.nodeName=${node}`);
  assert.equal(w.query.allowWatchBookmarks, 'true');

  // Live changes flow through the watch.
  const seen: string[] = [];
  inf.on('add', (p) => seen.push(`add:${p.metadata.name}`));
  inf.on('update', (p) => seen.push(`update:${p.metadata.name}`));
  inf.on('delete', (p) => seen.push(`delete:${p.metadata.name}`));
  api.put(pod('new', node));
  api.put({ ...pod('p1', node), metadata: { name: 'p1', namespace: 'default', labels: { a: 'b' } } });
  api.remove('Pod', 'default', 'p2');
  api.put(pod('elsewhere', `${node}-x`));
  await until('3 events', () => seen.length >= 3);
  await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(seen, ['add:new', 'update:p1', 'delete:p2']);
  assert.equal(inf.get('default', 'p1')?.metadata.labels?.a, 'b');
  assert.equal(inf.get('default', 'p2'), undefined);
  for (let i = 0; i < 110; i++) api.remove('Pod', 'default', `p${i}`);
  for (let i = 0; i < 20; i++) api.remove('Pod', 'default', `other${i}`);
  api.remove('Pod', 'default', 'new');
  api.remove('Pod', 'default', 'elsewhere');
});

test('closed watches resume from the last resourceVersion without a relist', async (t) => {
  const node = `wk-n-${Math.random().toString(16).slice(2, 8)}`;
  api.put(pod('c1', node, 'wk-close'));
  const inf = informer(node);
  t.after(() => inf.stop());
  await inf.start();
  await until('watch open', () => api.watchCount() >= 1);
  api.requests.length = 0;
  for (let i = 0; i < 3; i++) {
    api.closeWatches();
    api.put(pod(`c-after-${i}`, node, 'wk-close'));
    await until(`c-after-${i} seen`, () => inf.get('wk-close', `c-after-${i}`) !== undefined);
  }
  assert.equal(podRequests().lists, 0, 'no relist after a clean close');
  assert.ok(inf.health().restarts >= 3);
  assert.equal(inf.health().relists, 0);
});

test('410 Gone: relist, and changes made while expired are seen (including deletes)', async (t) => {
  const node = `wk-n-${Math.random().toString(16).slice(2, 8)}`;
  api.put(pod('keep', node, 'wk-410'));
  api.put(pod('gone', node, 'wk-410'));
  const inf = informer(node);
  t.after(() => inf.stop());
  await inf.start();
  const deleted: string[] = [];
  inf.on('delete', (p) => deleted.push(p.metadata.name!));
  api.stallWatches(true); // the informer misses these changes on its open watch
  api.remove('Pod', 'wk-410', 'gone');
  api.put(pod('born', node, 'wk-410'));
  api.stallWatches(false);
  api.requests.length = 0;
  api.expireHistory();
  await until('relist', () => inf.health().relists >= 1 && inf.get('wk-410', 'born') !== undefined);
  assert.equal(inf.get('wk-410', 'gone'), undefined);
  assert.deepEqual(deleted, ['gone']);
  assert.equal(podRequests().lists, 1);
});

test('a stalled watch is restarted by the watchdog', async (t) => {
  const node = `wk-n-${Math.random().toString(16).slice(2, 8)}`;
  const inf = informer(node, { watchdogMs: 600 });
  t.after(() => inf.stop());
  await inf.start();
  await until('watch open', () => api.watchCount() >= 1);
  api.stallWatches(true);
  api.put(pod('during-stall', node, 'wk-stall'));
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(inf.get('wk-stall', 'during-stall'), undefined, 'a stalled watch delivers nothing');
  api.stallWatches(false);
  await until('watchdog restart', () => inf.get('wk-stall', 'during-stall') !== undefined, 5000);
  assert.ok(inf.health().restarts >= 1);
  assert.match(inf.health().lastError ?? '', /no event nor bookmark/);
});

test('failing lists are retried with backoff until the first sync', async (t) => {
  const node = `wk-n-${Math.random().toString(16).slice(2, 8)}`;
  api.put(pod('x', node, 'wk-fail'));
  api.failRequests(3);
  api.requests.length = 0;
  const inf = informer(node);
  t.after(() => inf.stop());
  const errors: string[] = [];
  inf.on('error', (e) => errors.push(e.message));
  await inf.start();
  assert.equal(inf.list().length, 1);
  assert.equal(errors.length, 3);
  assert.equal(podRequests().lists, 4);
  assert.equal(inf.health().synced, true);
});
