// The native splice pump on real loopback TCP: every test puts a relay
// (listener -> upstream connect -> startSplicePump) between a real client
// and a real server and checks what each end sees.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { createHash, randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { Worker } from 'node:worker_threads';
import { createInterface } from 'node:readline';
import { locateAddon, socketFd, type NativeError } from '../../src/native/addon.js';
import { pumpConfigure, pumpStart, pumpStats, type PumpResult } from '../../src/native/pump.js';
import { splicePumpAvailable, startSplicePump, SplicePumpError, type SplicePump, type SplicePumpOptions } from '../../src/native/splice-pump.js';
import { BULK_STREAM_ENDPOINTS } from '../support/bulk-stream-endpoints.js';
import { fdCounts, MiB, pumpHarness } from '../support/splice-relay.js';

const skip = splicePumpAvailable() ? false : 'native addon without the splice pump: run npm run build:native';
const { cleanups, listen, echoServer, serve, spliceRelay, connect, collect, nextError, readExactly } = pumpHarness();
after(() => { for (const c of cleanups.splice(0).reverse()) { try { c(); } catch { /* best effort */ } } });

test('wn echo both ways through the pump: small interactive messages, then 8 MiB; clean close', { skip }, async () => {
  const echo = await echoServer();
  const relay = await spliceRelay(echo.port);
  const client = await connect(relay.port);
  for (const msg of ['hello', 'pump', 'x'.repeat(3000)]) {
    client.write(msg);
    assert.equal((await readExactly(client, msg.length)).toString(), msg);
  }
  const bulk = randomBytes(8 * MiB);
  const received = collect(client);
  client.end(bulk);
  const echoed = await received;
  assert.equal(echoed.length, bulk.length);
  assert.ok(echoed.equals(bulk), 'echoed bytes differ');
  const r = await relay.result(0);
  const total = 5 + 4 + 3000 + bulk.length;
  assert.deepEqual({ reason: r.reason, a: r.bytesAtoB, b: r.bytesBtoA }, { reason: 'closed', a: total, b: total });
});

test('wn busy-poll on: echo, half-close and bulk stay exact; the thread polls after activity and sleeps again when idle', { skip }, async () => {
  assert.throws(() => pumpConfigure({ busyPollUs: -1 }), /options\.busyPollUs must be an integer in \[0, 10000\]/);
  assert.throws(() => pumpConfigure({ busyPollUs: 20_000 }), /options\.busyPollUs must be an integer/);
  assert.equal(pumpConfigure({ busyPollUs: 500 }).busyPollUs, 500);
  try {
    const before = pumpStats();
    const echo = await echoServer();
    const relay = await spliceRelay(echo.port);
    const client = await connect(relay.port);
    // Request/response: each reply comes back within the window, so the thread finds it while polling.
    for (let i = 0; i < 200; i++) {
      const msg = `ping ${i}`;
      client.write(msg);
      assert.equal((await readExactly(client, msg.length)).toString(), msg);
    }
    const bulk = randomBytes(4 * MiB);
    const received = collect(client);
    client.end(bulk);
    const echoed = await received;
    assert.ok(echoed.equals(bulk), 'echoed bytes differ');
    const r = await relay.result(0);
    assert.equal(r.reason, 'closed');
    const after = pumpStats();
    assert.equal(after.busyPollUs, 500);
    assert.ok(after.polledBatches > before.polledBatches, `no event found while busy-polling: ${JSON.stringify({ before, after })}`);
    // Idle: the window closes and the thread blocks; spin time stops growing.
    await new Promise((res) => setTimeout(res, 50));
    const idle1 = pumpStats().spinMs;
    await new Promise((res) => setTimeout(res, 200));
    assert.equal(pumpStats().spinMs, idle1, 'the pump thread kept spinning while idle');
  } finally {
    assert.equal(pumpConfigure({ busyPollUs: 0 }).busyPollUs, 0);
  }
});

