// The pump that dials its upstream itself (startConnectPump, the TCP chain's
// short path), on real loopback TCP: a relay accepts with Node, hands the
// client socket over with a target, and the pump thread connects, retries
// on JavaScript's word, times out, binds a source address and relays.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { closeSync } from 'node:fs';
import { socketInNetns } from '../../src/native/addon.js';
import { pumpConnect, pumpStats, type DialTarget } from '../../src/native/pump.js';
import { connectPumpAvailable, startConnectPump, type ConnectPump, type ConnectOutcome } from '../../src/native/splice-pump.js';
import { fdCounts, MiB, pumpHarness } from '../support/splice-relay.js';
import { until } from '../support/poll.js';

const skip = connectPumpAvailable() ? false : 'native addon without pumpConnect: run npm run build:native';
const { cleanups, listen, echoServer, serve, connect, collect, nextError, readExactly } = pumpHarness();
after(() => { for (const c of cleanups.splice(0).reverse()) { try { c(); } catch { /* best effort */ } } });

/** A port on 127.0.0.1 that refuses (bound by a closed listener a moment ago). */
async function refusingPort(): Promise<number> {
  const s = net.createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** A relay whose every accepted connection goes to startConnectPump(target); `plan` says what to do after each outcome. */
async function connectRelay(target: DialTarget, plan: (pump: ConnectPump, o: ConnectOutcome, attempt: number) => DialTarget | 'abort' | undefined = () => 'abort') {
  const pumps: ConnectPump[] = [];
  const outcomes: ConnectOutcome[] = [];
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (down) => {
    down.on('error', () => {});
    const pump = startConnectPump(down, target, { idleTimeoutMs: 30_000 });
    pumps.push(pump);
    void (async () => {
      let o = await pump.connected;
      for (let attempt = 1; ; attempt++) {
        outcomes.push(o);
        if (o.ok) return;
        const next = plan(pump, o, attempt);
        if (next === 'abort' || next === undefined) { pump.abort({ reset: true }); return; }
        o = await pump.redial(next);
      }
    })();
  });
  return { port: await listen(server), pumps, outcomes };
}

test('wc the pump dials the upstream: bytes both ways, buffered client bytes first, byte counts and local address', { skip }, async () => {
  const echo = await echoServer();
  const relay = await connectRelay({ ip: '127.0.0.1', port: echo.port });
  const client = await connect(relay.port);
  client.write('hello');
  assert.equal((await readExactly(client, 5)).toString(), 'hello');
  const bulk = randomBytes(4 * MiB);
  const received = collect(client);
  client.end(bulk);
  assert.ok((await received).equals(bulk), 'echoed bytes differ');
  const r = await relay.pumps[0].done;
  assert.deepEqual({ reason: r.reason, a: r.bytesAtoB, b: r.bytesBtoA }, { reason: 'closed', a: 5 + bulk.length, b: 5 + bulk.length });
  const o = relay.outcomes[0];
  assert.ok(o.ok && o.localAddress === '127.0.0.1' && (o.localPort ?? 0) > 0, `connected outcome: ${JSON.stringify(o)}`);
});

test('wc a refused connect is reported with its errno code; the same pump dials the next endpoint and the client never noticed', { skip }, async () => {
  const echo = await echoServer();
  const bad = await refusingPort();
  const relay = await connectRelay({ ip: '127.0.0.1', port: bad }, () => ({ ip: '127.0.0.1', port: echo.port }));
  const client = await connect(relay.port);
  client.write('retry me');
  assert.equal((await readExactly(client, 8)).toString(), 'retry me');
  assert.deepEqual(relay.outcomes[0], { ok: false, code: 'ECONNREFUSED', message: `connect ECONNREFUSED 127.0.0.1:${bad}` });
  assert.equal(relay.outcomes[1].ok, true);
  client.end();
  assert.equal((await relay.pumps[0].done).reason, 'closed');
});

test('wc giving up after a failed connect resets the client (abort with reset), no fd is left behind', { skip }, async () => {
  const before = fdCounts().total;
  const bad = await refusingPort();
  const relay = await connectRelay({ ip: '127.0.0.1', port: bad });
  const client = await connect(relay.port);
  const err = await nextError(client);
  assert.equal(err.code, 'ECONNRESET');
  assert.equal((await relay.pumps[0].done).reason, 'aborted');
  client.destroy();
  await until(`fds back to ${before} (+2 slack: the relay's own listener stays open)`, () => fdCounts().total <= before + 2, { detail: () => `now ${fdCounts().total}` });
});

