// The agent side across restarts and shutdowns: records persist so CHECK and
// DEL work after a restart; close() finishes in-flight ADDs; a stale socket
// is replaced but a live agent's socket is never stolen; socket permissions.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, readFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Netns, skipUnlessRoot } from '../support/netns.js';
import { CniServer } from '../../src/agent/cni-server.js';
import { CaptureController } from '../../src/agent/capture-controller.js';
import { SandboxStore } from '../../src/agent/sandbox-store.js';
import { StaticResolver } from '../../src/agent/static-resolver.js';
import type { PodResolver } from '../../src/agent/contracts.js';
import type { Pod } from '../../src/kube/pod-types.js';
import { callAgent } from '../../src/cni/agent-client.js';
import type { CniAddResponse, CniPodRequest } from '../../src/cni/agent-protocol.js';
import { buildPlan } from '../../src/redirect/plan.js';
import { NFT_TABLES, renderNftables, renderNftablesDefinition } from '../../src/redirect/render-nftables.js';
import { NftablesBackend } from '../../src/netns/nft-backend.js';

const meshPod: Pod = { metadata: { name: 'app', namespace: 'default', uid: 'u-app' }, spec: { containers: [{ name: 'app' }, { name: 'weir-proxy' }] } };

describe('agent CNI server and controller across restarts', { skip: skipUnlessRoot() }, () => {
  let dir: string;
  let runDir: string;
  const namespaces: Netns[] = [];
  const servers: CniServer[] = [];

  async function agent(resolver: PodResolver = new StaticResolver([meshPod])): Promise<CniServer> {
    const controller = new CaptureController({
      resolver,
      backend: new NftablesBackend({ tables: NFT_TABLES, render: renderNftables, renderDefinition: renderNftablesDefinition }),
      planner: (pod) => buildPlan(pod),
      store: await SandboxStore.open(runDir),
    });
    const s = new CniServer({ controller, socketPath: path.join(runDir, 'cni.sock') });
    servers.push(s);
    await s.start();
    return s;
  }
  const call = <T>(p: string, body?: unknown) => callAgent<T>({ socketPath: path.join(runDir, 'cni.sock'), timeoutMs: 5000 }, p, body);
  const req = (ns: Netns, id: string): CniPodRequest => ({ containerId: id, netns: ns.path, ifName: 'eth0', podNamespace: 'default', podName: 'app', podUid: 'u-app', ips: [], cniVersion: '1.0.0', network: 'n' });
  const tables = (ns: Netns) => ns.exec('nft', ['list', 'tables']);

  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'wc-restart-'));
    runDir = path.join(dir, 'run');
  });
  after(async () => {
    for (const s of servers) await s.close();
    for (const ns of namespaces) ns.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  test('socket 0600 in a traversable (0755) run dir shared with proxy.sock; a second agent cannot take a live socket', async () => {
    const s = await agent();
    assert.equal(statSync(runDir).mode & 0o777, 0o755);
    assert.equal(statSync(s.socketPath).mode & 0o777, 0o600);
    await assert.rejects(agent(), /another agent is serving/);
    await s.close();
  });

  test('records survive a restart: CHECK and DEL work on the new agent, which replaces a dead agent\'s socket', async () => {
    const ns = Netns.create('wc');
    namespaces.push(ns);
    const first = await agent();
    const added = await call<CniAddResponse>('/cni/add', req(ns, 'wcrestart1'));
    assert.equal(added.captured, true);
    assert.match(tables(ns), /weir_nat/);
    const persisted = JSON.parse(readFileSync(path.join(runDir, 'sandboxes.json'), 'utf8'));
    assert.equal(persisted.sandboxes[0].containerId, 'wcrestart1');
    assert.equal(statSync(path.join(runDir, 'sandboxes.json')).mode & 0o777, 0o600);
    await first.close();
    // A killed agent leaves its socket file behind: the next agent must replace it.
    const dead = spawn('socat', [`UNIX-LISTEN:${path.join(runDir, 'cni.sock')}`, '-'], { stdio: 'ignore' });
    await new Promise((r) => setTimeout(r, 300));
    dead.kill('SIGKILL');
    await new Promise((r) => dead.once('exit', r));
    assert.ok(statSync(path.join(runDir, 'cni.sock')).isSocket(), 'stale socket file expected');
    await agent();
    assert.deepEqual(await call('/cni/check', req(ns, 'wcrestart1')), { ok: true, captured: true });
    ns.exec('nft', ['flush', 'ruleset']);
    await assert.rejects(call('/cni/check', req(ns, 'wcrestart1')), (e: { code: number; details?: string }) => e.code === 100 && /missing/.test(e.details ?? ''));
    await call('/cni/del', { containerId: 'wcrestart1', ifName: 'eth0', netns: ns.path });
    // Unknown now: CHECK says so, DEL still succeeds.
    await assert.rejects(call('/cni/check', req(ns, 'wcrestart1')), (e: { code: number }) => e.code === 3);
    await call('/cni/del', { containerId: 'wcrestart1', ifName: 'eth0' });
  });

  test('close() stops accepting but finishes an in-flight ADD', async () => {
    for (const s of servers) await s.close();
    const ns = Netns.create('wc');
    namespaces.push(ns);
    let release!: () => void;
    const gate = new Promise<void>((r) => { release = r; });
    const slow: PodResolver = { getPod: async () => { await gate; return meshPod; } };
    const s = await agent(slow);
    const inflight = call<CniAddResponse>('/cni/add', req(ns, 'wcinflight'));
    await new Promise((r) => setTimeout(r, 100));
    const closing = s.close();
    await new Promise((r) => setTimeout(r, 50));
    await assert.rejects(call('/ready'), (e: { code: number }) => e.code === 11);
    release();
    assert.equal((await inflight).captured, true);
    await closing;
    assert.match(tables(ns), /weir_nat/);
  });
});

test('a damaged sandbox store is moved aside, not fatal', async () => {
  const { writeFileSync, existsSync } = await import('node:fs');
  const d = mkdtempSync(path.join(tmpdir(), 'wc-store-'));
  try {
    writeFileSync(path.join(d, 'sandboxes.json'), '{"version":1,"sandb');
    const store = await SandboxStore.open(d);
    assert.deepEqual(store.list(), []);
    assert.ok(store.recoveredFrom && existsSync(store.recoveredFrom));
    assert.equal(readFileSync(store.recoveredFrom, 'utf8'), '{"version":1,"sandb');
    await store.put({ containerId: 'c1', ifName: 'eth0', netns: '', ips: [], captured: false, reason: 'not-a-pod', updatedAt: 1 });
    assert.equal((await SandboxStore.open(d)).get('c1')?.reason, 'not-a-pod');
  } finally {
    rmSync(d, { recursive: true, force: true });
  }
});
