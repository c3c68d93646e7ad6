// Milestone for the runtime suite: our private containerd runs a pod sandbox
// through Debian's bridge + host-local chain, a busybox container in it is
// reachable over the bridge, and stop + remove leave no netns, lease or veth.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { execFileSync } from 'node:child_process';
import { skipUnlessRoot } from '../../support/netns.js';
import { runPod } from '../../support/cri.js';
import { PAUSE_IMAGE } from '../../support/images.js';
import { startRuntimeNode, ipamLeases, type RuntimeNode } from './fixture.js';

const skip = skipUnlessRoot();
let node: RuntimeNode;

before(async () => { if (!skip) node = await startRuntimeNode(); });
after(async () => { await node?.stop(); });

function connectAndRead(host: string, port: number, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port });
    let data = '';
    const timer = setTimeout(() => { s.destroy(); reject(new Error(`no answer from ${host}:${port} in ${timeoutMs} ms`)); }, timeoutMs);
    s.on('data', (d) => { data += d.toString(); });
    s.on('end', () => { clearTimeout(timer); resolve(data); });
    s.on('error', (e) => { clearTimeout(timer); reject(e); });
  });
}

test('CRI pod on bridge + host-local: gets an IP, serves traffic, leaves nothing on removal', { skip }, async () => {
  const v = await node.cri.version();
  assert.equal(v.runtime_name, 'containerd');

  const pod = await runPod(node.cri, {
    name: 'we-plain', namespace: 'default',
    containers: [{
      name: 'app', image: PAUSE_IMAGE,
      // Answer each connection with the pod's hostname, forever.
      command: ['/bin/busybox', 'sh', '-c', 'while :; do echo "hello from $(/bin/busybox hostname)" | /bin/busybox nc -l -p 8080; done'],
    }],
  }, (p) => node.containerd.trackNetns(p));
  let removed = false;
  try {
    // The IP came from host-local in our subnet and is recorded as a lease.
    const prefix = node.net.subnet.replace(/\.0\/24$/, '.');
    assert.ok(pod.ip.startsWith(prefix), `pod IP ${pod.ip} not in ${node.net.subnet}`);
    assert.deepEqual(ipamLeases(node.net), [pod.ip]);
    assert.match(pod.netnsPath, /^\/var\/run\/netns\/cni-[0-9a-f-]+$/);
    assert.ok(fs.existsSync(pod.netnsPath));

    // Inside the container, eth0 holds that IP (the container joined the pod netns).
    const addr = await pod.exec('app', ['/bin/busybox', 'ip', '-4', 'addr', 'show', 'eth0']);
    assert.equal(addr.exitCode, 0, addr.stderr);
    assert.match(addr.stdout, new RegExp(`inet ${pod.ip.replace(/\./g, '\\.')}/24`));

    // Real traffic: the host reaches the app over the bridge.
    let answer = '';
    for (let i = 0; i < 50 && !answer; i++) {
      answer = await connectAndRead(pod.ip, 8080, 2000).catch(() => '');
      if (!answer) await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(answer.trim(), 'hello from we-plain');

    const vethsBefore = bridgePorts(node.net.bridge);
    assert.equal(vethsBefore.length, 1, `expected one veth on ${node.net.bridge}, got ${vethsBefore}`);

    await pod.remove();
    removed = true;
    assert.equal(fs.existsSync(pod.netnsPath), false, 'netns left behind');
    assert.deepEqual(ipamLeases(node.net), [], 'IPAM lease left behind');
    assert.deepEqual(bridgePorts(node.net.bridge), [], 'veth left behind');
    assert.deepEqual(await node.cri.listPodSandbox(), []);
  } finally {
    if (!removed) await pod.remove().catch(() => {});
  }
});

function bridgePorts(bridge: string): string[] {
  const out = execFileSync('ip', ['-o', 'link', 'show', 'master', bridge], { encoding: 'utf8' });
  return out.split('\n').filter(Boolean).map((l) => l.split(':')[1].trim().split('@')[0]);
}
