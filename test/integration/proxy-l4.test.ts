// weir proxy end to end on the real kernel: client pod → service VIP (routed
// by nothing in the kernel) → client proxy (UID 1337, outbound 15001) →
// server pod → server proxy (inbound 15006) → app on 127.0.0.1 from 127.0.0.6.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { Socket } from 'node:net';
import { skipUnlessRoot } from '../support/netns.js';
import { until } from '../support/poll.js';
import { Cluster, readLine, service, slice, type Pod } from './proxy-harness.js';

const skip = skipUnlessRoot();
const VIP = '10.96.77.10';
const PORTS = [{ name: 'http', port: 80 }];
const EP_PORTS = [{ name: 'http', port: 8080 }];

let c: Cluster;
let client: Pod;
let s1: Pod;
let s2: Pod;
let outside: Pod;

before(async () => {
  if (skip) return;
  const t0 = Date.now();
  c = new Cluster();
  await c.startControlPlane();
  client = await c.addPod('client-6d4cf56db6-abcde', 'shop');
  s1 = await c.addPod('server-1', 'shop');
  s2 = await c.addPod('server-2', 'shop');
  outside = await c.addPod('outside', 'elsewhere', { capture: false }); // not in the mesh: no capture, no proxy
  c.cp!.apply((b) => b.upsertService(service('web', 'shop', VIP, PORTS)));
  c.cp!.apply((b) => b.upsertEndpointSlice(slice('web', 'shop', 'web-a', [{ pod: s1 }], EP_PORTS)));
  await Promise.all([c.startApp(s1), c.startApp(s2), c.startApp(outside)]);
  await Promise.all([c.startProxy(client, ['--connect-timeout', '1s']), c.startProxy(s1), c.startProxy(s2)]);
  await until('three proxies connected', async () => c.cp!.stats().proxies instanceof Array && (c.cp!.stats().proxies as unknown[]).length === 3, { ms: 10000, everyMs: 50 });
  await c.cp!.waitAcked(c.cp!.stats().version as number, 5000);
  console.log(`# topology up in ${Date.now() - t0} ms`);
});

after(async () => { await c?.destroy(); });

async function greet(address: string, port: number): Promise<string> {
  const s = await c.connect(client, address, port);
  try {
    return await readLine(s);
  } finally {
    s.destroy();
  }
}

test('a connection to a service VIP reaches the app through both proxies, and both report it', { skip }, async () => {
  const before = await c.metric(client, 'istio_tcp_connections_opened_total', { reporter: 'source', destination_service: 'web.shop.svc.cluster.local' });
  const s = await c.connect(client, VIP, 80);
  assert.equal(await readLine(s), 'hello from server-1');
  s.resume();
  s.write('ping\n');
  // Echo proves the bytes went both ways through both proxies.
  const echo = await new Promise<string>((r) => s.once('data', (d: Buffer) => r(d.toString())));
  assert.equal(echo, 'ping\n');
  s.end();
  await once(s, 'close');
  await until('client closed metric', async () => (await c.metric(client, 'istio_tcp_connections_closed_total', { reporter: 'source', destination_service_name: 'web' })) >= 1, { ms: 3000, everyMs: 50 });
  assert.equal(await c.metric(client, 'istio_tcp_connections_opened_total', { reporter: 'source', destination_service: 'web.shop.svc.cluster.local', source_workload: 'client', source_workload_namespace: 'shop', destination_workload: 'server-1' }) - before, 1);
  // Istio's directions: received = request (client → server), sent = response (server → client).
  assert.ok(await c.metric(client, 'istio_tcp_received_bytes_total', { reporter: 'source', destination_service_name: 'web' }) >= 5);
  assert.ok(await c.metric(client, 'istio_tcp_sent_bytes_total', { reporter: 'source', destination_service_name: 'web' }) >= 'hello from server-1\nping\n'.length);
  await until('server closed metric', async () => (await c.metric(s1, 'istio_tcp_connections_closed_total', { reporter: 'destination' })) >= 1, { ms: 3000, everyMs: 50 });
  // The client pod backs no service, so without mTLS its workload is unknown at L4 (as in Istio without metadata exchange).
  assert.ok(await c.metric(s1, 'istio_tcp_connections_opened_total', { reporter: 'destination', destination_service_name: 'web', destination_workload: 'server-1', destination_workload_namespace: 'shop', connection_security_policy: 'none' }) >= 1);
});

test('the proxy\'s own upstream connections are not captured again (uid 1337 exempt)', { skip }, async () => {
  // If the client proxy's connection to server-1 were captured, it would loop
  // into its own 15001 and show as a passthrough with original dst = server-1.
  const passBefore = await c.metric(client, 'istio_tcp_connections_opened_total', { destination_service_name: 'PassthroughCluster' });
  assert.equal(await greet(VIP, 80), 'hello from server-1');
  const stats = JSON.parse((await c.httpGet(client, 15000, '/stats')).body) as { rejected: number };
  assert.equal(await c.metric(client, 'istio_tcp_connections_opened_total', { destination_service_name: 'PassthroughCluster' }), passBefore);
  assert.equal(stats.rejected, 0);
});