test('wn half-close: the client ends its write side and still receives all of the server reply', { skip }, async () => {
  const reply = randomBytes(4 * MiB);
  const target = await serve((s) => {
    let got = 0;
    s.on('data', (c: Buffer) => { got += c.length; });
    s.on('end', () => { s.write(`got ${got}\n`); s.end(reply); });
  });
  const relay = await spliceRelay(target.port);
  const client = await connect(relay.port);
  const received = collect(client);
  client.end(randomBytes(MiB));
  const all = await received;
  const header = `got ${MiB}\n`;
  assert.equal(all.subarray(0, header.length).toString(), header);
  assert.ok(all.subarray(header.length).equals(reply), 'reply after the half-close differs');
  const r = await relay.result(0);
  assert.equal(r.reason, 'closed');
  assert.equal(r.bytesBtoA, header.length + reply.length);
});

test('wn half-close: the server ends first and still receives everything the client sends after', { skip }, async () => {
  let serverGot!: Promise<Buffer>;
  const target = await serve((s) => {
    serverGot = collect(s);
    s.end('bye\n'); // the server is done talking at once
  });
  const relay = await spliceRelay(target.port);
  const client = await connect(relay.port);
  assert.equal((await collect(client)).toString(), 'bye\n'); // FIN arrived ...
  const late = randomBytes(2 * MiB);
  client.end(late); // ... and the client's direction still runs
  assert.ok((await serverGot).equals(late));
  const r = await relay.result(0);
  assert.deepEqual({ reason: r.reason, a: r.bytesAtoB, b: r.bytesBtoA }, { reason: 'closed', a: late.length, b: 4 });
});

test('wn backpressure: a reader that stops reading stalls the writer; the pump holds at most its pipe', { skip }, async () => {
  let server!: net.Socket;
  let serverGot!: Promise<Buffer>;
  const target = await serve((s) => { server = s; s.pause(); });
  const relay = await spliceRelay(target.port, { pipeSize: MiB });
  const client = await connect(relay.port);
  const data = randomBytes(64 * MiB);
  let next = 0; // offset of the first chunk not yet handed to client.write
  while (next < data.length) {
    const accepted = client.write(data.subarray(next, next + MiB));
    next += MiB;
    if (!accepted) break; // the kernel stopped taking bytes: that is the point
  }
  await new Promise((r) => setTimeout(r, 500));
  const stalled = relay.pumps[0].progress().bytesAtoB;
  await new Promise((r) => setTimeout(r, 300));
  // Nothing moves while the server does not read, and far less than 64 MiB went anywhere:
  // what is in flight sits in kernel socket buffers and one 1 MiB pipe, not in weir.
  assert.equal(relay.pumps[0].progress().bytesAtoB, stalled);
  assert.ok(stalled < 32 * MiB, `pump delivered ${stalled} bytes to a reader that reads nothing`);
  assert.ok(next < data.length, 'the client was never told to wait');
  serverGot = collect(server);
  for (; next < data.length; next += MiB) client.write(data.subarray(next, next + MiB));
  client.end();
  assert.ok((await serverGot).equals(data), 'bytes lost or reordered after the stall');
  server.end();
  assert.equal((await relay.result(0)).reason, 'closed');
});

test('wn a reset by the server reaches the client as ECONNRESET (reset-by-b)', { skip }, async () => {
  const target = await serve((s) => s.once('data', () => s.resetAndDestroy()));
  const relay = await spliceRelay(target.port);
  const client = await connect(relay.port);
  const err = nextError(client);
  client.write('boom');
  assert.equal((await err).code, 'ECONNRESET');
  const r = await relay.result(0);
  assert.equal(r.reason, 'reset-by-b');
  assert.match(r.error ?? '', /ECONNRESET|EPIPE/);
});

