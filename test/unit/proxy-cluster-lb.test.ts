// DestinationRule load balancing, pool limits and outlier detection as
// pure state machines: ring hash and maglev spread keys evenly and move
// only the keys of a removed endpoint; simple policies; the pool gate's
// pending queue and overflow; ejection × count, max ejection percent,
// min health percent and return after the ejection time.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Maglev, MAGLEV_TABLE_SIZE, RingHash, hash48, type HashTable } from '../../src/proxy/cluster/hash-ring.js';
import { Balancer } from '../../src/proxy/cluster/balancer.js';
import { hashKeyOf } from '../../src/proxy/cluster/hash-key.js';
import { PoolGate } from '../../src/proxy/cluster/pool-limits.js';
import { OutlierDetector } from '../../src/proxy/cluster/outlier.js';

const hosts = (n: number) => Array.from({ length: n }, (_, i) => `10.0.0.${i + 1}|8080`);
const KEYS = Array.from({ length: 20_000 }, (_, i) => `user-${i}`);

function distribution(t: HashTable, n: number, skip: (i: number) => boolean = () => false): number[] {
  const counts = new Array<number>(n).fill(0);
  for (const k of KEYS) counts[t.pick(hash48(k), skip)!]++;
  return counts;
}

for (const [name, make] of [['ring hash', (k: string[]) => new RingHash(k, 1024)], ['maglev', (k: string[]) => new Maglev(k)]] as const) {
  test(`${name}: even spread over 5 endpoints; removing one moves only its keys; skipping walks on`, () => {
    const five = hosts(5);
    const t5 = make(five);
    const counts = distribution(t5, 5);
    const tol = name === 'maglev' ? 0.1 : 0.25;
    for (const c of counts) assert.ok(Math.abs(c - KEYS.length / 5) / (KEYS.length / 5) < tol, `${name} counts ${counts}`);
    // Remove endpoint 2: keys on other endpoints stay where they were.
    const four = five.filter((_, i) => i !== 2);
    const t4 = make(four);
    let moved = 0;
    let movedFromOthers = 0;
    for (const k of KEYS) {
      const before = five[t5.pick(hash48(k), () => false)!];
      const after = four[t4.pick(hash48(k), () => false)!];
      if (before !== after) { moved++; if (before !== five[2]) movedFromOthers++; }
    }
    const limit = name === 'maglev' ? 0.03 : 0.001;
    assert.ok(movedFromOthers / KEYS.length <= limit, `${name}: ${movedFromOthers} keys of remaining endpoints moved`);
    assert.ok(moved >= counts[2] * 0.95, 'the removed endpoint\'s keys moved');
    // Stable: same key, same endpoint, every time and in a fresh table.
    assert.equal(make(five).pick(hash48('user-7'), () => false), t5.pick(hash48('user-7'), () => false));
    // An excluded endpoint is never returned.
    const skipped = distribution(t5, 5, (i) => i === 0);
    assert.equal(skipped[0], 0);
  });
}

test('maglev table is 65537 entries by default', () => {
  assert.equal(MAGLEV_TABLE_SIZE, 65537);
  const m = new Maglev(hosts(3)) as unknown as { table: Int32Array };
  assert.equal(m.table.length, 65537);
  assert.ok(m.table.every((x) => x >= 0 && x < 3));
});

test('balancer: ROUND_ROBIN cycles, RANDOM spreads, hash pins a key and prefers untried endpoints on retry', () => {
  const ts = hosts(3).map((h) => ({ ip: h.split('|')[0], port: 8080 }));
  const rr = new Balancer('ROUND_ROBIN');
  const seq = Array.from({ length: 6 }, () => rr.pick(ts, new Set())!.ip);
  assert.deepEqual(seq.slice(0, 3).sort(), ts.map((t) => t.ip).sort());
  assert.deepEqual(seq.slice(3), seq.slice(0, 3));
  const rnd = new Balancer('RANDOM');
  assert.equal(new Set(Array.from({ length: 100 }, () => rnd.pick(ts, new Set())!.ip)).size, 3);
  const ring = new Balancer('CONSISTENT_HASH', { kind: 'ring' });
  const first = ring.pick(ts, new Set(), 'alice')!;
  for (let i = 0; i < 20; i++) assert.equal(ring.pick(ts, new Set(), 'alice'), first);
  const retry = ring.pick(ts, new Set([`${first.ip}|8080`]), 'alice')!;
  assert.notEqual(retry, first);
  const keys = new Set(Array.from({ length: 200 }, (_, i) => ring.pick(ts, new Set(), `k${i}`)!.ip));
  assert.equal(keys.size, 3, 'different keys reach every endpoint');
});

test('hash keys: header, cookie (generated and set when it has a ttl), source IP, query parameter', () => {
  const req = { headers: { 'x-user': 'bob', cookie: 'a=1; sess=xyz' }, query: new URLSearchParams('u=7'), sourceIp: '10.1.1.1' };
  assert.deepEqual(hashKeyOf({ httpHeaderName: 'X-User' }, req), { key: 'bob' });
  assert.deepEqual(hashKeyOf({ httpCookie: { name: 'sess' } }, req), { key: 'xyz' });
  const gen = hashKeyOf({ httpCookie: { name: 'stick', path: '/', ttlMs: 60_000 } }, req);
  assert.match(gen.setCookie!, /^stick=[0-9a-f]{16}; Max-Age=60; Path=\/; HttpOnly$/);
  assert.equal(gen.key, /^stick=([0-9a-f]+)/.exec(gen.setCookie!)![1]);
  assert.deepEqual(hashKeyOf({ useSourceIp: true }, req), { key: '10.1.1.1' });
  assert.deepEqual(hashKeyOf({ httpQueryParameterName: 'u' }, req), { key: '7' });
});

