// RepairLoop modes on the real kernel (nftables backend, real netns) against
// the TestApiServer: label and delete instead of reprogramming, and pods
// whose netns cannot be found are reported. Also: `weir agent` rejects bad
// flags naming the flag, with exit code 2.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { pino } from 'pino';
import { Netns, skipUnlessRoot } from '../support/netns.js';
import { TestApiServer, type KubeObject } from '../support/apiserver.js';
import { loadKubeConfig } from '../../src/kube/informers.js';
import { RepairLoop, BROKEN_LABEL, type RepairMode } from '../../src/agent/repair.js';
import { getBackend } from '../../src/netns/backends.js';
import { buildPlan } from '../../src/redirect/plan.js';
import type { Pod } from '../../src/kube/pod-types.js';

const REPO = path.resolve(import.meta.dirname, '../..');
const logger = pino({ level: 'silent' });

function meshPod(name: string, uid: string): KubeObject {
  return {
    kind: 'Pod',
    metadata: { name, namespace: 'wk-modes', uid, creationTimestamp: new Date(Date.now() - 3_600_000).toISOString(), annotations: { 'sidecar.istio.io/status': '{}' } },
    spec: { nodeName: 'wk-n', containers: [{ name: 'app' }, { name: 'istio-proxy', securityContext: { runAsUser: 1337 }, env: [{ name: 'ISTIO_META_DNS_CAPTURE', value: 'true' }] }] },
    status: { phase: 'Running' },
  };
}

describe('repair modes on the real kernel', { skip: skipUnlessRoot() }, () => {
  let api: TestApiServer;
  let dir: string;
  let procRoot: string;
  const nets: Netns[] = [];

  before(async () => {
    api = await TestApiServer.start();
    dir = mkdtempSync(path.join(tmpdir(), 'wk-modes-'));
    procRoot = path.join(dir, 'proc');
    mkdirSync(procRoot);
  });
  after(async () => {
    for (const n of nets) n.destroy();
    await api.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  function uncapturedPod(name: string, pid: number): { uid: string; ns: Netns } {
    const uid = randomUUID();
    const ns = Netns.create('wkm');
    nets.push(ns);
    mkdirSync(path.join(procRoot, String(pid), 'ns'), { recursive: true });
    symlinkSync(ns.path, path.join(procRoot, String(pid), 'ns', 'net'));
    writeFileSync(path.join(procRoot, String(pid), 'cgroup'), `12:pids:/kubepods/besteffort/pod${uid}/abc\n`);
    api.put(meshPod(name, uid));
    return { uid, ns };
  }

  function loop(mode: RepairMode): RepairLoop {
    return new RepairLoop({
      backend: getBackend('nftables'), planner: (p) => buildPlan(p), procRoot, mode, logger,
      kubeConfig: loadKubeConfig(api.writeKubeconfig(dir)),
      pods: () => api.list('Pod', 'wk-modes') as unknown as Pod[],
    });
  }

  test('label mode labels the uncaptured pod and leaves its netns alone', async () => {
    const { ns } = uncapturedPod('to-label', 101);
    const out = await loop('label').repairPod('wk-modes', 'to-label');
    assert.equal(out.result, 'labeled', JSON.stringify(out));
    assert.equal(out.via, 'proc-scan');
    assert.ok(out.differences!.some((d) => /missing/.test(d)));
    assert.equal(api.get('Pod', 'wk-modes', 'to-label')?.metadata.labels?.[BROKEN_LABEL], 'true');
    assert.doesNotMatch(ns.exec('nft', ['list', 'tables']), /weir/);
  });

  test('delete mode deletes the uncaptured pod', async () => {
    uncapturedPod('to-delete', 102);
    const out = await loop('delete').repairPod('wk-modes', 'to-delete');
    assert.equal(out.result, 'deleted');
    assert.equal(api.get('Pod', 'wk-modes', 'to-delete'), undefined);
  });

  test('repair mode reprograms; a second pass finds it ok; a pod without a netns is reported', async () => {
    const { ns } = uncapturedPod('to-repair', 103);
    api.put(meshPod('no-netns', randomUUID()));
    const l = loop('repair');
    const first = await l.runOnce();
    const byName = Object.fromEntries(first.map((o) => [o.name, o.result]));
    assert.equal(byName['to-repair'], 'repaired');
    assert.equal(byName['no-netns'], 'netns-not-found');
    assert.equal(byName['to-label'], 'repaired', 'a labeled pod is still repaired when the mode is repair');
    assert.match(ns.exec('nft', ['list', 'tables']), /table inet weir/);
    const second = await l.runOnce();
    assert.equal(second.find((o) => o.name === 'to-repair')?.result, 'ok');
  });
});

test('weir agent: a bad flag is a usage error (exit 2) naming the flag', async () => {
  const r = await new Promise<{ code: number; stderr: string }>((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', path.join(REPO, 'src/cli/main.ts'), 'agent', '--node-name', 'n1', '--repair-mode', 'fix'], { cwd: REPO, encoding: 'utf8', timeout: 30_000 }, (err, _stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stderr });
    });
  });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--repair-mode \(env WEIR_REPAIR_MODE\): must be one of repair, delete, label \(bad value: "fix"\)/);
});
