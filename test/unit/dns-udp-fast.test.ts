// The DNS proxy with UDP served by the addon's native threads (udp-fast.ts,
// native/src/dns_fast.h): repeated questions are answered by the threads
// without JavaScript (their own counter says so), with the client's ID, RD
// bit and letter case, TTLs aged, sizes respected; registry changes reach
// them; every thread's SO_REUSEPORT socket answers; the upstream cache and
// single-flight hold; metrics add up; close() frees the port. Real sockets
// on loopback.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import dnsPacket from 'dns-packet';
import { Registry as PromRegistry } from 'prom-client';
import { startDnsProxy, type DnsProxy } from '../../src/dns/server.js';
import { dnsFastAvailable } from '../../src/native/dns-fast.js';
import { createLogger } from '../../src/common/log.js';
import type { Registry, RegistryView } from '../../src/controlplane/types.js';
import { decode, encodeQuery, randomPort, startFakeUpstream, testRegistry, udpQuery, udpRaw, type Answer } from './dns-support.js';
import { until as waitFor } from '../support/poll.js';

const logger = createLogger({ name: 'dns-test', fd: 2, level: 'warn' });
const skip = dnsFastAvailable() ? false : 'native addon (with the DNS fast path) not built';
/** Enough distinct client ports that SO_REUSEPORT's hash leaves no thread out (each misses one with p = 2^-N). */
const CLIENTS = 48;

function mutableView(initial: Registry | undefined): RegistryView & { set(r: Registry, emit: boolean): void } {
  const events = new EventEmitter();
  let current = initial;
  return {
    current: () => current,
    on: (e, l) => events.on(e, l),
    set(r, emit) { current = r; if (emit) events.emit('update', r); },
  };
}

function perThread(proxy: DnsProxy): number[] {
  return proxy.stats().udpThreads.map((w) => w.queries);
}

function answeredNatively(proxy: DnsProxy): number {
  return proxy.stats().udpFastPath!.answered;
}

async function many(port: number, name: string, type: dnsPacket.RecordType = 'A') {
  return Promise.all(Array.from({ length: CLIENTS }, () => udpQuery(port, name, type)));
}

test('udpThreads=2: repeated questions are answered by both native threads, and registry updates reach them', { skip }, async (t) => {
  const prom = new PromRegistry();
  const view = mutableView(testRegistry());
  const port = randomPort();
  const proxy = await startDnsProxy({
    registry: view, podNamespace: 'ns', resolvConfPath: '/nonexistent', udpThreads: 2,
    listen: { port, v6: null }, upstreams: [{ host: '127.0.0.1', port: 9 }], logger, metrics: prom,
  });
  t.after(() => proxy.close());
  assert.deepEqual(proxy.addresses().udp.map((a) => `${a.address}:${a.port}`), [`127.0.0.1:${port}`]);
  assert.equal(proxy.stats().udpThreads.length, 2);

  // The first answer comes from JavaScript, which teaches the threads.
  assert.deepEqual((await udpQuery(port, 'web', 'A')).answers.map((a) => a.data), ['10.96.0.10']);
  assert.equal(answeredNatively(proxy), 0);
  // Each udpQuery uses a fresh client socket (a new source port): spread over both threads.
  for (const r of await many(port, 'web')) assert.deepEqual(r.answers.map((a) => a.data), ['10.96.0.10']);
  const afterFirst = perThread(proxy);
  assert.ok(afterFirst.every((n) => n > 0), `every thread answered some itself: ${afterFirst}`);
  assert.equal(answeredNatively(proxy), CLIENTS, 'all repeats answered without JavaScript');

  // A changed snapshot, announced with 'update': the threads forget what they were taught.
  const next = testRegistry();
  next.version = 2;
  next.services.set('ns/web', { ...next.services.get('ns/web')!, clusterIPs: ['10.96.0.11'] });
  next.services.set('ns/late', { namespace: 'ns', name: 'late', kind: 'ClusterIP', clusterIPs: ['10.96.0.99'], ports: [], endpoints: [] });
  view.set(next, true);
  assert.ok(proxy.stats().udpThreads.every((w) => w.registryVersion === 2));
  for (const r of await many(port, 'web')) assert.deepEqual(r.answers.map((a) => a.data), ['10.96.0.11'], 'answers of the old snapshot dropped');
  for (const r of await many(port, 'late.ns.svc.cluster.local')) assert.deepEqual(r.answers.map((a) => a.data), ['10.96.0.99']);

  // A view that changes without an event still reaches the threads (periodic check).
  const third = testRegistry();
  third.version = 3;
  third.services.set('ns/web', { ...third.services.get('ns/web')!, clusterIPs: ['10.96.0.12'] });
  view.set(third, false);
  await waitFor('both threads at version 3', () => proxy.stats().udpThreads.every((w) => w.registryVersion === 3));
  for (const r of await many(port, 'web')) assert.deepEqual(r.answers.map((a) => a.data), ['10.96.0.12']);

  // Thread counts are folded into stats and the Prometheus registry: every query counted once.
  const total = 1 + 4 * CLIENTS;
  assert.equal(proxy.stats().queries.local, total);
  const metrics = await prom.metrics();
  assert.match(metrics, new RegExp(`weir_dns_queries_total\\{qtype="A",outcome="local"\\} ${total}\\n`));
  assert.match(metrics, new RegExp(`istio_agent_dns_requests_total ${total}\\n`));
  assert.match(metrics, new RegExp(`weir_dns_request_duration_seconds_count\\{outcome="local"\\} ${total}\\n`));
  // Nothing was dropped at this load (the counter exists for overload).
  assert.match(metrics, /weir_dns_udp_dropped_total 0\n/);
});