test('pool gate: maxConnections in flight, then http1MaxPendingRequests queued, then overflow; http2MaxRequests overflows at once; maxRetries', async () => {
  const g = new PoolGate({ maxConnections: 1, http1MaxPendingRequests: 1 });
  const a = await g.admit();
  assert.equal(typeof a, 'function');
  const pendingB = g.admit();
  assert.equal(g.pendingCount, 1);
  assert.equal(await g.admit(), 'overflow');
  (a as () => void)();
  const b = await pendingB;
  assert.equal(typeof b, 'function');
  assert.equal(g.active, 1);
  (b as () => void)();
  assert.equal(g.active, 0);
  // A pending request whose client left (or whose deadline passed) leaves the queue.
  const one = new PoolGate({ maxConnections: 1, http1MaxPendingRequests: 5 });
  const held = await one.admit();
  const ac = new AbortController();
  const waiting = one.admit(ac.signal);
  assert.equal(one.pendingCount, 1);
  ac.abort();
  assert.equal(await waiting, 'aborted');
  assert.equal(one.pendingCount, 0);
  (held as () => void)();
  assert.equal(one.active, 0);
  const h2 = new PoolGate({ http2MaxRequests: 2 });
  await h2.admit(); await h2.admit();
  assert.equal(await h2.admit(), 'overflow');
  assert.deepEqual(h2.overflows, { pending: 0, requests: 1, retries: 0 });
  const r = new PoolGate({ maxRetries: 1 });
  const r1 = r.retry();
  assert.ok(r1);
  assert.equal(r.retry(), undefined);
  r1!();
  assert.ok(r.retry());
});

test('outlier detection: consecutive 5xx eject for base × count, max ejection percent, min health percent, return after the time', async () => {
  const od = new OutlierDetector({ consecutive5xxErrors: 3, intervalMs: 20, baseEjectionTimeMs: 100, maxEjectionPercent: 50, minHealthPercent: 0 });
  try {
    const ts = ['a', 'b', 'c', 'd'];
    od.record('a', { status: 500 }, 4); od.record('a', { status: 500 }, 4);
    od.record('a', { status: 200 }, 4); // success resets the streak
    od.record('a', { status: 503 }, 4); od.record('a', { status: 503 }, 4);
    assert.equal(od.isEjected('a'), false);
    od.record('a', { failure: 'connect' }, 4);
    assert.equal(od.isEjected('a'), true);
    assert.deepEqual(od.filter(ts, (x) => x), ['b', 'c', 'd']);
    for (let i = 0; i < 3; i++) od.record('b', { status: 500 }, 4);
    assert.equal(od.isEjected('b'), true, '2 of 4 = 50 % may be ejected');
    for (let i = 0; i < 3; i++) od.record('c', { status: 500 }, 4);
    assert.equal(od.isEjected('c'), false, 'a third would exceed maxEjectionPercent');
    const t0 = Date.now();
    while (od.isEjected('a')) await new Promise((r) => setTimeout(r, 2));
    assert.ok(Date.now() - t0 >= 80, 'back after baseEjectionTime, not before');
    // Ejected again right away: twice as long (the multiplier decays only while healthy for whole intervals).
    for (let i = 0; i < 3; i++) od.record('a', { status: 500 }, 4);
    assert.equal(od.isEjected('a'), true);
    assert.ok(od.hostStats('a').ejectedForMs! > 100, `second ejection lasts 2 × base: ${od.hostStats('a').ejectedForMs}`);
  } finally { od.stop(); }
  const gw = new OutlierDetector({ consecutive5xxErrors: 0, consecutiveGatewayErrors: 2, intervalMs: 1000, baseEjectionTimeMs: 1000, maxEjectionPercent: 100, minHealthPercent: 0 });
  try {
    gw.record('g', { status: 500 }, 2); gw.record('g', { status: 500 }, 2); gw.record('g', { status: 500 }, 2);
    assert.equal(gw.isEjected('g'), false, '500 is not a gateway error; consecutive5xxErrors 0 disables that detector');
    gw.record('g', { status: 502 }, 2); gw.record('g', { failure: 'connect' }, 2);
    assert.equal(gw.isEjected('g'), true, '502 then a connect failure: two gateway errors');
  } finally { gw.stop(); }
  const guarded = new OutlierDetector({ consecutive5xxErrors: 1, intervalMs: 1000, baseEjectionTimeMs: 1000, maxEjectionPercent: 100, minHealthPercent: 60 });
  try {
    guarded.record('x', { status: 500 }, 2);
    assert.deepEqual(guarded.filter(['x', 'y'], (v) => v), ['x', 'y'], '1 of 2 healthy = 50 % < minHealthPercent: ejection ignored');
  } finally { guarded.stop(); }
});