test('wn a reset by the client reaches the server as ECONNRESET (reset-by-a)', { skip }, async () => {
  let serverErr!: Promise<NodeJS.ErrnoException>;
  let serverSaw!: () => void;
  const saw = new Promise<void>((r) => { serverSaw = r; });
  const target = await serve((s) => {
    serverErr = nextError(s);
    s.once('data', () => serverSaw());
  });
  const relay = await spliceRelay(target.port);
  const client = await connect(relay.port);
  client.write('hi');
  await saw; // the pump is running
  client.resetAndDestroy();
  assert.equal((await serverErr).code, 'ECONNRESET');
  assert.equal((await relay.result(0)).reason, 'reset-by-a');
});

test('wn idle timeout: traffic keeps the pump alive, silence closes both sides', { skip }, async () => {
  const echo = await echoServer();
  const relay = await spliceRelay(echo.port, { idleTimeoutMs: 300 });
  const client = await connect(relay.port);
  // 8 x 100 ms of activity: longer than the timeout, never idle for it.
  for (let i = 0; i < 8; i++) {
    client.write('.');
    assert.equal((await readExactly(client, 1)).toString(), '.');
    await new Promise((r) => setTimeout(r, 100));
  }
  const quietSince = Date.now();
  const ended = collect(client);
  await ended; // FIN from the pump
  const quiet = Date.now() - quietSince;
  const r = await relay.result(0);
  assert.equal(r.reason, 'idle');
  assert.ok(quiet >= 150 && quiet < 2000, `closed after ${quiet} ms of silence (timeout 300 ms, last activity up to 100 ms earlier)`);
  assert.equal(r.bytesAtoB, 8);
});

test('wn abort with reset: both peers see ECONNRESET, reason aborted', { skip }, async () => {
  let serverErr!: Promise<NodeJS.ErrnoException>;
  const target = await serve((s) => { serverErr = nextError(s); s.pipe(s); });
  const relay = await spliceRelay(target.port);
  const client = await connect(relay.port);
  client.write('x');
  await readExactly(client, 1);
  const clientErr = nextError(client);
  relay.pumps[0].abort({ reset: true });
  assert.equal((await clientErr).code, 'ECONNRESET');
  assert.equal((await serverErr).code, 'ECONNRESET');
  assert.equal((await relay.result(0)).reason, 'aborted');
});

test('wn bytes Node had already read before the handoff are delivered first', { skip }, async () => {
  let serverGot!: Promise<Buffer>;
  const target = await serve((s) => { serverGot = collect(s); s.on('end', () => s.end()); });
  let pump!: SplicePump;
  const pumped = new Promise<void>((resolve) => {
    const server = net.createServer({ allowHalfOpen: true }, (down) => {
      // Let Node read the first bytes into its buffer (a protocol sniffer would), then hand off.
      down.once('readable', () => {
        const up = net.connect({ host: '127.0.0.1', port: target.port, allowHalfOpen: true });
        up.once('connect', () => { pump = startSplicePump(down, up); resolve(); });
      });
    });
    void listen(server).then(async (port) => {
      const client = await connect(port);
      client.write('HEAD:');
      await pumped;
      client.end('TAIL');
    });
  });
  await pumped;
  assert.equal((await serverGot).toString(), 'HEAD:TAIL');
  const r = await pump.done;
  assert.deepEqual({ reason: r.reason, a: r.bytesAtoB }, { reason: 'closed', a: 9 });
});

test('wn refusals leave the sockets untouched and name the problem', { skip }, async () => {
  const echo = await echoServer();
  const a = await connect(echo.port);
  const b = await connect(echo.port);
  const flowing = await connect(echo.port);
  flowing.on('data', () => {});
  assert.throws(() => startSplicePump(flowing, b), (e: SplicePumpError) => e.code === 'EHANDOFF' && /socket a has 'data' listeners/.test(e.message));
  // A listening socket is no connected TCP socket: the addon refuses it, takes nothing.
  const listener = net.createServer();
  await listen(listener);
  assert.throws(() => pumpStart(socketFd(a), socketFd(listener), {}, () => {}), (e: NativeError) => e.code === 'ENOTCONN' && /fdB/.test(e.message));
  assert.throws(() => pumpStart(socketFd(a), socketFd(b), { idleTimeoutMs: -1 }, () => {}), /options\.idleTimeoutMs must be an integer/);
  assert.throws(() => pumpStart(socketFd(a), socketFd(a), {}, () => {}), /same socket/);
  // Both sockets still work as plain Node sockets.
  for (const s of [a, b]) {
    s.write('still here');
    assert.equal((await readExactly(s, 10)).toString(), 'still here');
  }
});