test('wc a connect that gets no answer fails with ETIMEDOUT after connectTimeoutMs', { skip }, async () => {
  // A listener nobody accepts from, backlog 1: once its queue (2) is full the
  // kernel drops further SYNs, so the pump's connect waits for its timeout.
  const port = await refusingPort();
  const fd = await socketInNetns(null, { kind: 'tcp-listen', family: 4, address: '127.0.0.1', port, backlog: 1 });
  cleanups.push(() => closeSync(fd));
  const fillers: net.Socket[] = [];
  for (let i = 0; i < 4; i++) { const s = net.connect(port, '127.0.0.1'); s.on('error', () => {}); fillers.push(s); cleanups.push(() => s.destroy()); }
  await new Promise((r) => setTimeout(r, 200));
  const relay = await connectRelay({ ip: '127.0.0.1', port, connectTimeoutMs: 300 });
  const t0 = performance.now();
  const client = await connect(relay.port);
  const err = await nextError(client);
  const ms = performance.now() - t0;
  assert.equal(err.code, 'ECONNRESET');
  assert.deepEqual(relay.outcomes[0], { ok: false, code: 'ETIMEDOUT', message: `connect to 127.0.0.1:${port} timed out after 300 ms` });
  assert.ok(ms >= 250 && ms < 5000, `failed after ${ms} ms`);
});

test('wc localAddress: the upstream connection comes from the bound source address (127.0.0.6, the inbound hand-off)', { skip }, async () => {
  let seen = '';
  const server = await serve((s) => { seen = s.remoteAddress ?? ''; s.end('ok'); });
  const relay = await connectRelay({ ip: '127.0.0.1', port: server.port, localAddress: '127.0.0.6' });
  const client = await connect(relay.port);
  const got = await collect(client);
  assert.equal(got.toString(), 'ok');
  assert.equal(seen, '127.0.0.6');
  const o = relay.outcomes[0];
  assert.ok(o.ok && o.localAddress === '127.0.0.6');
});

test('wc bad targets are refused before anything is taken, naming the field', { skip }, async () => {
  const server = net.createServer({ pauseOnConnect: true });
  const port = await listen(server);
  const accepted = once(server, 'connection') as Promise<[net.Socket]>;
  const client = await connect(port);
  const [down] = await accepted;
  cleanups.push(() => down.destroy());
  assert.throws(() => startConnectPump(down, { ip: 'example.com', port: 80 }), /target\.ip must be a numeric IPv4 or IPv6 address \(got "example\.com"\)/);
  assert.throws(() => startConnectPump(down, { ip: '127.0.0.1', port: 0 }), /target\.port must be an integer in \[1, 65535\]/);
  assert.throws(() => startConnectPump(down, { ip: '::1', port: 80, localAddress: '127.0.0.6' }), /localAddress 127\.0\.0\.6 is not of the same family as ip ::1/);
  assert.throws(() => pumpConnect(-1, { ip: '127.0.0.1', port: 80 }, {}, () => {}), /fdA must be an integer/);
  assert.equal(down.destroyed, false, 'the socket is untouched');
  client.destroy();
});

test('wc 200 short connections through connect pumps: every one answered, pump counters balance', { skip }, async () => {
  const echo = await echoServer();
  const before = pumpStats();
  const relay = await connectRelay({ ip: '127.0.0.1', port: echo.port });
  await Promise.all(Array.from({ length: 200 }, async (_, i) => {
    const c = await connect(relay.port);
    c.write(`c${i}`);
    assert.equal((await readExactly(c, `c${i}`.length)).toString(), `c${i}`);
    c.end();
  }));
  await Promise.all(relay.pumps.map((p) => p.done));
  const after = pumpStats();
  assert.equal(after.started - before.started, 200);
  assert.equal(after.finished - before.finished, 200);
});

test('wc bytes a sniffer read and unshift()ed before the handoff reach the upstream first, in order', { skip }, async () => {
  const echo = await echoServer();
  let pump: ConnectPump | undefined;
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (down) => {
    down.on('error', () => {});
    // As protocol sniffing does: read what arrived, look at it, put it back.
    down.once('readable', () => {
      const seen = down.read() as Buffer;
      down.unshift(seen);
      pump = startConnectPump(down, { ip: '127.0.0.1', port: echo.port });
    });
  });
  const port = await listen(server);
  const client = await connect(port);
  client.write('first bytes|');
  await until('the handoff', () => pump);
  client.write('then more');
  assert.equal((await readExactly(client, 21)).toString(), 'first bytes|then more');
  client.end();
  const r = await pump!.done;
  assert.equal(r.bytesAtoB, 21);
});
