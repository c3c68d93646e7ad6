// The native cluster table (native/src/cluster_table.cc) through its JS glue:
// least request (power of two choices) follows in-flight counts, tried
// endpoints are skipped, ejected / unhealthy ones only in panic, weighted
// round robin and random honour weights, counts survive a replace, and bad
// input is refused naming the field without changing the table.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { clusterTableAvailable, clusterTableStats, pickEndpoint, releaseLease, removeCluster, replaceClusters, upsertCluster } from '../../src/native/cluster-table.js';

const skip = !clusterTableAvailable() && 'native addon not built';
const ep = (last: number, extra: Record<string, unknown> = {}) => ({ ip: `10.9.0.${last}`, port: 8080, ...extra });
const held: number[] = [];
after(() => { for (const l of held) releaseLease(l); replaceClusters([]); });

function counts(name: string, n: number, opts?: { tried?: number[] }): Map<string, number> {
  const m = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const p = pickEndpoint(name, opts);
    assert.ok(p, 'a pick');
    m.set(p.ip, (m.get(p.ip) ?? 0) + 1);
  }
  return m;
}

test('least request: the endpoint with fewer in flight wins every two-choice draw', { skip }, () => {
  replaceClusters([{ name: 'lr', endpoints: [ep(1), ep(2)] }]);
  const a = pickEndpoint('lr', { hold: true })!;
  held.push(a.lease!);
  // With two endpoints both are always drawn: the other one has 0 in flight against 1.
  const m = counts('lr', 50);
  assert.equal(m.get(a.ip), undefined, `the loaded endpoint ${a.ip} was never picked: ${JSON.stringify([...m])}`);
  assert.equal(clusterTableStats().clusters.lr.find((e) => e.ip === a.ip)?.active, 1);
  assert.equal(releaseLease(a.lease!), true);
  held.pop();
  assert.equal(clusterTableStats().clusters.lr.find((e) => e.ip === a.ip)?.active, 0);
  const even = counts('lr', 400);
  assert.ok((even.get('10.9.0.1') ?? 0) > 100 && (even.get('10.9.0.2') ?? 0) > 100, `both picked when equal: ${JSON.stringify([...even])}`);
});

test('tried endpoints are skipped; none left = undefined', { skip }, () => {
  replaceClusters([{ name: 't', endpoints: [ep(1), ep(2), ep(3)] }]);
  const m = counts('t', 30, { tried: [0, 2] });
  assert.deepEqual([...m.keys()], ['10.9.0.2']);
  assert.equal(pickEndpoint('t', { tried: [0, 1, 2] }), undefined);
  assert.equal(pickEndpoint('no-such-cluster'), undefined);
});

test('ejected and unhealthy endpoints are used only when nothing else is left (panic)', { skip }, () => {
  replaceClusters([{ name: 'h', endpoints: [ep(1, { ejected: true }), ep(2), ep(3, { healthy: false })] }]);
  assert.deepEqual([...counts('h', 30).keys()], ['10.9.0.2']);
  const panic = counts('h', 60, { tried: [1] });
  assert.deepEqual([...panic.keys()].sort(), ['10.9.0.1', '10.9.0.3']);
});

test('weighted round robin gives exact shares; weighted random about them', { skip }, () => {
  replaceClusters([
    { name: 'rr', lbPolicy: 'ROUND_ROBIN', endpoints: [ep(1, { weight: 3 }), ep(2, { weight: 1 })] },
    { name: 'rnd', lbPolicy: 'RANDOM', endpoints: [ep(1, { weight: 9 }), ep(2, { weight: 1 })] },
  ]);
  const rr = counts('rr', 400);
  assert.equal(rr.get('10.9.0.1'), 300);
  assert.equal(rr.get('10.9.0.2'), 100);
  const rnd = counts('rnd', 2000);
  const share = (rnd.get('10.9.0.1') ?? 0) / 2000;
  assert.ok(share > 0.85 && share < 0.95, `weight 9 of 10 got ${share}`);
});

test('in-flight counts survive a replace for endpoints that stay; upsert and remove touch one cluster', { skip }, () => {
  replaceClusters([{ name: 'keep', endpoints: [ep(1)] }, { name: 'other', endpoints: [ep(5)] }]);
  const l = pickEndpoint('keep', { hold: true })!;
  held.push(l.lease!);
  replaceClusters([{ name: 'keep', endpoints: [ep(1), ep(2)] }, { name: 'other', endpoints: [ep(5)] }]);
  assert.equal(clusterTableStats().clusters.keep.find((e) => e.ip === '10.9.0.1')?.active, 1);
  upsertCluster({ name: 'new', endpoints: [ep(7)] });
  removeCluster('other');
  assert.deepEqual(Object.keys(clusterTableStats().clusters).sort(), ['keep', 'new']);
  releaseLease(held.pop()!);
  assert.equal(clusterTableStats().clusters.keep.find((e) => e.ip === '10.9.0.1')?.active, 0);
});

test('bad input: a TypeError naming the field, and the table is unchanged', { skip }, () => {
  const before = replaceClusters([{ name: 'ok', endpoints: [ep(1)] }]);
  const cases: [unknown, RegExp][] = [
    [[{ name: 'ok', endpoints: [{ ip: 'not-an-ip', port: 1 }] }], /clusters\[0\] \(ok\)\.endpoints\[0\].*numeric IPv4 or IPv6.*not-an-ip/],
    [[{ name: 'ok', endpoints: [ep(1)] }, { name: 'x', endpoints: [{ ip: '10.0.0.1', port: 70000 }] }], /clusters\[1\] \(x\)\.endpoints\[0\]\.port/],
    [[{ name: 'x', lbPolicy: 'MAGLEV', endpoints: [] }], /lbPolicy must be LEAST_REQUEST, ROUND_ROBIN or RANDOM.*MAGLEV/],
    [[{ name: 'x', endpoints: [ep(1, { weight: 0 })] }], /endpoints\[0\]\.weight/],
    [[{ endpoints: [] }], /clusters\[0\]\.name must be a string/],
    [{}, /clusters must be an array/],
  ];
  for (const [input, re] of cases) assert.throws(() => replaceClusters(input as never), (e: Error) => e instanceof TypeError && re.test(e.message), `for ${JSON.stringify(input)}`);
  const s = clusterTableStats();
  assert.equal(s.version, before);
  assert.deepEqual(Object.keys(s.clusters), ['ok']);
});
