// The DNS proxy on loopback with real sockets against a scriptable upstream:
// local answers, forwarding, cache, single-flight, truncation, failover.
import { test, after, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import { once } from 'node:events';
import dnsPacket from 'dns-packet';
import { Registry as PromRegistry } from 'prom-client';
import { startDnsProxy, type DnsProxy } from '../../src/dns/server.js';
import { registryFromJson, staticRegistryView } from '../../src/dns/static-registry.js';
import { parseResolvConf } from '../../src/dns/resolv-conf.js';
import { createLogger } from '../../src/common/log.js';
import type { Registry } from '../../src/controlplane/types.js';
import {
  encodeQuery, randomPort, rcodeOf, RCODE, startFakeUpstream, tcpQueries, testRegistry, udpQuery, udpRaw, type FakeUpstream, decode, type Decoded,
} from './dns-support.js';

const logger = createLogger({ name: 'dns-test', fd: 2, level: 'warn' });

describe('dns proxy on loopback', () => {
  let upstream: FakeUpstream;
  let proxy: DnsProxy;
  let port: number;
  let dir: string;
  const metrics = new PromRegistry();

  before(async () => {
    upstream = await startFakeUpstream({
      'A ext.example': { answers: [{ name: 'ext.example', type: 'A', ttl: 120, data: '203.0.113.7' }] },
      'A cached.example': { answers: [{ name: 'cached.example', type: 'A', ttl: 120, data: '203.0.113.8' }] },
      'A slow.example': { delayMs: 300, answers: [{ name: 'slow.example', type: 'A', ttl: 120, data: '203.0.113.9' }] },
      'A dropped.example': { drop: true },
      'A broken.example': { rcode: 'SERVFAIL' },
      'TXT big.example': {
        answers: Array.from({ length: 12 }, (_, i) => ({ name: 'big.example', type: 'TXT', ttl: 60, data: `${i}-${'x'.repeat(100)}` } as dnsPacket.Answer)),
      },
      'A tc.example': { truncateUdp: true, answers: [{ name: 'tc.example', type: 'A', ttl: 60, data: '203.0.113.10' }] },
      'A web': { answers: [{ name: 'web', type: 'A', ttl: 5, data: '192.0.2.1' }] },
    });
    dir = mkdtempSync(join(tmpdir(), 'wd-'));
    writeFileSync(join(dir, 'resolv.conf'), 'nameserver 127.0.0.1\nsearch ns.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n');
    port = randomPort();
    proxy = await startDnsProxy({
      registry: staticRegistryView(testRegistry()),
      podNamespace: 'ns',
      resolvConfPath: join(dir, 'resolv.conf'),
      listen: { port, v6: null },
      upstreams: [{ host: '127.0.0.1', port: upstream.port }],
      upstreamTimeoutMs: 400,
      metrics,
      logger,
    });
  });
  after(async () => {
    await proxy?.close();
    await upstream?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const aData = (p: Decoded) => (p.answers ?? []).filter((a) => a.type === 'A' || a.type === 'AAAA').map((a) => a.data as string).sort();

  test('service by FQDN, name.ns.svc, name.ns, bare name: authoritative, TTL 30, any case', async () => {
    for (const name of ['web.ns.svc.cluster.local', 'web.ns.svc', 'web.ns', 'web', 'WeB.Ns.SVC.cluster.LOCAL']) {
      const r = await udpQuery(port, name, 'A');
      assert.equal(r.rcode, 'NOERROR', name);
      assert.ok(r.flag_aa, `${name}: AA`);
      assert.deepEqual(aData(r), ['10.96.0.10'], name);
      assert.equal(r.answers![0].ttl, 30);
      assert.equal(r.questions![0].name, name, 'question echoed in the client\'s case');
    }
    assert.equal(upstream.count('A', 'web'), 0, 'bare name never went upstream');
  });

  test('name joined with the first search domain → CNAME to the FQDN plus its records', async () => {
    const r = await udpQuery(port, 'api.other.ns.svc.cluster.local', 'A');
    assert.equal(r.rcode, 'NOERROR');
    assert.equal(r.answers![0].type, 'CNAME');
    assert.equal(r.answers![0].data, 'api.other.svc.cluster.local');
    assert.deepEqual(aData(r), ['10.96.0.20']);
    const six = await udpQuery(port, 'api.other.ns.svc.cluster.local', 'AAAA');
    assert.deepEqual(aData(six), ['fd00::20']);
  });

  test('headless: every ready endpoint, shuffled', async () => {
    const orders = new Set<string>();
    for (let i = 0; i < 30; i++) {
      const r = await udpQuery(port, 'db.ns.svc.cluster.local', 'A');
      assert.deepEqual(aData(r), ['10.1.0.1', '10.1.0.2', '10.1.0.3']);
      orders.add(r.answers!.map((a) => a.data).join(','));
    }
    assert.ok(orders.size > 1, 'answers are shuffled');
  });

  test('StatefulSet pod hostname under a headless service answers that pod only', async () => {
    const r = await udpQuery(port, 'db-1.db.ns.svc.cluster.local', 'A');
    assert.equal(r.rcode, 'NOERROR');
    assert.deepEqual(aData(r), ['10.1.0.2']);
    assert.deepEqual(aData(await udpQuery(port, 'db-0.db.ns.svc.cluster.local', 'A')), ['10.1.0.1']);
    // A hostname whose pod is not ready is not answered locally.
    await udpQuery(port, 'db-9.db.ns.svc.cluster.local', 'A');
    assert.equal(upstream.count('A', 'db-9.db.ns.svc.cluster.local'), 1);
  });

  test('known name without a record of the type → NOERROR empty with SOA, never NXDOMAIN', async () => {
    for (const type of ['AAAA', 'TXT', 'MX'] as const) {
      const r = await udpQuery(port, 'web.ns.svc.cluster.local', type);
      assert.equal(r.rcode, 'NOERROR', type);
      assert.equal(r.answers!.length, 0, type);
      assert.equal(r.authorities![0].type, 'SOA', type);
    }
  });

  test('ExternalName: CNAME plus the target records, in-cluster and upstream', async () => {
    const inCluster = await udpQuery(port, 'alias.ns.svc.cluster.local', 'A');
    assert.equal(inCluster.answers![0].type, 'CNAME');
    assert.deepEqual(aData(inCluster), ['10.96.0.20']);
    const external = await udpQuery(port, 'outside', 'A');
    assert.equal(external.answers![0].data, 'ext.example');
    assert.deepEqual(aData(external), ['203.0.113.7']);
  });

  test('forwarded once, then a cache hit with ID rewritten and TTL decremented', async () => {
    const first = await udpQuery(port, 'cached.example', 'A', { id: 111 });
    assert.equal(first.id, 111);
    assert.deepEqual(aData(first), ['203.0.113.8']);
    assert.equal(first.flag_aa, false);
    await new Promise((r) => setTimeout(r, 1100));
    const second = await udpQuery(port, 'CACHED.example', 'A', { id: 222 });
    assert.equal(second.id, 222);
    assert.equal(second.questions![0].name, 'CACHED.example');
    assert.deepEqual(aData(second), ['203.0.113.8']);
    assert.ok(second.answers![0].ttl! <= 119, `TTL decremented (got ${second.answers![0].ttl})`);
    assert.equal(upstream.count('A', 'cached.example'), 1, 'upstream saw one query');
  });

  test('NXDOMAIN cached per RFC 2308 (SOA minimum)', async () => {
    const a = await udpQuery(port, 'nope.example', 'A');
    assert.equal(a.rcode, 'NXDOMAIN');
    const b = await udpQuery(port, 'nope.example', 'A');
    assert.equal(b.rcode, 'NXDOMAIN');
    assert.equal(upstream.count('A', 'nope.example'), 1);
  });

  test('single-flight: concurrent identical questions share one upstream query', async () => {
    const rs = await Promise.all(Array.from({ length: 25 }, (_, i) => udpQuery(port, 'slow.example', 'A', { id: i })));
    rs.forEach((r, i) => { assert.equal(r.id, i); assert.deepEqual(aData(r), ['203.0.113.9']); });
    assert.equal(upstream.count('A', 'slow.example'), 1);
  });

  test('upstream silent → SERVFAIL within the timeout; upstream SERVFAIL passed on, not cached', async () => {
    const t0 = Date.now();
    const r = await udpQuery(port, 'dropped.example', 'A');
    const took = Date.now() - t0;
    assert.equal(r.rcode, 'SERVFAIL');
    assert.ok(took >= 350 && took < 1500, `answered after ${took} ms`);
    await udpQuery(port, 'broken.example', 'A');
    const again = await udpQuery(port, 'broken.example', 'A');
    assert.equal(again.rcode, 'SERVFAIL');
    assert.equal(upstream.count('A', 'broken.example'), 2);
  });

  test('EDNS size respected: TC without EDNS, full with EDNS 4096 and over TCP', async () => {
    const small = await udpQuery(port, 'big.example', 'TXT');
    assert.ok(small.flag_tc, 'truncated at 512');
    assert.ok(small.raw.length <= 512);
    const large = await udpQuery(port, 'big.example', 'TXT', { edns: 4096 });
    assert.equal(large.flag_tc, false);
    assert.equal(large.answers!.length, 12);
    const [tcp] = await tcpQueries(port, [encodeQuery('big.example', 'TXT')]);
    assert.equal(decode(tcp).answers!.length, 12);
  });

  test('upstream TC → retried over TCP', async () => {
    const r = await udpQuery(port, 'tc.example', 'A');
    assert.deepEqual(aData(r), ['203.0.113.10']);
    assert.equal(upstream.count('A', 'tc.example', 'udp'), 1);
    assert.equal(upstream.count('A', 'tc.example', 'tcp'), 1);
  });

  test('TCP: several pipelined queries on one connection', async () => {
    const qs = [encodeQuery('web', 'A', { id: 1 }), encodeQuery('db.ns', 'A', { id: 2 }), encodeQuery('ext.example', 'A', { id: 3 })];
    const rs = (await tcpQueries(port, qs)).map((b) => decode(b)).sort((a, b) => a.id! - b.id!);
    assert.deepEqual(rs.map((r) => r.id), [1, 2, 3]);
    assert.deepEqual(aData(rs[0]), ['10.96.0.10']);
    assert.equal(rs[1].answers!.length, 3);
    assert.deepEqual(aData(rs[2]), ['203.0.113.7']);
  });

  test('malformed question → FORMERR; non-QUERY opcode → NOTIMP', async () => {
    const bad = Buffer.from(encodeQuery('web', 'A', { id: 9 }));
    bad.writeUInt16BE(2, 4); // QDCOUNT 2, only one present
    assert.equal(rcodeOf(await udpRaw(port, bad)), RCODE.FORMERR);
    const notify = Buffer.from(encodeQuery('web', 'A', { id: 10 }));
    notify[2] = (notify[2] & 0x87) | (4 << 3); // opcode NOTIFY
    assert.equal(rcodeOf(await udpRaw(port, notify)), RCODE.NOTIMP);
  });

  test('metrics count queries by type and outcome', async () => {
    const text = await metrics.metrics();
    for (const outcome of ['local', 'forwarded', 'cached', 'failed']) {
      assert.match(text, new RegExp(`weir_dns_queries_total\\{qtype="[A-Z]+",outcome="${outcome}"\\} [1-9]`), outcome);
    }
    assert.match(text, /weir_dns_cache_entries [1-9]/);
    assert.match(text, /weir_dns_request_duration_seconds_bucket\{le="0.0001",outcome="local"\} \d/);
    assert.match(text, /weir_dns_request_duration_seconds_count\{outcome="local"\} [1-9]/);
    assert.match(text, /istio_agent_dns_requests_total [1-9]/);
    assert.ok(proxy.stats().queries.cached > 0);
  });

  test('a proxy restarted on the same metrics registry registers again', async () => {
    const shared = new PromRegistry();
    const opts = { registry: staticRegistryView(testRegistry()), podNamespace: 'ns', resolvConfPath: '/nonexistent', upstreams: [{ host: '127.0.0.1', port: 9 }], metrics: shared, logger };
    const first = await startDnsProxy({ ...opts, listen: { port: randomPort(), v6: null } });
    await first.close();
    assert.doesNotMatch(await shared.metrics(), /weir_dns_queries_total/);
    const second = await startDnsProxy({ ...opts, listen: { port: randomPort(), v6: null } });
    await second.close();
  });
});

describe('dns proxy edge cases', () => {
  test('before the first registry snapshot everything is forwarded', async (t) => {
    const upstream = await startFakeUpstream({ 'A web': { answers: [{ name: 'web', type: 'A', ttl: 5, data: '192.0.2.1' }] } });
    t.after(() => upstream.close());
    const port = randomPort();
    const proxy = await startDnsProxy({
      registry: staticRegistryView(undefined), podNamespace: 'ns', resolvConfPath: '/nonexistent',
      listen: { port, v6: null }, upstreams: [{ host: '127.0.0.1', port: upstream.port }], logger,
    });
    t.after(() => proxy.close());
    const r = await udpQuery(port, 'web', 'A');
    assert.equal(r.rcode, 'NOERROR');
    assert.deepEqual(r.answers!.map((a) => a.data), ['192.0.2.1']);
    assert.equal(upstream.count('A', 'web'), 1);
  });

  // In-thread UDP (workers: 1) reads the view on every query, so even a view
  // that never emits 'update' takes effect at once. UDP worker threads get
  // snapshots by message: see dns-workers.test.ts.
  test('a new registry snapshot takes effect at once, over cached and non-local answers', async (t) => {
    const upstream = await startFakeUpstream({});
    t.after(() => upstream.close());
    let current: Registry | undefined = testRegistry();
    const view = { current: () => current, on: () => view };
    const port = randomPort();
    const proxy = await startDnsProxy({
      registry: view, podNamespace: 'ns', resolvConfPath: '/nonexistent',
      listen: { port, v6: null }, upstreams: [{ host: '127.0.0.1', port: upstream.port }], logger, udpThreads: 0,
    });
    t.after(() => proxy.close());
    assert.equal((await udpQuery(port, 'late.ns.svc.cluster.local', 'A')).rcode, 'NXDOMAIN');
    assert.equal((await udpQuery(port, 'late.ns.svc.cluster.local', 'A')).rcode, 'NXDOMAIN');
    assert.equal(upstream.count('A', 'late.ns.svc.cluster.local'), 1, 'second one from the negative cache');
    assert.deepEqual((await udpQuery(port, 'web', 'A')).answers.map((a) => a.data), ['10.96.0.10']);

    const next = testRegistry();
    next.version = 8;
    next.services.set('ns/late', { namespace: 'ns', name: 'late', kind: 'ClusterIP', clusterIPs: ['10.96.0.99'], ports: [], endpoints: [] });
    next.services.set('ns/web', { ...next.services.get('ns/web')!, clusterIPs: ['10.96.0.11'] });
    current = next;
    const late = await udpQuery(port, 'late.ns.svc.cluster.local', 'A');
    assert.equal(late.rcode, 'NOERROR');
    assert.deepEqual(late.answers.map((a) => a.data), ['10.96.0.99']);
    assert.deepEqual((await udpQuery(port, 'web', 'A')).answers.map((a) => a.data), ['10.96.0.11'], 'pre-encoded answers dropped');
    assert.equal(proxy.stats().registryVersion, 8);
  });

  test('fails over to the next upstream when the first is silent', async (t) => {
    const dead = await startFakeUpstream({ '* ext.example': { drop: true } });
    const live = await startFakeUpstream({ 'A ext.example': { answers: [{ name: 'ext.example', type: 'A', ttl: 60, data: '203.0.113.7' }] } });
    t.after(async () => { await dead.close(); await live.close(); });
    const port = randomPort();
    const proxy = await startDnsProxy({
      registry: staticRegistryView(testRegistry()), podNamespace: 'ns', resolvConfPath: '/nonexistent',
      listen: { port, v6: null }, upstreamTimeoutMs: 1000, logger,
      upstreams: [{ host: '127.0.0.1', port: dead.port }, { host: '127.0.0.1', port: live.port }],
    });
    t.after(() => proxy.close());
    const r = await udpQuery(port, 'ext.example', 'A');
    assert.deepEqual(r.answers!.map((a) => a.data), ['203.0.113.7']);
    assert.equal(dead.count('A', 'ext.example'), 1);
    assert.equal(live.count('A', 'ext.example'), 1);
  });

  test('IPv6 upstream, with the TCP retry over IPv6', async (t) => {
    const upstream = await startFakeUpstream({
      'A v6.example': { answers: [{ name: 'v6.example', type: 'A', ttl: 60, data: '203.0.113.6' }] },
      'A tc6.example': { truncateUdp: true, answers: [{ name: 'tc6.example', type: 'A', ttl: 60, data: '203.0.113.16' }] },
    }, '::1');
    t.after(() => upstream.close());
    const port = randomPort();
    const proxy = await startDnsProxy({
      registry: staticRegistryView(testRegistry()), podNamespace: 'ns', resolvConfPath: '/nonexistent',
      listen: { port, v6: null }, upstreams: [{ host: '::1', port: upstream.port }], logger,
    });
    t.after(() => proxy.close());
    assert.deepEqual((await udpQuery(port, 'v6.example', 'A')).answers.map((a) => a.data), ['203.0.113.6']);
    assert.deepEqual((await udpQuery(port, 'tc6.example', 'A')).answers.map((a) => a.data), ['203.0.113.16']);
    assert.equal(upstream.count('A', 'tc6.example', 'tcp'), 1);
  });

  test('listens on ::1 too (UDP and TCP)', async (t) => {
    const port = randomPort();
    const proxy = await startDnsProxy({
      registry: staticRegistryView(testRegistry()), podNamespace: 'ns', resolvConfPath: '/nonexistent',
      listen: { port }, upstreams: [{ host: '127.0.0.1', port: 9 }], logger,
    });
    t.after(() => proxy.close());
    assert.deepEqual(proxy.addresses().udp.map((a) => a.address).sort(), ['127.0.0.1', '::1']);
    const r = await udpQuery(port, 'web', 'A', {}, '::1');
    assert.deepEqual(r.answers!.map((a) => a.data), ['10.96.0.10']);
    const [tcp] = await tcpQueries(port, [encodeQuery('web', 'A')], '::1');
    assert.deepEqual(decode(tcp).answers!.map((a) => a.data), ['10.96.0.10']);
  });

  test('idle TCP connections are closed by the server', async (t) => {
    const port = randomPort();
    const proxy = await startDnsProxy({
      registry: staticRegistryView(testRegistry()), podNamespace: 'ns', resolvConfPath: '/nonexistent',
      listen: { port, v6: null }, upstreams: [{ host: '127.0.0.1', port: 9 }], tcpIdleTimeoutMs: 300, logger,
    });
    t.after(() => proxy.close());
    const c = net.connect({ port, host: '127.0.0.1' });
    t.after(() => c.destroy());
    await once(c, 'connect');
    const t0 = Date.now();
    await once(c, 'close');
    const idle = Date.now() - t0;
    assert.ok(idle >= 250 && idle < 2000, `closed after ${idle} ms`);
  });

  test('bad options name the field', async () => {
    await assert.rejects(startDnsProxy({ registry: staticRegistryView(undefined), podNamespace: '' }), /podNamespace/);
    await assert.rejects(startDnsProxy({ registry: staticRegistryView(undefined), podNamespace: 'ns', resolvConfPath: '/nonexistent/resolv.conf' }), /resolvConfPath/);
    assert.throws(() => parseResolvConf('nameserver nope\n', 'rc'), /rc:1 nameserver.*"nope"/);
    assert.throws(() => registryFromJson('{"clusterDomain":"cluster.local","services":[{"namespace":"a","name":"b","kind":"ClusterIP","clusterIPs":["x"]}]}', 'reg'), /reg.services\[0\].clusterIPs/);
    assert.throws(() => registryFromJson('{"clusterDomain":"cluster.local","services":[{"namespace":"a","name":"b","kind":"Nope"}]}', 'reg'), /reg.services\[0\].kind/);
    assert.throws(() => registryFromJson('{"services":[]}', 'reg'), /reg.clusterDomain/);
    assert.throws(() => parseResolvConf('search a\n', 'rc'), /rc nameserver/);
    const rc = parseResolvConf('# c\nnameserver 10.0.0.10\nnameserver fd00::a\nsearch NS.svc.cluster.local. svc.cluster.local\noptions ndots:5 timeout:1\n');
    assert.deepEqual(rc.nameservers.map((n) => n.host), ['10.0.0.10', 'fd00::a']);
    assert.deepEqual(rc.search, ['ns.svc.cluster.local', 'svc.cluster.local']);
    assert.equal(rc.ndots, 5);
  });
});