test('an address outside the mesh is passed through to the original destination', { skip }, async () => {
  assert.equal(await greet(outside.ip4, 8080), 'hello from outside');
  assert.ok(await c.metric(client, 'istio_tcp_connections_opened_total', { destination_service_name: 'PassthroughCluster', destination_workload: 'unknown' }) >= 1);
});

test('an endpoint that refuses is skipped: the connection is retried on another', { skip }, async () => {
  // "outside" runs no proxy; its port 9 refuses. Put it in the service with a port nothing listens on.
  c.cp!.apply((b) => b.upsertService(service('flaky', 'shop', '10.96.77.11', [{ name: 'tcp', port: 81 }])));
  c.cp!.apply((b) => b.upsertEndpointSlice({
    ...slice('flaky', 'shop', 'flaky-a', [{ pod: outside }], [{ name: 'tcp', port: 9 }]),
  }));
  c.cp!.apply((b) => b.upsertEndpointSlice(slice('flaky', 'shop', 'flaky-b', [{ pod: s2 }], [{ name: 'tcp', port: 8080 }])));
  await c.cp!.waitAcked(c.cp!.stats().version as number);
  const before = JSON.parse((await c.httpGet(client, 15000, '/stats')).body) as { retries: number };
  for (let i = 0; i < 6; i++) assert.equal(await greet('10.96.77.11', 81), 'hello from server-2');
  const afterStats = JSON.parse((await c.httpGet(client, 15000, '/stats')).body) as { retries: number };
  assert.ok(afterStats.retries > before.retries, 'least-connections with a random start must have hit the refusing endpoint at least once in 6 tries');
  assert.ok(await c.metric(client, 'weir_proxy_upstream_connect_failures_total', { direction: 'outbound', reason: 'ECONNREFUSED' }) >= 1);
});

/**
 * How a connection ended: its error, or undefined on a clean close. The reset
 * may come before the test's connect resolves (a fast proxy or a slow test
 * process), so a rejected connect counts too.
 */
function resetOf(connecting: Promise<Socket>): Promise<NodeJS.ErrnoException | undefined> {
  return connecting.then(
    (s) => new Promise((r) => { s.on('error', r); s.on('close', () => r(undefined)); s.resume(); }),
    (e: NodeJS.ErrnoException) => e,
  );
}

test('a service with only refusing endpoints resets the client instead of hanging', { skip }, async () => {
  c.cp!.apply((b) => b.upsertService(service('dead', 'shop', '10.96.77.12', [{ name: 'tcp', port: 82 }])));
  c.cp!.apply((b) => b.upsertEndpointSlice(slice('dead', 'shop', 'dead-a', [{ pod: outside }], [{ name: 'tcp', port: 9 }])));
  await c.cp!.waitAcked(c.cp!.stats().version as number);
  const err = await resetOf(c.connect(client, '10.96.77.12', 82));
  assert.equal(err?.code, 'ECONNRESET');
});

test('inbound to a port nothing listens on resets the client cleanly', { skip }, async () => {
  // Direct to server-1's pod IP: passthrough at the client, inbound capture at the server, nothing on 7777.
  const err = await resetOf(c.connect(client, s1.ip4, 7777));
  assert.equal(err?.code, 'ECONNRESET');
});

test('IPv6: a v6 service VIP reaches the app through both proxies (outbound 15001 and inbound 15006 over v6)', { skip }, async () => {
  const VIP6 = 'fd00:96::77:10';
  // The harness routes only v4 by default; a SYN to the VIP must leave the app for capture to take it.
  client.ns.ip('-6', 'route', 'replace', 'default', 'dev', 'eth0');
  c.cp!.apply((b) => b.upsertService({ metadata: { name: 'web6', namespace: 'shop' }, spec: { type: 'ClusterIP', clusterIP: VIP6, clusterIPs: [VIP6], ports: [{ name: 'http', port: 80, protocol: 'TCP' }] } }));
  c.cp!.apply((b) => b.upsertEndpointSlice({
    metadata: { name: 'web6-a', namespace: 'shop', labels: { 'kubernetes.io/service-name': 'web6' } },
    addressType: 'IPv6',
    endpoints: [{ addresses: [s1.ip6], conditions: { ready: true, serving: true, terminating: false }, targetRef: { kind: 'Pod', name: s1.name, namespace: 'shop' } }],
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  }));
  await c.cp!.waitAcked(c.cp!.stats().version as number, 5000);
  const inboundBefore = await c.metric(s1, 'istio_tcp_connections_opened_total', { reporter: 'destination', destination_service_name: 'web6' });
  const s = await c.connect(client, VIP6, 80);
  assert.equal(await readLine(s), 'hello from server-1');
  s.resume();
  s.write('ping6\n');
  assert.equal(await new Promise<string>((r) => s.once('data', (d: Buffer) => r(d.toString()))), 'ping6\n');
  s.destroy();
  assert.ok(await c.metric(client, 'istio_tcp_connections_opened_total', { reporter: 'source', destination_service: 'web6.shop.svc.cluster.local', destination_workload: 'server-1' }) >= 1);
  // The server's inbound proxy took it (its metric names the service from the v6 pod IP and port it was dialled on).
  assert.equal(await c.metric(s1, 'istio_tcp_connections_opened_total', { reporter: 'destination', destination_service_name: 'web6' }) - inboundBefore, 1);
  // Inbound over v6 to a port nothing listens on: a clean reset, as over v4.
  const err = await resetOf(c.connect(client, s1.ip6, 7777));
  assert.equal(err?.code, 'ECONNRESET');
});

