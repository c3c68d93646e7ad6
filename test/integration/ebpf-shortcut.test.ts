// The same-node shortcut (bpf/weir_shortcut.h) on the real kernel: a
// captured pod's loopback TCP connections are entered into weir_socks at
// established and their bytes moved by sk_msg straight to the peer's
// receive queue. Proof the shortcut carried the bytes: lo's counters in the
// pod barely move during a 32 MiB transfer (they move by ≥ 32 MiB without
// it). Correctness: sha256 of large transfers with a stalled reader,
// half-close both ways, many short connections; the kernel drops entries
// on close. Safety: never entered without the plan's flag, outside captured
// pods, or for a tuple with a non-loopback address. Uninstall with redirected
// bytes unread loses none.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import path from 'node:path';
import { createPodPair, podPairAddresses, skipUnlessRoot, type Netns, type PodPair } from '../support/netns.js';
import { createBpfSandbox, type BpfSandbox } from '../support/bpf-sandbox.js';
import { until } from '../support/poll.js';
import { socketInNetns } from '../../src/native/addon.js';
import { bpfAddon } from '../../src/native/bpf-loader.js';
import { sandboxAt } from '../../src/netns/backend-types.js';
import { EbpfBackend } from '../../src/netns/ebpf-backend.js';
import { removeEbpfPins } from '../../src/netns/ebpf-loader.js';
import { buildPlan } from '../../src/redirect/plan.js';
import { OpenSockets } from '../support/open-sockets.js';

const skip = skipUnlessRoot();
const open = new OpenSockets();
const POD = { metadata: { name: 'sc', namespace: 'default' }, spec: { containers: [{ name: 'app' }, { name: 'weir-proxy' }] } };

/** A server in `ns` on addr:port: 'S' first → sink (answers the sha256 on FIN, then a reply of `n` bytes and FIN); else echo. */
async function server(ns: Netns, address: string, port: number): Promise<net.Server> {
  const fd = await socketInNetns(ns.path, { kind: 'tcp-listen', family: net.isIPv6(address) ? 6 : 4, address, port });
  const srv = open.serve(net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    s.once('data', (first: Buffer) => {
      if (first[0] !== 0x53) { s.write(first); s.pipe(s); return; }
      const h = createHash('sha256').update(first.subarray(1));
      let n = first.length - 1;
      s.on('data', (d: Buffer) => { h.update(d); n += d.length; });
      s.on('end', () => { s.write(`${n} ${h.digest('hex')}\n`); s.end(pattern(1 << 20, 9)); });
    });
  }));
  srv.listen({ fd });
  await once(srv, 'listening');
  return srv;
}

function pattern(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i + 4 <= n; i += 4) b.writeUInt32LE(((i + seed) * 2654435761) >>> 0, i);
  return b;
}

async function dial(ns: Netns, address: string, port: number): Promise<net.Socket> {
  const fd = await socketInNetns(ns.path, { kind: 'tcp-connect', family: net.isIPv6(address) ? 6 : 4, address, port, timeoutMs: 3000 });
  const s = open.add(new net.Socket({ fd, readable: true, writable: true, allowHalfOpen: true }));
  s.on('error', () => {});
  return s;
}

/** Sends `body` behind 'S', half-closes, and returns what came back until the server's FIN. */
async function sink(s: net.Socket, body: Buffer, stallMs = 0): Promise<Buffer> {
  const chunks: Buffer[] = [];
  if (stallMs) { s.pause(); setTimeout(() => s.resume(), stallMs); }
  s.on('data', (d: Buffer) => chunks.push(d));
  const ended = once(s, 'end');
  s.write('S');
  s.end(body);
  await ended;
  return Buffer.concat(chunks);
}

const loRx = (ns: Netns) => Number(ns.exec('cat', ['/sys/class/net/lo/statistics/rx_bytes']).trim());