test('fast path answers carry the client\'s ID, RD bit and letter case; EDNS and plain clients each get their own answer', { skip }, async (t) => {
  const port = randomPort();
  const proxy = await startDnsProxy({
    registry: mutableView(testRegistry()), podNamespace: 'ns', resolvConfPath: '/nonexistent', udpThreads: 1,
    listen: { port, v6: null }, upstreams: [{ host: '127.0.0.1', port: 9 }], logger,
  });
  t.after(() => proxy.close());
  await udpQuery(port, 'web.ns.svc.cluster.local', 'A'); // teaches the threads
  const before = answeredNatively(proxy);
  const query = encodeQuery('WeB.nS.SvC.cLuStEr.LoCaL', 'A', { id: 0xbeef, rd: false });
  const raw = await udpRaw(port, query);
  assert.equal(answeredNatively(proxy), before + 1, 'answered by the native thread');
  const r = decode(raw);
  assert.equal(r.id, 0xbeef);
  assert.equal(raw[2] & 0x01, 0, 'RD as asked (clear)');
  assert.equal(r.flag_aa, true);
  assert.equal(r.questions[0].name, 'WeB.nS.SvC.cLuStEr.LoCaL', 'the question in the client\'s letter case');
  assert.deepEqual(r.answers.map((a) => [a.name.toLowerCase(), a.ttl, a.data]), [['web.ns.svc.cluster.local', 30, '10.96.0.10']]);
  assert.deepEqual(raw.subarray(12, query.length - 0), query.subarray(12), 'question section byte for byte');

  // An EDNS query is a different question for the cache (its answer carries OPT).
  const e1 = decode(await udpRaw(port, encodeQuery('web.ns.svc.cluster.local', 'A', { edns: 1232 })));
  const e2raw = await udpRaw(port, encodeQuery('web.ns.svc.cluster.local', 'A', { edns: 1232 }));
  assert.equal(answeredNatively(proxy), before + 2, 'the second EDNS query came from the thread');
  for (const x of [e1, decode(e2raw)]) assert.ok((dnsPacket.decode(x.raw).additionals ?? []).some((a) => a.type === 'OPT'), 'OPT in the EDNS answer');

  // A query with EDNS options (a cookie, as dig sends) always goes through JavaScript.
  const cookie = dnsPacket.encode({
    type: 'query', id: 7, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name: 'web.ns.svc.cluster.local' }],
    additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, flags: 0, options: [{ code: 10, data: Buffer.alloc(8, 1) }] } as unknown as Answer],
  });
  const n = answeredNatively(proxy);
  for (let i = 0; i < 3; i++) assert.equal(decode(await udpRaw(port, cookie)).rcode, 'NOERROR');
  assert.equal(answeredNatively(proxy), n, 'queries with EDNS options are never answered by the threads');
});

