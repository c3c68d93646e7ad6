// The DNS proxy with UDP served by worker threads (SO_REUSEPORT sockets on
// one port): every worker answers, registry snapshots reach every worker,
// the upstream cache and single-flight hold across workers, metrics add up,
// and close() releases the port. Real sockets on loopback.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { Registry as PromRegistry } from 'prom-client';
import { startDnsProxy, type DnsProxy } from '../../src/dns/server.js';
import { nativeAvailable } from '../../src/netns/native.js';
import { createLogger } from '../../src/common/log.js';
import type { Registry, RegistryView } from '../../src/controlplane/types.js';
import { randomPort, startFakeUpstream, testRegistry, udpQuery } from './dns-support.js';

const logger = createLogger({ name: 'dns-test', fd: 2, level: 'warn' });
const skip = nativeAvailable() ? false : 'native addon not built (SO_REUSEPORT sockets come from it)';
/** Enough distinct client ports that SO_REUSEPORT's hash leaves no worker out (each misses one with p = 2^-N). */
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

async function waitFor(what: string, cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

function perWorker(proxy: DnsProxy): number[] {
  return proxy.stats().udpWorkers.map((w) => w.queries);
}

test('workers=2: both SO_REUSEPORT sockets answer, and registry updates reach both', { skip }, async (t) => {
  const prom = new PromRegistry();
  const view = mutableView(testRegistry());
  const port = randomPort();
  const proxy = await startDnsProxy({
    registry: view, podNamespace: 'ns', resolvConfPath: '/nonexistent', workers: 2,
    listen: { port, v6: null }, upstreams: [{ host: '127.0.0.1', port: 9 }], logger, metrics: prom,
  });
  t.after(() => proxy.close());
  assert.deepEqual(proxy.addresses().udp.map((a) => `${a.address}:${a.port}`), [`127.0.0.1:${port}`]);
  assert.equal(proxy.stats().udpWorkers.length, 2);

  // Each udpQuery uses a fresh client socket (a new source port).
  const first = await Promise.all(Array.from({ length: CLIENTS }, () => udpQuery(port, 'web', 'A')));
  for (const r of first) assert.deepEqual(r.answers.map((a) => a.data), ['10.96.0.10']);
  const afterFirst = perWorker(proxy);
  assert.ok(afterFirst.every((n) => n > 0), `every worker answered some: ${afterFirst}`);
  assert.equal(afterFirst.reduce((a, b) => a + b), CLIENTS);

  // A changed snapshot, announced with 'update'.
  const next = testRegistry();
  next.version = 2;
  next.services.set('ns/web', { ...next.services.get('ns/web')!, clusterIPs: ['10.96.0.11'] });
  next.services.set('ns/late', { namespace: 'ns', name: 'late', kind: 'ClusterIP', clusterIPs: ['10.96.0.99'], ports: [], endpoints: [] });
  view.set(next, true);
  await waitFor('both workers at version 2', () => proxy.stats().udpWorkers.every((w) => w.registryVersion === 2));
  const second = await Promise.all(Array.from({ length: CLIENTS }, () => udpQuery(port, 'web', 'A')));
  for (const r of second) assert.deepEqual(r.answers.map((a) => a.data), ['10.96.0.11'], 'pre-encoded answers of the old snapshot dropped');
  const late = await Promise.all(Array.from({ length: CLIENTS }, () => udpQuery(port, 'late.ns.svc.cluster.local', 'A')));
  for (const r of late) assert.deepEqual(r.answers.map((a) => a.data), ['10.96.0.99']);
  const afterSecond = perWorker(proxy);
  assert.ok(afterSecond.every((n, i) => n > afterFirst[i]), `every worker answered from the new snapshot: ${afterFirst} → ${afterSecond}`);

  // A view that changes without an event still reaches the workers (periodic check).
  const third = testRegistry();
  third.version = 3;
  third.services.set('ns/web', { ...third.services.get('ns/web')!, clusterIPs: ['10.96.0.12'] });
  view.set(third, false);
  await waitFor('both workers at version 3', () => proxy.stats().udpWorkers.every((w) => w.registryVersion === 3));
  for (const r of await Promise.all(Array.from({ length: CLIENTS }, () => udpQuery(port, 'web', 'A')))) {
    assert.deepEqual(r.answers.map((a) => a.data), ['10.96.0.12']);
  }

  // Worker counts are folded into the main thread's stats and Prometheus registry.
  const total = 4 * CLIENTS;
  assert.equal(proxy.stats().queries.local, total);
  const metrics = await prom.metrics();
  assert.match(metrics, new RegExp(`weir_dns_queries_total\\{qtype="A",outcome="local"\\} ${total}\\n`));
  assert.match(metrics, new RegExp(`istio_agent_dns_requests_total ${total}\\n`));
  assert.match(metrics, new RegExp(`weir_dns_request_duration_seconds_count\\{outcome="local"\\} ${total}\\n`));
});

test('workers=2: upstream cache and single-flight hold across workers', { skip }, async (t) => {
  const upstream = await startFakeUpstream({
    'A slow.example': { delayMs: 300, answers: [{ name: 'slow.example', type: 'A', ttl: 60, data: '203.0.113.5' }] },
  });
  t.after(() => upstream.close());
  const port = randomPort();
  const proxy = await startDnsProxy({
    registry: mutableView(testRegistry()), podNamespace: 'ns', resolvConfPath: '/nonexistent', workers: 2,
    listen: { port, v6: null }, upstreams: [{ host: '127.0.0.1', port: upstream.port }], logger,
  });
  t.after(() => proxy.close());

  // Concurrent identical questions on both workers while the upstream is slow: one upstream query.
  const burst = await Promise.all(Array.from({ length: CLIENTS }, () => udpQuery(port, 'slow.example', 'A')));
  for (const r of burst) assert.deepEqual(r.answers.map((a) => a.data), ['203.0.113.5']);
  assert.ok(perWorker(proxy).every((n) => n > 0), `both workers took part: ${perWorker(proxy)}`);
  assert.equal(upstream.count('A', 'slow.example'), 1, 'single-flight across workers');

  // Afterwards, from either worker: cache hits, still one upstream query.
  const again = await Promise.all(Array.from({ length: CLIENTS }, () => udpQuery(port, 'slow.example', 'A')));
  for (const r of again) {
    assert.deepEqual(r.answers.map((a) => a.data), ['203.0.113.5']);
    assert.ok(r.answers[0].ttl <= 60);
  }
  assert.equal(upstream.count('A', 'slow.example'), 1, 'cache hits across workers');
  const q = proxy.stats().queries;
  assert.equal(q.forwarded + q.cached, 2 * CLIENTS);
  assert.ok(q.cached >= CLIENTS, `the second round is all cache hits (cached=${q.cached})`);
});

test('workers: close() stops the threads and frees the port; bad counts are refused by name', { skip }, async () => {
  const port = randomPort();
  const proxy = await startDnsProxy({
    registry: mutableView(testRegistry()), podNamespace: 'ns', resolvConfPath: '/nonexistent', workers: 3,
    listen: { port, v6: null }, upstreams: [{ host: '127.0.0.1', port: 9 }], logger,
  });
  assert.equal(proxy.stats().udpWorkers.length, 3);
  assert.equal((await udpQuery(port, 'web', 'A')).rcode, 'NOERROR');
  await proxy.close();
  // Every SO_REUSEPORT socket is closed: a plain (non-reuseport) bind of the port succeeds.
  const s = dgram.createSocket('udp4');
  await new Promise<void>((resolve, reject) => { s.once('error', reject); s.bind(port, '127.0.0.1', resolve); });
  s.close();

  for (const workers of [0, 1.5, 65]) {
    await assert.rejects(startDnsProxy({
      registry: mutableView(undefined), podNamespace: 'ns', resolvConfPath: '/nonexistent', workers,
      listen: { port: randomPort(), v6: null }, upstreams: [{ host: '127.0.0.1', port: 9 }], logger,
    }), /workers/);
  }
});