describe('ebpf same-node shortcut', { skip, timeout: 180_000 }, () => {
  let bpf: BpfSandbox;
  let pair: PodPair;
  let a: ReturnType<typeof podPairAddresses>;
  let on: EbpfBackend;
  const servers: net.Server[] = [];
  const socks = () => bpfAddon().bpfMapKeys(path.join(bpf.pinDir, 'weir_socks')).length;
  const settled = (want: number) => until(`${want} weir_socks entries`, () => socks() === want, { detail: () => `${socks()} entries` });

  before(async () => {
    bpf = createBpfSandbox();
    pair = createPodPair('sc');
    a = podPairAddresses(pair);
    on = new EbpfBackend({ pinDir: bpf.pinDir, cgroup: bpf.cgroup, shortcut: true });
    await on.apply(sandboxAt(pair.pod.path), buildPlan(POD));
    servers.push(await server(pair.pod, '127.0.0.1', 7000), await server(pair.pod, '::1', 7001), await server(pair.pod, '::', 7002), await server(pair.peer, '127.0.0.1', 7000));
  });

  after(() => {
    open.destroyAll();
    for (const s of servers) s.close();
    pair?.destroy();
    bpf?.destroy();
  });

  test('the entry says so; both ends of a loopback connection are entered, and removed on close', async () => {
    assert.match(on.readEntry(sandboxAt(pair.pod.path)).listing!, /same-node shortcut sk_msg \(loopback tcp\)/);
    for (const addr of ['127.0.0.1', '::1']) {
      const s = await dial(pair.pod, addr, addr === '::1' ? 7001 : 7000);
      s.write('hi');
      await once(s, 'data');
      await settled(2);
      s.destroy();
      await settled(0);
    }
  });

  test('rules verify checks the sk_msg program on weir_socks too', async () => {
    assert.deepEqual(await on.verify(sandboxAt(pair.pod.path), buildPlan(POD)), { ok: true, differences: [] });
    assert.deepEqual(bpfAddon().bpfMapMsgPrograms(path.join(bpf.pinDir, 'weir_socks')), ['weir_sk_msg']);
  });

  test('32 MiB over the shortcut: intact (sha256), lo carries only the handshakes, the server\'s 1 MiB reply after our FIN arrives too', async () => {
    const body = pattern(32 << 20, 1);
    const rx = loRx(pair.pod);
    const reply = await sink(await dial(pair.pod, '127.0.0.1', 7000), body);
    const moved = loRx(pair.pod) - rx;
    const nl = reply.indexOf('\n');
    assert.equal(reply.subarray(0, nl).toString(), `${body.length} ${createHash('sha256').update(body).digest('hex')}`);
    assert.ok(reply.subarray(nl + 1).equals(pattern(1 << 20, 9)), 'the reply after the half-close');
    assert.ok(moved < 1 << 20, `lo moved ${moved} bytes: the transfer went through TCP, not the shortcut`);
    console.log(`# 32 MiB + 1 MiB reply over the shortcut; lo moved ${moved} bytes`);
    await settled(0);
  });

  test('a reader that stalls: the sender waits and every byte arrives in order (v6)', async () => {
    const body = pattern(24 << 20, 2);
    const s = await dial(pair.pod, '::1', 7001);
    // The stall is on OUR side: the server's reply waits in our receive queue; the server's 24 MiB read keeps going.
    const reply = await sink(s, body, 700);
    assert.equal(reply.subarray(0, reply.indexOf('\n')).toString(), `${body.length} ${createHash('sha256').update(body).digest('hex')}`);
    // And the other way: an echo of 8 MiB with our reads paused a while.
    const e = await dial(pair.pod, '::1', 7001);
    const big = pattern(8 << 20, 3);
    const got: Buffer[] = [];
    e.pause();
    setTimeout(() => e.resume(), 700);
    e.on('data', (d: Buffer) => got.push(d));
    e.write(big);
    await until('the 8 MiB echo', () => got.reduce((n, b) => n + b.length, 0) >= big.length, 30_000);
    assert.ok(Buffer.concat(got).equals(big), 'echo of 8 MiB intact');
    e.destroy();
  });

  test('many short connections (v4 and v4-mapped on a dual-stack listener): each answered, none left in the map', async () => {
    let ok = 0;
    const one = async (i: number) => {
      const s = await dial(pair.pod, '127.0.0.1', i % 2 ? 7000 : 7002);
      const got = once(s, 'data');
      s.write(`n${i}`);
      if ((await got)[0].toString() === `n${i}`) ok++;
      s.destroy();
    };
    const N = 400;
    for (let i = 0; i < N; i += 16) await Promise.all(Array.from({ length: Math.min(16, N - i) }, (_, k) => one(i + k)));
    assert.equal(ok, N);
    await settled(0);
  });

  test('never entered: another (uncaptured) netns, a tuple with a pod address, a plan without the flag', async () => {
    const other = await dial(pair.peer, '127.0.0.1', 7000);
    other.write('x');
    await once(other, 'data');
    const podIp = await dial(pair.pod, a.pod4, 7002); // the pod's own address: loopback route, but not a loopback tuple
    podIp.write('y');
    await once(podIp, 'data');
    assert.equal(socks(), 0);
    other.destroy(); podIp.destroy();
    const off = new EbpfBackend({ pinDir: bpf.pinDir, cgroup: bpf.cgroup, shortcut: false });
    await off.apply(sandboxAt(pair.pod.path), buildPlan(POD));
    try {
      assert.match(off.readEntry(sandboxAt(pair.pod.path)).listing!, /same-node shortcut off/);
      const s = await dial(pair.pod, '127.0.0.1', 7000);
      s.write('z');
      await once(s, 'data');
      assert.equal(socks(), 0);
      s.destroy();
    } finally {
      await on.apply(sandboxAt(pair.pod.path), buildPlan(POD));
    }
  });

  test('the default is off: the shortcut is opt-in', async () => {
    const dflt = new EbpfBackend({ pinDir: bpf.pinDir, cgroup: bpf.cgroup });
    await dflt.apply(sandboxAt(pair.pod.path), buildPlan(POD));
    try {
      assert.match(dflt.readEntry(sandboxAt(pair.pod.path)).listing!, /same-node shortcut off/);
    } finally {
      await on.apply(sandboxAt(pair.pod.path), buildPlan(POD));
    }
  });

  // Last: it removes the pins. Unpinning frees the sockhash, which drops each
  // socket's psock; bytes already redirected but unread must still arrive.
  test('uninstall while redirected bytes wait unread: none lost, the rest follows in order', async () => {
    const lfd = await socketInNetns(pair.pod.path, { kind: 'tcp-listen', family: 4, address: '127.0.0.1', port: 7003 });
    let accepted: net.Socket | undefined;
    const srv = open.serve(net.createServer({ pauseOnConnect: true }, (s) => { accepted = s; }));
    srv.listen({ fd: lfd });
    await once(srv, 'listening');
    servers.push(srv);
    const s = await dial(pair.pod, '127.0.0.1', 7003);
    const first = pattern(256 << 10, 4);
    s.write(first);
    await until('accepted and entered', () => accepted !== undefined && socks() === 2);
    removeEbpfPins(bpf.pinDir);
    const second = pattern(64 << 10, 5);
    s.end(second);
    const got: Buffer[] = [];
    accepted!.on('data', (d: Buffer) => got.push(d));
    const ended = once(accepted!, 'end');
    accepted!.resume();
    await ended;
    assert.ok(Buffer.concat(got).equals(Buffer.concat([first, second])), `got ${Buffer.concat(got).length} bytes of ${first.length + second.length}, or out of order`);
  });
});