test('fast path: cached upstream answers age their TTLs, and an answer too large for a plain client is truncated by JavaScript', { skip }, async (t) => {
  const many = Array.from({ length: 40 }, (_, i): Answer => ({ name: 'big.example', type: 'A', ttl: 60, data: `198.51.100.${i + 1}` }));
  const upstream = await startFakeUpstream({
    'A ext.example': { answers: [{ name: 'ext.example', type: 'A', ttl: 60, data: '203.0.113.7' }] },
    'A big.example': { answers: many },
  });
  t.after(() => upstream.close());
  const port = randomPort();
  const proxy = await startDnsProxy({
    registry: mutableView(testRegistry()), podNamespace: 'ns', resolvConfPath: '/nonexistent', udpThreads: 1,
    listen: { port, v6: null }, upstreams: [{ host: '127.0.0.1', port: upstream.port }], logger,
  });
  t.after(() => proxy.close());

  assert.equal((await udpQuery(port, 'ext.example', 'A')).answers[0].ttl, 60);
  const n = answeredNatively(proxy);
  await sleep(2100);
  const aged = await udpQuery(port, 'ext.example', 'A');
  assert.equal(answeredNatively(proxy), n + 1, 'answered by the thread');
  assert.ok(aged.answers[0].ttl <= 58 && aged.answers[0].ttl >= 55, `TTL aged by the time in cache: ${aged.answers[0].ttl}`);
  assert.equal(upstream.count('A', 'ext.example'), 1);

  // 40 A records do not fit 512 bytes: a plain client gets TC, every time, from JavaScript.
  const big = await udpQuery(port, 'big.example', 'A', { edns: 4096 });
  assert.equal(big.answers.length, 40);
  const m = answeredNatively(proxy);
  const bigAgain = await udpQuery(port, 'big.example', 'A', { edns: 4096 });
  assert.equal(bigAgain.answers.length, 40);
  assert.equal(answeredNatively(proxy), m + 1, 'the EDNS client is answered by the thread');
  for (let i = 0; i < 2; i++) {
    const plain = await udpQuery(port, 'big.example', 'A');
    assert.equal(plain.flag_tc, true, 'truncated for a 512-byte client');
  }
  assert.equal(answeredNatively(proxy), m + 1, 'never an oversized answer from the thread');
  assert.equal(upstream.count('A', 'big.example'), 2, 'the plain question (no EDNS) is a cache key of its own');
});

test('udpThreads=2: upstream cache and single-flight hold', { skip }, async (t) => {
  const upstream = await startFakeUpstream({
    'A slow.example': { delayMs: 300, answers: [{ name: 'slow.example', type: 'A', ttl: 60, data: '203.0.113.5' }] },
  });
  t.after(() => upstream.close());
  const port = randomPort();
  const proxy = await startDnsProxy({
    registry: mutableView(testRegistry()), podNamespace: 'ns', resolvConfPath: '/nonexistent', udpThreads: 2,
    listen: { port, v6: null }, upstreams: [{ host: '127.0.0.1', port: upstream.port }], logger,
  });
  t.after(() => proxy.close());

  // Concurrent identical questions while the upstream is slow: one upstream query.
  for (const r of await many(port, 'slow.example')) assert.deepEqual(r.answers.map((a) => a.data), ['203.0.113.5']);
  assert.equal(upstream.count('A', 'slow.example'), 1, 'single-flight');

  // Afterwards: answered by the threads, still one upstream query.
  const n = answeredNatively(proxy);
  for (const r of await many(port, 'slow.example')) {
    assert.deepEqual(r.answers.map((a) => a.data), ['203.0.113.5']);
    assert.ok(r.answers[0].ttl <= 60);
  }
  assert.equal(answeredNatively(proxy), n + CLIENTS);
  assert.ok(perThread(proxy).every((x) => x > 0), `both threads answered: ${perThread(proxy)}`);
  assert.equal(upstream.count('A', 'slow.example'), 1, 'cache hits');
  const q = proxy.stats().queries;
  assert.equal(q.forwarded + q.cached, 2 * CLIENTS);
  assert.ok(q.cached >= CLIENTS, `the second round is all cache hits (cached=${q.cached})`);
});

