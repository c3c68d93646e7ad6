// KubePodResolver, StatusWriter and the peer identifier against the
// TestApiServer and the real /proc.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { TestApiServer, type KubeObject } from '../support/apiserver.js';
import { loadKubeConfig, podsOfNode } from '../../src/kube/informers.js';
import { KubePodResolver } from '../../src/agent/kube-resolver.js';
import { StatusWriter, CAPTURE_ANNOTATION } from '../../src/agent/status-writer.js';
import { createPeerIdentifier } from '../../src/agent/identify.js';
import type { SandboxStore } from '../../src/agent/sandbox-store.js';
import type { Pod } from '../../src/kube/pod-types.js';
import type { KubeConfig } from '@kubernetes/client-node';

const logger = pino({ level: 'silent' });
const NODE = 'wk-res-node';
let api: TestApiServer;
let dir: string;
let kc: KubeConfig;

before(async () => {
  api = await TestApiServer.start();
  dir = mkdtempSync(path.join(tmpdir(), 'wk-res-'));
  kc = loadKubeConfig(api.writeKubeconfig(dir));
});
after(async () => { await api.stop(); rmSync(dir, { recursive: true, force: true }); });

function pod(name: string, uid?: string): KubeObject {
  return { kind: 'Pod', metadata: { name, namespace: 'wk', ...(uid ? { uid } : {}) }, spec: { nodeName: NODE, containers: [{ name: 'app' }] } };
}
const gets = (name: string): number => api.requests.filter((r) => r.method === 'GET' && r.path === `/api/v1/namespaces/wk/pods/${name}`).length;

test('resolver: cache first, direct GET on a miss, bounded retries, uid must match, API errors surface', async (t) => {
  const pods = podsOfNode({ kubeConfig: kc, logger, nodeName: NODE });
  t.after(() => pods.stop());
  const cached = api.put(pod('cached'));
  await pods.start();
  const r = new KubePodResolver({ kubeConfig: kc, pods, logger, attempts: 3, retryDelayMs: 20 });
  assert.equal((await r.getPod('wk', 'cached'))?.metadata.uid, cached.metadata.uid);
  assert.equal(gets('cached'), 0);

  // On another node's informer, so only a GET can find it.
  const other = api.put({ ...pod('elsewhere'), spec: { nodeName: 'x', containers: [] } });
  assert.equal((await r.getPod('wk', 'elsewhere', other.metadata.uid))?.metadata.name, 'elsewhere');
  assert.equal(gets('elsewhere'), 1);

  assert.equal(await r.getPod('wk', 'missing'), undefined);
  assert.equal(gets('missing'), 3, 'three attempts, then "not yet"');

  assert.equal(await r.getPod('wk', 'elsewhere', 'another-incarnation'), undefined);

  api.failRequests(10, 500);
  await assert.rejects(r.getPod('wk', 'failing'), /500|injected/);
  api.failRequests(0);
});

test('status writer: patches only on change, Events for failures and repairs', async () => {
  api.put(pod('st'));
  const w = new StatusWriter({ kubeConfig: kc, nodeName: NODE, logger });
  await w.onEvent({ kind: 'programmed', podNamespace: 'wk', podName: 'st', backend: 'nftables', durationMs: 3 });
  await w.onEvent({ kind: 'programmed', podNamespace: 'wk', podName: 'st', backend: 'nftables', durationMs: 3 });
  assert.equal(api.get('Pod', 'wk', 'st')?.metadata.annotations?.[CAPTURE_ANNOTATION], 'enabled');
  assert.equal(w.patches, 1);
  await w.onEvent({ kind: 'failed', podNamespace: 'wk', podName: 'st', error: 'boom' });
  assert.equal(api.get('Pod', 'wk', 'st')?.metadata.annotations?.[CAPTURE_ANNOTATION], 'error:boom');
  const ev = api.events('wk').find((e) => (e as { reason?: string }).reason === 'CaptureFailed') as { message: string; involvedObject: { name: string }; type: string } | undefined;
  assert.ok(ev);
  assert.equal(ev.involvedObject.name, 'st');
  assert.equal(ev.type, 'Warning');
  assert.match(ev.message, /boom/);
  // A pod that is gone: no error, nothing written.
  await w.onEvent({ kind: 'programmed', podNamespace: 'wk', podName: 'gone' });
  assert.equal(w.patches, 2, 'enabled, then error:boom; nothing for the gone pod');
});

test('peer identifier: pid → netns inode matched to a sandbox record, else cgroup pod UID', async () => {
  const me: Pod = { metadata: { name: 'self', namespace: 'wk', uid: 'u-self' }, spec: { containers: [] }, status: { podIP: '10.1.2.3' } };
  const store = { list: () => [{ containerId: 'c', ifName: 'eth0', netns: '/proc/self/ns/net', podName: 'self', podNamespace: 'wk', podUid: 'u-self', ips: [], captured: true, reason: 'captured', updatedAt: 0 }] } as unknown as SandboxStore;
  const id = createPeerIdentifier({ procRoot: '/proc', store, pods: () => [me] });
  assert.deepEqual(await id(process.pid), { namespace: 'wk', name: 'self', uid: 'u-self', ips: ['10.1.2.3'], serviceAccount: undefined });
  const none = createPeerIdentifier({ procRoot: '/proc', pods: () => [me] });
  assert.equal(await none(process.pid), undefined, 'no record and no kubepods cgroup: unknown');
  assert.equal(await id(2 ** 22 + 12345), undefined, 'a pid that does not exist');
});
