// The control-plane server over a real unix socket: kernel-derived identity
// (this test process is the peer), refusal of unknown peers, snapshot → acked
// deltas, resume after reconnect, and fan-out to many proxies.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { startControlPlane } from '../../src/controlplane/server.js';
import { encode, LineDecoder, type PodIdentity } from '../../src/controlplane/protocol.js';

const dir = mkdtempSync(path.join(tmpdir(), 'wx-cpu-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const ME: PodIdentity = { namespace: 'shop', name: 'web-1', uid: 'u1', ips: ['10.0.0.1'] };

class Peer {
  readonly sock: net.Socket;
  private readonly queue: Record<string, unknown>[] = [];
  private waiters: (() => void)[] = [];
  constructor(socketPath: string) {
    this.sock = net.connect(socketPath);
    const d = new LineDecoder();
    this.sock.on('data', (c: Buffer) => { for (const m of d.push(c)) this.queue.push(m as Record<string, unknown>); for (const w of this.waiters.splice(0)) w(); });
    this.sock.on('close', () => { for (const w of this.waiters.splice(0)) w(); });
  }
  send(m: object): void { this.sock.write(encode(m as never)); }
  async next(): Promise<Record<string, unknown>> {
    while (this.queue.length === 0) {
      if (this.sock.destroyed) throw new Error('closed');
      await new Promise<void>((r) => this.waiters.push(r));
    }
    return this.queue.shift()!;
  }
}


test('identity comes from the kernel; an unknown peer is refused with a reason', async () => {
  const cp = await startControlPlane({
    kubeConfig: new KubeConfig(), socketPath: path.join(dir, 'refuse.sock'), logger: pino({ level: 'silent' }), metrics: new Registry(),
    clusterDomain: 'cluster.local', identifyPeer: async (pid) => { seenPid = pid; return undefined; },
    source: () => ({ start: async () => {}, stop: async () => {} }),
  });
  let seenPid = 0;
  try {
    const p = new Peer(path.join(dir, 'refuse.sock'));
    p.send({ type: 'hello', versions: [1], claimed: { namespace: 'kube-system', name: 'pretend' } });
    const m = await p.next();
    assert.equal(m.type, 'refused');
    assert.match(String(m.reason), new RegExp(`pid ${process.pid} does not belong to a pod`));
    assert.equal(seenPid, process.pid, 'the pid is the kernel\'s (SO_PEERCRED), not a claim');
    // Unsupported protocol versions are refused too.
    const q = new Peer(path.join(dir, 'refuse.sock'));
    q.send({ type: 'hello', versions: [99] });
    assert.match(String((await q.next()).reason), /unsupported protocol versions \[99\]/);
  } finally {
    await cp.close();
  }
});

test('snapshot, acked deltas, and resume with only the delta after a reconnect', async () => {
  const socketPath = path.join(dir, 'resume.sock');
  const cp = await startControlPlane({
    kubeConfig: new KubeConfig(), socketPath, logger: pino({ level: 'silent' }), metrics: new Registry(), clusterDomain: 'cluster.local',
    identifyPeer: async (pid) => (pid === process.pid ? ME : undefined), source: () => ({ start: async () => {}, stop: async () => {} }),
  });
  try {
    cp.apply((b) => b.upsertService({ metadata: { namespace: 'shop', name: 'web' }, spec: { clusterIP: '10.96.0.1', ports: [{ port: 80 }] } }));
    const p = new Peer(socketPath);
    p.send({ type: 'hello', versions: [1] });
    const welcome = await p.next();
    assert.equal(welcome.type, 'welcome');
    assert.deepEqual((welcome.identity as PodIdentity).name, 'web-1');
    const snap = await p.next();
    assert.equal(snap.type, 'snapshot');
    assert.equal(snap.version, 1);
    p.send({ type: 'ack', version: 1 });
    cp.apply((b) => b.upsertService({ metadata: { namespace: 'shop', name: 'api' }, spec: { clusterIP: '10.96.0.2', ports: [{ port: 80 }] } }));
    const d = await p.next();
    assert.deepEqual([d.type, d.fromVersion, d.version], ['delta', 1, 2]);
    p.send({ type: 'ack', version: 2 });
    await cp.waitAcked(2, 2000);
    const stats = cp.stats() as { proxies: { ackedVersion: number; identifiedBy: string; pid: number }[] };
    assert.equal(stats.proxies[0].ackedVersion, 2);
    assert.equal(stats.proxies[0].pid, process.pid);
    p.sock.destroy();

    // While disconnected: one more change. Reconnect with the resume token → only that change.
    cp.apply((b) => b.deleteService('shop', 'web'));
    const r = new Peer(socketPath);
    r.send({ type: 'hello', versions: [1], resume: { epoch: welcome.epoch, version: 2 } });
    assert.equal((await r.next()).type, 'welcome');
    const rd = await r.next();
    assert.deepEqual([rd.type, rd.fromVersion, rd.version, rd.deletes, (rd.upserts as unknown[]).length], ['delta', 2, 3, ['shop/web'], 0]);
    r.sock.destroy();

    // A token from another epoch (agent restarted) → a snapshot.
    const s = new Peer(socketPath);
    s.send({ type: 'hello', versions: [1], resume: { epoch: 'someone-else', version: 2 } });
    await s.next();
    assert.equal((await s.next()).type, 'snapshot');
    // Acking a version never sent is a protocol error.
    s.send({ type: 'ack', version: 99 });
    assert.match(String((await s.next()).reason), /ack.version 99 was never sent/);
  } finally {
    await cp.close();
  }
});

test('fan-out: 50 connected proxies all ack an update (latency measured)', async () => {
  const socketPath = path.join(dir, 'fanout.sock');
  const cp = await startControlPlane({
    kubeConfig: new KubeConfig(), socketPath, logger: pino({ level: 'silent' }), metrics: new Registry(), clusterDomain: 'cluster.local',
    identifyPeer: async () => ME, source: () => ({ start: async () => {}, stop: async () => {} }),
  });
  const peers: net.Socket[] = [];
  try {
    for (let i = 0; i < 50; i++) {
      const s = net.connect(socketPath);
      const d = new LineDecoder();
      // A proxy that acks every version it applies, like RegistryClient.
      s.on('data', (c: Buffer) => { for (const m of d.push(c) as { type: string; version: number }[]) if (m.type === 'snapshot' || m.type === 'delta') s.write(encode({ type: 'ack', version: m.version })); });
      s.write(encode({ type: 'hello', versions: [1] }));
      peers.push(s);
    }
    while ((cp.stats() as { proxies: unknown[] }).proxies.length < 50) await new Promise((r) => setTimeout(r, 10));
    for (let i = 0; i < 20; i++) {
      cp.apply((b) => b.upsertService({ metadata: { namespace: 'ns', name: `s${i}` }, spec: { clusterIP: `10.96.9.${i}`, ports: [{ port: 80 }] } }));
      await cp.waitAcked(i + 1, 5000);
    }
    const f = (cp.stats() as { fanout: { p50Ms: number; p99Ms: number; samples: number } }).fanout;
    assert.equal(f.samples, 20);
    console.log(`# control-plane fan-out to 50 proxies: p50 ${f.p50Ms.toFixed(2)} ms, p99 ${f.p99Ms.toFixed(2)} ms`);
  } finally {
    for (const s of peers) s.destroy();
    await cp.close();
  }
});