test('endpoint added and removed in the registry: traffic follows within a second, open connections survive', { skip }, async () => {
  const longLived = await c.connect(client, VIP, 80);
  assert.equal(await readLine(longLived), 'hello from server-1');
  longLived.resume();
  let longErr: unknown;
  longLived.on('error', (e) => { longErr = e; });

  // Move the service from server-1 to server-2.
  const t0 = performance.now();
  c.cp!.apply((b) => b.upsertEndpointSlice(slice('web', 'shop', 'web-a', [{ pod: s2 }], EP_PORTS)));
  await until('traffic on server-2 within 1 s', async () => (await greet(VIP, 80)) === 'hello from server-2', { ms: 1000, everyMs: 50 });
  const followMs = performance.now() - t0;
  for (let i = 0; i < 5; i++) assert.equal(await greet(VIP, 80), 'hello from server-2');

  // Add server-1 back next to server-2 (a second slice): concurrent connections spread over both
  // (least connections: the long-lived one still counts on server-1).
  c.cp!.apply((b) => b.upsertEndpointSlice(slice('web', 'shop', 'web-b', [{ pod: s1 }], EP_PORTS)));
  await c.cp!.waitAcked(c.cp!.stats().version as number);
  const held = await Promise.all([0, 1, 2, 3].map(() => c.connect(client, VIP, 80)));
  const greetings = await Promise.all(held.map((s) => readLine(s)));
  for (const s of held) s.destroy();
  assert.deepEqual([...new Set(greetings)].sort(), ['hello from server-1', 'hello from server-2']);

  // Not ready → skipped.
  c.cp!.apply((b) => b.upsertEndpointSlice(slice('web', 'shop', 'web-b', [{ pod: s1, ready: false }], EP_PORTS)));
  await c.cp!.waitAcked(c.cp!.stats().version as number);
  for (let i = 0; i < 6; i++) assert.equal(await greet(VIP, 80), 'hello from server-2');

  // The connection opened before all this still works.
  longLived.write('still here\n');
  const echo = await new Promise<string>((r) => longLived.once('data', (d: Buffer) => r(d.toString())));
  assert.equal(echo, 'still here\n');
  assert.equal(longErr, undefined);
  longLived.destroy();
  const fanout = (c.cp!.stats().fanout as { p50Ms?: number; p99Ms?: number });
  console.log(`# endpoint change → traffic followed in ${followMs.toFixed(1)} ms; control-plane fan-out p50 ${fanout.p50Ms?.toFixed(2)} ms p99 ${fanout.p99Ms?.toFixed(2)} ms (3 proxies)`);
});

test('the proxy also serves DNS for cluster names from the same registry (15053)', { skip }, async () => {
  const out = client.ns.exec('dig', ['+short', '+time=2', '+tries=1', '@127.0.0.1', '-p', '15053', 'web.shop.svc.cluster.local', 'A']).trim();
  assert.equal(out, VIP);
});

test('admin endpoints and readiness report the registry', { skip }, async () => {
  const ready = await c.httpGet(client, 15021, '/healthz/ready');
  assert.equal(ready.status, 200);
  const clusters = JSON.parse((await c.httpGet(client, 15000, '/clusters')).body) as { version: number; clusters: { name: string }[] };
  assert.ok(clusters.clusters.some((x) => x.name === 'shop/web'));
  const dump = JSON.parse((await c.httpGet(client, 15000, '/config_dump')).body) as { agent: { identity: { name: string } }; originalDst: string };
  assert.equal(dump.agent.identity.name, 'client-6d4cf56db6-abcde');
  assert.equal(dump.originalDst, 'native');
  const proxies = c.cp!.stats().proxies as { pod: string; identifiedBy: string; ackedVersion: number }[];
  assert.deepEqual(proxies.map((p) => p.pod).sort(), ['shop/client-6d4cf56db6-abcde', 'shop/server-1', 'shop/server-2']);
  assert.ok(proxies.every((p) => p.identifiedBy === 'SO_PEERCRED' && p.ackedVersion === c.cp!.stats().version));
});