test('wn 1000 concurrent pumps, all echo, all close cleanly', { skip, timeout: 120_000 }, async () => {
  const echo = await echoServer();
  const relay = await spliceRelay(echo.port, { pipeSize: 65536 });
  const base = pumpStats().active;
  const clients: net.Socket[] = [];
  for (let batch = 0; batch < 10; batch++) {
    clients.push(...(await Promise.all(Array.from({ length: 100 }, () => connect(relay.port)))));
  }
  const payloads = clients.map(() => randomBytes(1024));
  await Promise.all(clients.map(async (c, i) => {
    c.write(payloads[i]);
    assert.ok((await readExactly(c, 1024)).equals(payloads[i]));
  }));
  // Every pump is running at once (each client got its echo and is still open).
  assert.equal(pumpStats().active - base, 1000);
  await Promise.all(clients.map((c) => { const done = collect(c); c.end(); return done; }));
  const results = await Promise.all(clients.map((_, i) => relay.result(i)));
  assert.deepEqual([...new Set(results.map((r) => r.reason))], ['closed']);
  assert.ok(results.every((r) => r.bytesAtoB === 1024 && r.bytesBtoA === 1024));
  assert.equal(pumpStats().active, base);
});

test('wn no fd leak: closed, reset, idle and aborted pumps close every socket and pipe', { skip, timeout: 60_000 }, async () => {
  // Pipes that come back empty wait in the pipe pool; a short idle limit
  // lets the pool empty itself so the count below is exact.
  const idleMs = pumpConfigure({}).pipePoolIdleMs;
  pumpConfigure({ pipePoolIdleMs: 100 });
  cleanups.push(() => pumpConfigure({ pipePoolIdleMs: idleMs }));
  const poolEmpty = async () => { for (let i = 0; i < 100 && pumpStats().pipesPooled > 0; i++) await new Promise((r) => setTimeout(r, 20)); };
  const echo = await echoServer();
  const resetter = await serve((s) => s.once('data', () => s.resetAndDestroy()));
  // Warm up: the pump engine (epoll + eventfd) and Node's lazily opened fds exist before the count.
  {
    const relay = await spliceRelay(echo.port);
    const c = await connect(relay.port);
    const done = collect(c);
    c.end('warm');
    await done;
    await relay.result(0);
    relay.server.close();
  }
  await poolEmpty();
  const before = fdCounts();
  const closing = await spliceRelay(echo.port);
  const resetting = await spliceRelay(resetter.port);
  const idling = await spliceRelay(echo.port, { idleTimeoutMs: 100 });
  const aborting = await spliceRelay(echo.port);
  const clients: net.Socket[] = [];
  const work: Promise<unknown>[] = [];
  for (let i = 0; i < 40; i++) {
    const c = await connect(closing.port); clients.push(c);
    const d = collect(c); c.end(randomBytes(10_000)); work.push(d);
  }
  for (let i = 0; i < 20; i++) {
    const c = await connect(resetting.port); clients.push(c);
    const e = nextError(c); c.write('x'); work.push(e);
  }
  for (let i = 0; i < 20; i++) {
    const c = await connect(idling.port); clients.push(c);
    work.push(collect(c));
  }
  for (let i = 0; i < 20; i++) {
    const c = await connect(aborting.port); clients.push(c);
    c.on('error', () => {});
    c.write('y');
    await readExactly(c, 1);
    aborting.pumps[i].abort({ reset: i % 2 === 0 });
    // FIN ('end') after a plain abort, RST ('error') after a resetting one.
    work.push(new Promise((r) => { c.once('end', r); c.once('error', r); c.resume(); }));
  }
  await Promise.all(work);
  const reasons = await Promise.all([
    ...Array.from({ length: 40 }, (_, i) => closing.result(i)),
    ...Array.from({ length: 20 }, (_, i) => resetting.result(i)),
    ...Array.from({ length: 20 }, (_, i) => idling.result(i)),
    ...Array.from({ length: 20 }, (_, i) => aborting.result(i)),
  ]).then((rs) => rs.map((r) => r.reason));
  assert.deepEqual(reasons, [...Array(40).fill('closed'), ...Array(20).fill('reset-by-b'), ...Array(20).fill('idle'), ...Array(20).fill('aborted')]);
  for (const c of clients) c.destroy();
  for (const r of [closing, resetting, idling, aborting]) r.server.close();
  // Sockets accepted by the echo servers close on their own once the peers are gone.
  await poolEmpty();
  assert.equal(pumpStats().pipesPooled, 0);
  let after = fdCounts();
  for (let i = 0; i < 50 && (after.total !== before.total || after.pipes !== before.pipes); i++) {
    await new Promise((r) => setTimeout(r, 50));
    after = fdCounts();
  }
  assert.deepEqual(after, before);
  pumpConfigure({ pipePoolIdleMs: idleMs });
});

