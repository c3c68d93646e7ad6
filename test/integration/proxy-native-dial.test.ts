// The TCP chain's native dial path in the real proxy: plain-TCP upstreams
// are connected by the pump thread (src/proxy/tcp/native-dial.ts), in both
// proxies (outbound to the endpoint, inbound to the app from 127.0.0.6),
// with the chain's retry policy, metrics and access log fields intact.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { skipUnlessRoot } from '../support/netns.js';
import { until } from '../support/poll.js';
import { Cluster, readLine, service, slice, type Pod } from './proxy-harness.js';

const skip = skipUnlessRoot();
const VIP = '10.96.78.10';

let c: Cluster;
let client: Pod;
let server: Pod;
let outside: Pod;

interface Stats { retries: number; pump?: { nativeDials: number } }
const stats = async (p: Pod): Promise<Stats> => JSON.parse((await c.httpGet(p, 15000, '/stats')).body) as Stats;

before(async () => {
  if (skip) return;
  c = new Cluster();
  await c.startControlPlane();
  client = await c.addPod('client-7f9c8d6b5-qwert', 'store');
  server = await c.addPod('db-1', 'store');
  outside = await c.addPod('gone', 'elsewhere', { capture: false }); // no proxy: its port 9 refuses
  c.cp!.apply((b) => b.upsertService(service('db', 'store', VIP, [{ name: 'tcp-db', port: 5432 }])));
  c.cp!.apply((b) => b.upsertEndpointSlice(slice('db', 'store', 'db-a', [{ pod: outside }], [{ name: 'tcp-db', port: 9 }])));
  c.cp!.apply((b) => b.upsertEndpointSlice(slice('db', 'store', 'db-b', [{ pod: server }], [{ name: 'tcp-db', port: 8080 }])));
  await c.startApp(server);
  await Promise.all([c.startProxy(client, ['--access-log', 'json', '--no-dns']), c.startProxy(server, ['--access-log', 'json', '--no-dns'])]);
  await c.cp!.waitAcked(c.cp!.stats().version as number, 5000);
});

after(async () => { await c?.destroy(); });

test('declared-TCP connections are dialled by the pump thread in both proxies; a refusing endpoint is retried on the other', { skip }, async () => {
  const [c0, s0] = [await stats(client), await stats(server)];
  for (let i = 0; i < 6; i++) {
    const s = await c.connect(client, VIP, 5432);
    try { assert.equal(await readLine(s), 'hello from db-1'); } finally { s.destroy(); }
  }
  const [c1, s1] = [await stats(client), await stats(server)];
  assert.ok((c1.pump?.nativeDials ?? 0) - (c0.pump?.nativeDials ?? 0) >= 6, `client proxy native dials: ${JSON.stringify(c1.pump)}`);
  assert.ok((s1.pump?.nativeDials ?? 0) - (s0.pump?.nativeDials ?? 0) >= 6, `server proxy native dials: ${JSON.stringify(s1.pump)}`);
  assert.ok(c1.retries > c0.retries, 'least connections must have tried the refusing endpoint at least once in 6 connections');
  assert.ok(await c.metric(client, 'weir_proxy_upstream_connect_failures_total', { direction: 'outbound', reason: 'ECONNREFUSED' }) >= 1);
  // Counted when each pump reports its end (after the client's close): poll.
  await until('6 closed connections counted', async () => (await c.metric(client, 'istio_tcp_connections_closed_total', { destination_service_name: 'db', response_flags: '-' })) >= 6);
});

test('the access log lines of natively dialled connections carry the upstream host and local address (127.0.0.6 inbound)', { skip }, async () => {
  const s = await c.connect(client, VIP, 5432);
  try { assert.equal(await readLine(s), 'hello from db-1'); } finally { s.destroy(); }
  const entries = (p: Pod) => p.proxyLog.filter((l) => l.startsWith('{"start_time"')).map((l) => JSON.parse(l) as Record<string, unknown>);
  await until('the inbound access log line', () => entries(server).some((e) => e.upstream_local_address), { detail: () => c.logs() });
  const out = entries(client).filter((e) => e.upstream_host === `${server.ip4}:8080`).at(-1);
  assert.ok(out, `no outbound access log line for ${server.ip4}:8080:\n${client.proxyLog.slice(-10).join('\n')}`);
  assert.match(String(out.upstream_local_address), /^10\.[\d.]+:\d+$/);
  assert.equal(out.upstream_cluster, 'outbound|5432||db.store.svc.cluster.local');
  assert.ok(Number(out.bytes_sent) > 0);
  const inb = entries(server).filter((e) => e.upstream_host === '127.0.0.1:8080').at(-1);
  assert.ok(inb, `no inbound access log line:\n${server.proxyLog.slice(-10).join('\n')}`);
  assert.match(String(inb.upstream_local_address), /^127\.0\.0\.6:\d+$/);
});
