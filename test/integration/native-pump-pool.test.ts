// The splice pump's pipe pool on real loopback TCP: pumps reuse the pipes
// of finished pumps (no pipe2/close per short connection), the pool is
// bounded (pipePoolMax) and empties itself when idle (pipePoolIdleMs), and a
// pipe that still holds bytes is never handed to another connection.
import { test, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { pumpConfigure, pumpStats } from '../../src/native/pump.js';
import { splicePumpAvailable } from '../../src/native/splice-pump.js';
import { fdCounts, MiB, pumpHarness } from '../support/splice-relay.js';

const skip = splicePumpAvailable() ? false : 'native addon without the splice pump: run npm run build:native';
const { cleanups, echoServer, serve, spliceRelay, connect, collect, readExactly } = pumpHarness();
after(() => { for (const c of cleanups.splice(0).reverse()) { try { c(); } catch { /* best effort */ } } });

const DEFAULTS = splicePumpAvailable() ? pumpConfigure({}) : undefined;
afterEach(() => { if (DEFAULTS) pumpConfigure({ pipePoolMax: DEFAULTS.pipePoolMax, pipePoolIdleMs: DEFAULTS.pipePoolIdleMs }); });

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One echo exchange and a clean close through the relay; resolves when the pump has finished. */
async function oneConnection(relayPort: number, result: () => Promise<unknown>, bytes = 16): Promise<void> {
  const c = await connect(relayPort);
  const msg = randomBytes(bytes);
  const got = collect(c);
  c.end(msg);
  assert.ok((await got).equals(msg), 'echo differs');
  await result();
}

/** Pipe fds of this process that are not waiting in the pool (2 fds per pooled pipe). */
function pipeFdsInUse(): number {
  return fdCounts().pipes - 2 * pumpStats().pipesPooled;
}

test('wp settings are checked and reported: pipePoolMax 0-4096, pipePoolIdleMs 0-3600000', { skip }, () => {
  assert.throws(() => pumpConfigure({ pipePoolMax: -1 }), /options\.pipePoolMax must be an integer in \[0, 4096\]/);
  assert.throws(() => pumpConfigure({ pipePoolMax: 5000 }), /options\.pipePoolMax/);
  assert.throws(() => pumpConfigure({ pipePoolIdleMs: 1.5 }), /options\.pipePoolIdleMs must be an integer/);
  const s = pumpConfigure({ pipePoolMax: 7, pipePoolIdleMs: 1234 });
  assert.equal(s.pipePoolMax, 7);
  assert.equal(s.pipePoolIdleMs, 1234);
  assert.equal(pumpConfigure({}).pipePoolMax, 7, 'an empty call changes nothing');
});

test('wp reuse: 50 sequential connections create at most 2 pipes, the rest come from the pool', { skip, timeout: 30_000 }, async () => {
  const echo = await echoServer();
  const relay = await spliceRelay(echo.port);
  const before = pumpStats();
  for (let i = 0; i < 50; i++) await oneConnection(relay.port, () => relay.result(i));
  const after = pumpStats();
  const created = after.pipesCreated - before.pipesCreated;
  const reused = after.pipesReused - before.pipesReused;
  assert.equal(created + reused, 100, 'two pipes per pump');
  assert.ok(created <= 2, `created ${created} pipes for 50 sequential pumps`);
  assert.equal(after.pipesClosed, before.pipesClosed, 'no pipe closed: all came back empty');
  assert.ok(after.pipesPooled >= 2);
});

test('wp bounds: at most pipePoolMax pipes wait; the others are closed, and no pipe fd is left behind', { skip, timeout: 30_000 }, async () => {
  pumpConfigure({ pipePoolMax: 6 });
  const echo = await echoServer();
  const relay = await spliceRelay(echo.port);
  const inUse = pipeFdsInUse();
  const before = pumpStats();
  const clients = await Promise.all(Array.from({ length: 20 }, () => connect(relay.port)));
  // 20 pumps at once: 40 pipes in use, more than the pool (at most 6) could hold.
  await Promise.all(clients.map(async (c) => { c.write('hi'); assert.equal((await readExactly(c, 2)).toString(), 'hi'); }));
  assert.equal(pipeFdsInUse() - inUse, 80, '40 pipes, 2 fds each');
  await Promise.all(clients.map((c) => { const d = collect(c); c.end(); return d; }));
  await Promise.all(clients.map((_, i) => relay.result(i)));
  const after = pumpStats();
  assert.equal(after.pipesPooled, 6);
  assert.ok(after.pipesClosed - before.pipesClosed >= 34, `closed ${after.pipesClosed - before.pipesClosed}`);
  assert.equal(pipeFdsInUse(), inUse, 'every pipe is either pooled or closed');
  // Lowering the bound closes the excess at once.
  pumpConfigure({ pipePoolMax: 2 });
  assert.equal(pumpStats().pipesPooled, 2);
  assert.equal(pipeFdsInUse(), inUse);
});

test('wp a pipe with bytes still in it is closed, never reused: the next connection gets only its own bytes', { skip, timeout: 30_000 }, async () => {
  // A server that never reads: the client's bytes pile up in the A->B pipe.
  const stuck = await serve((s) => s.pause());
  const relay = await spliceRelay(stuck.port);
  const c = await connect(relay.port);
  c.on('error', () => {});
  // More than the kernel's socket buffers on the way can hold (send and
  // receive buffers autotune to a few MiB each), so the pipe fills too.
  c.write(randomBytes(32 * MiB));
  await sleep(500);
  const before = pumpStats();
  relay.pumps[0].abort({ reset: true });
  const r = await relay.result(0);
  assert.equal(r.reason, 'aborted');
  assert.ok(r.bytesAtoB < 32 * MiB, 'the pump did not hold anything back: the test proves nothing');
  const after = pumpStats();
  assert.equal(after.pipesClosed - before.pipesClosed, 1, 'the non-empty pipe is closed');
  assert.equal(after.pipesPooled - before.pipesPooled, 1, 'the empty B->A pipe is pooled');
  // Every pump after this one echoes exactly its own bytes.
  const echo = await echoServer();
  const next = await spliceRelay(echo.port);
  for (let i = 0; i < 5; i++) await oneConnection(next.port, () => next.result(i), 4096);
});

test('wp a pipe grown for bulk data goes back to the pool at its first size', { skip, timeout: 30_000 }, async () => {
  const echo = await echoServer();
  const relay = await spliceRelay(echo.port);
  const before = pumpStats();
  // 8 MiB one way and back fills the pipes: both grow to 1 MiB.
  await oneConnection(relay.port, () => relay.result(0), 8 * MiB);
  const after = pumpStats();
  assert.equal(after.pipesClosed, before.pipesClosed, 'shrunk back and pooled, not closed');
  // Both pipes came back: the pool lost what the pump took from it and got two.
  assert.equal(after.pipesPooled - before.pipesPooled, 2 - (after.pipesReused - before.pipesReused));
  // The next bulk connection over those pipes is byte-exact.
  await oneConnection(relay.port, () => relay.result(1), 4 * MiB);
});

test('wp idle pipes are closed after pipePoolIdleMs: after a burst the fd count is back where it was', { skip, timeout: 30_000 }, async () => {
  pumpConfigure({ pipePoolIdleMs: 300 });
  for (let i = 0; i < 50 && pumpStats().pipesPooled > 0; i++) await sleep(20);
  const echo = await echoServer();
  const relay = await spliceRelay(echo.port);
  // Warm up Node's own lazily opened fds before counting.
  await oneConnection(relay.port, () => relay.result(0));
  for (let i = 0; i < 50 && pumpStats().pipesPooled > 0; i++) await sleep(20);
  const base = fdCounts();
  assert.equal(pumpStats().pipesPooled, 0);
  const clients = await Promise.all(Array.from({ length: 60 }, () => connect(relay.port)));
  await Promise.all(clients.map((c) => { const d = collect(c); c.end('x'); return d; }));
  await Promise.all(clients.map((_, i) => relay.result(i + 1)));
  // Right after the burst the pool holds pipes (that is its point) ...
  assert.ok(pumpStats().pipesPooled > 0, 'nothing was pooled');
  // ... and an idle engine closes them on its own (no event wakes it: its timer does).
  await sleep(900);
  assert.equal(pumpStats().pipesPooled, 0, 'the pool kept pipes after its idle limit');
  let now = fdCounts();
  for (let i = 0; i < 40 && (now.total !== base.total || now.pipes !== base.pipes); i++) { await sleep(50); now = fdCounts(); }
  assert.deepEqual(now, base);
});

test('wp pipePoolMax 0 turns pooling off: every pipe is closed when its pump ends', { skip, timeout: 30_000 }, async () => {
  pumpConfigure({ pipePoolMax: 0 });
  assert.equal(pumpStats().pipesPooled, 0);
  const echo = await echoServer();
  const relay = await spliceRelay(echo.port);
  const before = pumpStats();
  for (let i = 0; i < 3; i++) await oneConnection(relay.port, () => relay.result(i));
  const after = pumpStats();
  assert.equal(after.pipesCreated - before.pipesCreated, 6);
  assert.equal(after.pipesClosed - before.pipesClosed, 6);
  assert.equal(after.pipesPooled, 0);
});