test('wn a worker that owns running pumps can be terminated: its pumps are closed, the process lives on', { skip, timeout: 30_000 }, async () => {
  const echo = await echoServer();
  const worker = new Worker(`
    const net = require('node:net');
    const { parentPort, workerData } = require('node:worker_threads');
    const addon = require(workerData.addon);
    const server = net.createServer({ pauseOnConnect: true, allowHalfOpen: true }, (down) => {
      const up = net.connect({ host: '127.0.0.1', port: workerData.target, allowHalfOpen: true });
      up.once('connect', () => {
        addon.pumpStart(down._handle.fd, up._handle.fd, {}, () => {});
        down.destroy(); up.destroy();
        parentPort.postMessage({ pumping: true });
      });
    });
    server.listen(0, '127.0.0.1', () => parentPort.postMessage({ port: server.address().port }));
  `, { eval: true, workerData: { addon: locateAddon(), target: echo.port } });
  cleanups.push(() => void worker.terminate());
  const [{ port }] = (await once(worker, 'message')) as [{ port: number }];
  const client = await connect(port);
  client.on('error', () => {});
  await once(worker, 'message'); // pumping
  client.write('ping');
  assert.equal((await readExactly(client, 4)).toString(), 'ping');
  const closed = new Promise((r) => { client.once('end', r); client.once('error', r); client.resume(); });
  await worker.terminate();
  await closed; // the worker's cleanup hook stopped its pump thread and closed the fds
  // ... and the main thread's own pumps are unaffected.
  const relay = await spliceRelay(echo.port);
  const c2 = await connect(relay.port);
  c2.write('pong');
  assert.equal((await readExactly(c2, 4)).toString(), 'pong');
  c2.end();
  assert.equal((await relay.result(0)).reason, 'closed');
});

test('wn process.exit with pumps running exits cleanly (no crash, no hang)', { skip, timeout: 30_000 }, async () => {
  const echo = await echoServer();
  const child = spawn(process.execPath, ['-e', `
    const net = require('node:net');
    const addon = require(process.env.ADDON);
    const server = net.createServer({ pauseOnConnect: true }, (down) => {
      const up = net.connect({ host: '127.0.0.1', port: Number(process.env.TARGET) });
      up.once('connect', () => {
        addon.pumpStart(down._handle.fd, up._handle.fd, {}, () => {});
        down.destroy(); up.destroy();
        setTimeout(() => process.exit(7), 200);
      });
    });
    server.listen(0, '127.0.0.1', () => {
      const c = net.connect(server.address().port, '127.0.0.1', () => { c.write(Buffer.alloc(1 << 20)); });
      c.on('data', () => {}); c.on('error', () => {});
    });
  `], { env: { ...process.env, ADDON: locateAddon(), TARGET: String(echo.port) }, stdio: 'inherit' });
  cleanups.push(() => child.kill('SIGKILL'));
  const [code, signal] = (await once(child, 'exit')) as [number | null, string | null];
  assert.deepEqual({ code, signal }, { code: 7, signal: null });
});

