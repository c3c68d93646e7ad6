// The native accept path's route table push (native/src/l4_accept_js.cc): bad
// input is refused with a TypeError naming the field; a good table is taken.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { l4SetRoutes, nativeAcceptAvailable, type L4RouteTable } from '../../src/native/l4-accept.js';

const skip = !nativeAcceptAvailable() && 'native addon not built';
const ok: L4RouteTable = { exact: { 'o|10.96.0.1|5432': { kind: 'cluster', cluster: 'outbound|5432||db.ns.svc.cluster.local', reason: 'declared' }, 'o|10.96.0.2|80': { kind: 'js' } }, byPort: { 'o|3306': { kind: 'original', cluster: 'PassthroughCluster' } }, ownPorts: [15001, 15006], maxConnections: 100, idleTimeoutMs: 0, passthroughConnectTimeoutMs: 1000 };
after(() => { if (!skip) l4SetRoutes({ ...ok, exact: {}, byPort: {} }); });

test('a well-formed table is accepted', { skip }, () => {
  assert.doesNotThrow(() => l4SetRoutes(ok));
  assert.doesNotThrow(() => l4SetRoutes({ ...ok, exact: { 'i|10.0.0.5|9000': { kind: 'inbound', cluster: 'inbound|9000||', reason: 'declared', peek: true } }, inboundSourceV4: '127.0.0.6', inboundConnectTimeoutMs: 1000, inboundPeekTimeoutMs: 100 }));
});

test('bad entries: a TypeError naming the field', { skip }, () => {
  const cases: [unknown, RegExp][] = [
    [{ ...ok, exact: { k: { kind: 'maybe' } } }, /l4SetRoutes: exact\["k"\]\.kind must be 'js', 'cluster', 'original' or 'inbound'.*maybe/],
    [{ ...ok, exact: { k: { kind: 'inbound', peek: 'yes' } } }, /exact\["k"\]\.peek must be a boolean/],
    [{ ...ok, exact: { k: { kind: 'js', peek: true } } }, /exact\["k"\]\.peek is for kind 'inbound' only/],
    [{ ...ok, inboundSourceV4: '127.0.0.300' }, /inboundSourceV4: localAddress must be a numeric/],
    [{ ...ok, inboundSourceV4: '::6' }, /inboundSourceV4: localAddress ::6 is not of the same family/],
    [{ ...ok, inboundPeekTimeoutMs: -5 }, /inboundPeekTimeoutMs must be an integer/],
    [{ ...ok, exact: { k: { kind: 'cluster' } } }, /exact\["k"\]\.cluster must name a cluster/],
    [{ ...ok, byPort: { p: 7 } }, /byPort\["p"\] must be an object/],
    [{ ...ok, ownPorts: [15001, 0] }, /ownPorts\[1\] must be an integer in \[1, 65535\]/],
    [{ ...ok, maxConnections: -1 }, /maxConnections must be an integer/],
    [7, /table must be an object/],
  ];
  for (const [input, re] of cases) assert.throws(() => l4SetRoutes(input as never), (e: Error) => e instanceof TypeError && re.test(e.message), `for ${JSON.stringify(input)}`);
});
