// weir-cni chained behind Debian's bridge + host-local under a real
// containerd, before any agent is involved: with no agent answering, a pod
// that may need capture must not start (fail closed, and the failed attempt
// leaves no IP lease or netns behind); a pod in an excluded namespace starts
// without asking the agent, its IP passed through from prevResult.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { skipUnlessRoot } from '../../support/netns.js';
import { runPod } from '../../support/cri.js';
import { PAUSE_IMAGE } from '../../support/images.js';
import { startRuntimeNode, writeBridgeConflist, ipamLeases, type RuntimeNode, type PodNetwork } from './fixture.js';

const WEIR_CNI = path.resolve('dist/weir-cni');
const skip = skipUnlessRoot() || (fs.existsSync(WEIR_CNI) ? false : 'needs dist/weir-cni (npm run build)');
let node: RuntimeNode;
let net: PodNetwork;
let agentSocket: string;

before(async () => {
  if (skip) return;
  node = await startRuntimeNode({ extraCniBins: { 'weir-cni': WEIR_CNI } });
  // Nothing listens here: the agent is "down".
  agentSocket = path.join(node.containerd.dir, 'agent-down', 'cni.sock');
  fs.rmSync(node.net.conflistPath);
  net = writeBridgeConflist(node.containerd.cniConfDir, path.join(node.containerd.dir, 'ipam2'), [
    { type: 'weir-cni', agentSocket, agentTimeoutMs: 1000, excludeNamespaces: ['kube-system'] },
  ]);
  // containerd's CRI reloads the conf dir on change, asynchronously.
  await node.cri.waitForCniConfig('weir-cni');
});
after(async () => {
  await node?.stop();
  // Our second network's bridge (the fixture removes only its own).
  if (net) try { execFileSync('ip', ['link', 'del', net.bridge], { stdio: 'ignore' }); } catch { /* never created */ }
});

const sleeper = { name: 'app', image: PAUSE_IMAGE, command: ['/bin/busybox', 'sleep', '3600'] };

test('agent down: RunPodSandbox fails closed, naming the agent, and leaves no lease or netns', { skip }, async () => {
  const netnsBefore = new Set(fs.readdirSync('/var/run/netns'));
  await assert.rejects(
    runPod(node.cri, { name: 'we-closed', namespace: 'default', containers: [sleeper] }, (p) => node.containerd.trackNetns(p)),
    (err: Error) => {
      assert.match(err.message, /RunPodSandbox/);
      assert.match(err.message, /weir-cni/);
      assert.match(err.message, /agent/i);
      return true;
    },
  );
  assert.deepEqual(ipamLeases(net), [], 'failed ADD left an IP lease');
  // Only containerd names netns cni-<uuid> (other suites use their own
  // prefixes), so any new one is ours.
  const leftover = fs.readdirSync('/var/run/netns').filter((n) => !netnsBefore.has(n) && n.startsWith('cni-'));
  assert.deepEqual(leftover, [], 'failed ADD left a netns behind');
  assert.deepEqual(await node.cri.listPodSandbox(), []);
});

test('excluded namespace: weir-cni passes prevResult through without the agent', { skip }, async () => {
  const pod = await runPod(node.cri, { name: 'we-sys', namespace: 'kube-system', containers: [sleeper] }, (p) => node.containerd.trackNetns(p));
  try {
    const prefix = net.subnet.replace(/\.0\/24$/, '.');
    assert.ok(pod.ip.startsWith(prefix), `pod IP ${pod.ip} (from weir-cni's result) not in ${net.subnet}`);
    assert.deepEqual(ipamLeases(net), [pod.ip]);
    const addr = await pod.exec('app', ['/bin/busybox', 'ip', '-4', '-o', 'addr', 'show', 'eth0']);
    assert.match(addr.stdout, new RegExp(`inet ${pod.ip.replace(/\./g, '\\.')}/`));
  } finally {
    // Stop then remove: containerd calls DEL twice (with netns, then without); both must succeed.
    await pod.remove();
  }
  assert.deepEqual(ipamLeases(net), []);
  assert.equal(fs.existsSync(pod.netnsPath), false);
});