// --- throughput -----------------------------------------------------------

test('wn 1 GiB one way, sha256 on both ends; throughput: splice pump vs Node pipe() relay vs direct', { skip, timeout: 300_000 }, async () => {
  // Correctness: 1 GiB through the pump, hashed by sender and receiver.
  // Each 1 MiB chunk carries its index, so a lost, repeated or reordered chunk changes the hash.
  let receiverHash!: Promise<{ hex: string; bytes: number }>;
  const target = await serve((s) => {
    const h = createHash('sha256');
    let bytes = 0;
    s.on('data', (c: Buffer) => { h.update(c); bytes += c.length; });
    receiverHash = once(s, 'end').then(() => { s.end(); return { hex: h.digest('hex'), bytes }; });
  });
  const relay = await spliceRelay(target.port);
  const client = await connect(relay.port);
  const block = randomBytes(MiB);
  const sent = createHash('sha256');
  const t0 = performance.now();
  for (let i = 0; i < 1024; i++) {
    const chunk = Buffer.from(block);
    chunk.writeUInt32BE(i, 0);
    sent.update(chunk);
    if (!client.write(chunk)) await once(client, 'drain');
  }
  client.end();
  const got = await receiverHash;
  const seconds = (performance.now() - t0) / 1000;
  assert.equal(got.bytes, 1024 * MiB);
  assert.equal(got.hex, sent.digest('hex'));
  const r = await relay.result(0);
  assert.equal(r.bytesAtoB, 1024 * MiB);
  console.log(`# 1 GiB checksummed through the splice pump: ${(1024 / seconds).toFixed(0)} MiB/s (sha256 both ends, one process)`);

  // Throughput: same child-process endpoints, three paths, 1 GiB each.
  const bytes = 1024 * MiB;
  const child = spawn(process.execPath, ['-e', BULK_STREAM_ENDPOINTS], { env: { ...process.env, BYTES: String(bytes) }, stdio: ['pipe', 'pipe', 'inherit'] });
  cleanups.push(() => child.kill('SIGKILL'));
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const next = async <T>(): Promise<T> => JSON.parse((await lines.next()).value as string) as T;
  const { sinkPort } = await next<{ sinkPort: number }>();
  const pipeRelay = net.createServer({ allowHalfOpen: true }, (down) => {
    const up = net.connect({ host: '127.0.0.1', port: sinkPort, allowHalfOpen: true, noDelay: true });
    down.pipe(up);
    up.pipe(down);
  });
  const pipePort = await listen(pipeRelay);
  const splice = await spliceRelay(sinkPort);
  const rates: Record<string, number> = {};
  const cpu: Record<string, number> = {};
  for (const [name, port] of [['direct', sinkPort], ['node pipe() relay', pipePort], ['splice pump', splice.port]] as const) {
    const cpu0 = process.cpuUsage(); // this process = the relay (all its threads, the pump thread included)
    child.stdin!.write(`${port}\n`);
    const run = await next<{ bytes: number; ms: number }>();
    const used = process.cpuUsage(cpu0);
    assert.equal(run.bytes, bytes, `${name}: sink got ${run.bytes} bytes`);
    rates[name] = bytes / MiB / (run.ms / 1000);
    cpu[name] = (used.user + used.system) / 1e6;
  }
  child.kill();
  const line = Object.entries(rates).map(([k, v]) => `${k} ${v.toFixed(0)} MiB/s (relay CPU ${cpu[k].toFixed(2)} s)`).join(', ');
  console.log(`# 1 GiB, one stream: ${line}; splice/pipe() = ${(rates['splice pump'] / rates['node pipe() relay']).toFixed(2)}x`);
});