test('udpThreads: close() stops the threads and frees the port; bad counts are refused by name', { skip }, async () => {
  const port = randomPort();
  const proxy = await startDnsProxy({
    registry: mutableView(testRegistry()), podNamespace: 'ns', resolvConfPath: '/nonexistent', udpThreads: 3,
    listen: { port, v6: null }, upstreams: [{ host: '127.0.0.1', port: 9 }], logger,
  });
  assert.equal(proxy.stats().udpThreads.length, 3);
  assert.equal((await udpQuery(port, 'web', 'A')).rcode, 'NOERROR');
  await proxy.close();
  // Every SO_REUSEPORT socket is closed: a plain (non-reuseport) bind of the port succeeds.
  const s = dgram.createSocket('udp4');
  await new Promise<void>((resolve, reject) => { s.once('error', reject); s.bind(port, '127.0.0.1', resolve); });
  s.close();

  for (const udpThreads of [-1, 1.5, 65]) {
    await assert.rejects(startDnsProxy({
      registry: mutableView(undefined), podNamespace: 'ns', resolvConfPath: '/nonexistent', udpThreads,
      listen: { port: randomPort(), v6: null }, upstreams: [{ host: '127.0.0.1', port: 9 }], logger,
    }), /udpThreads/);
  }
});

test('the addon refuses bad fast-path options by name and takes no socket it cannot serve', { skip }, async () => {
  const { socketInNetns } = await import('../../src/native/addon.js');
  const { createDnsFast } = await import('../../src/native/dns-fast.js');
  const { nativeStatsLayout, SharedQueryStats } = await import('../../src/dns/shared-stats.js');
  const { closeSync } = await import('node:fs');
  const layout = nativeStatsLayout();
  const stats = [new SharedQueryStats().values];
  const noop = () => {};
  assert.throws(() => createDnsFast({ sockets: [[0]], stats, layout: { ...layout, qtypeIndex: new Uint8Array(10) }, maxEntries: 10 }, noop), /options\.layout\.qtypeIndex/);
  assert.throws(() => createDnsFast({ sockets: [[0]], stats: [new Float64Array(3)], layout, maxEntries: 10 }, noop), /options\.stats\[0\]/);
  assert.throws(() => createDnsFast({ sockets: [[0]], stats, layout: { ...layout, latencyBase: 1 }, maxEntries: 10 }, noop), /options\.layout is inconsistent/);
  assert.throws(() => createDnsFast({ sockets: [[-1]], stats, layout, maxEntries: 10 }, noop), /options\.sockets\[0\]\[0\]/);
  assert.throws(() => createDnsFast({ sockets: [[0]], stats, layout, maxEntries: 0 }, noop), /options\.maxEntries/);
  // A TCP socket is not a UDP socket: refused, and left to its owner.
  const fd = await socketInNetns(null, { kind: 'tcp-listen', family: 4, address: '127.0.0.1', port: 0 });
  try {
    assert.throws(() => createDnsFast({ sockets: [[fd]], stats, layout, maxEntries: 10 }, noop), (e: Error & { code?: string }) => e.code === 'EINVAL' && /not a UDP socket/.test(e.message));
  } finally {
    closeSync(fd); // still ours: closing succeeds (it would throw EBADF had the addon closed it)
  }
});

test('the threads\' answer table stays within cacheMaxEntries under many new names, and answers stay right', { skip }, async (t) => {
  const upstream = await startFakeUpstream({}); // every name: NXDOMAIN with an SOA (cacheable, RFC 2308)
  t.after(() => upstream.close());
  const port = randomPort();
  const proxy = await startDnsProxy({
    registry: mutableView(testRegistry()), podNamespace: 'ns', resolvConfPath: '/nonexistent', udpThreads: 1, cacheMaxEntries: 8,
    listen: { port, v6: null }, upstreams: [{ host: '127.0.0.1', port: upstream.port }], logger,
  });
  t.after(() => proxy.close());
  for (let i = 0; i < 40; i++) {
    assert.equal((await udpQuery(port, `n${i}.example`, 'A')).rcode, 'NXDOMAIN');
    assert.ok(proxy.stats().udpFastPath!.entries <= 8, `table over its bound: ${proxy.stats().udpFastPath!.entries}`);
  }
  // The most recent names are still served by the thread, with the right answer.
  const n = answeredNatively(proxy);
  assert.equal((await udpQuery(port, 'n39.example', 'A')).rcode, 'NXDOMAIN');
  assert.equal(answeredNatively(proxy), n + 1);
  assert.deepEqual((await udpQuery(port, 'web', 'A')).answers.map((a) => a.data), ['10.96.0.10']);
});
