// TCP semantics through two weir proxies on the real kernel: half-close both
// ways, a 1 GiB checksummed transfer, 1000 concurrent connections, max
// connections, idle timeout, passthrough without an agent, drain on SIGTERM.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import type net from 'node:net';
import { skipUnlessRoot } from '../support/netns.js';
import { Cluster, readAll, readLine, service, slice, waitForLine, type Pod } from './proxy-harness.js';

const skip = skipUnlessRoot();
const VIP = '10.96.88.10';

let c: Cluster;
let client: Pod;
let server: Pod;

before(async () => {
  if (skip) return;
  c = new Cluster();
  await c.startControlPlane();
  client = await c.addPod('client', 'tcp');
  server = await c.addPod('server', 'tcp');
  c.cp!.apply((b) => b.upsertService(service('svc', 'tcp', VIP, [{ name: 'echo', port: 80 }, { name: 'sink', port: 81 }, { name: 'bye', port: 82 }])));
  c.cp!.apply((b) => b.upsertEndpointSlice(slice('svc', 'tcp', 'svc-a', [{ pod: server }], [{ name: 'echo', port: 8080 }, { name: 'sink', port: 8081 }, { name: 'bye', port: 8082 }])));
  await c.startApp(server);
  await Promise.all([c.startProxy(client, ['--no-access-log']), c.startProxy(server, ['--no-access-log'])]);
  for (let i = 0; i < 200 && (c.cp!.stats().proxies as unknown[]).length < 2; i++) await new Promise((r) => setTimeout(r, 50));
  await c.cp!.waitAcked(c.cp!.stats().version as number);
});

after(async () => { await c?.destroy(); });

test('half-close, client first: the server still answers after the client\'s FIN', { skip }, async () => {
  const s = await c.connect(client, VIP, 81);
  s.end('some request bytes');
  const reply = await readAll(s);
  const want = createHash('sha256').update('some request bytes').digest('hex');
  assert.equal(reply, `server 18 ${want}\n`);
});

test('half-close, server first: the client can still send after the server\'s FIN', { skip, timeout: 15_000 }, async () => {
  const got = waitForLine(server.app!, /8082 got 11/, 5000);
  const s = await c.connect(client, VIP, 82);
  assert.equal(await readAll(s), 'bye\n'); // the server's FIN arrived
  s.end('after-close'); // 11 bytes still flow the other way
  const closed = s.closed ? Promise.resolve() : once(s, 'close');
  await got;
  await closed;
});

test('1 GiB through both proxies arrives intact (sha256)', { skip, timeout: 240_000 }, async () => {
  const total = 1024 * 1024 * 1024;
  const block = Buffer.alloc(1024 * 1024);
  for (let i = 0; i < block.length; i += 4) block.writeUInt32LE((i * 2654435761) >>> 0, i);
  const h = createHash('sha256');
  const s = await c.connect(client, VIP, 81);
  const replyP = readAll(s);
  const t0 = performance.now();
  for (let sent = 0, n = 0; sent < total; sent += block.length, n++) {
    block.writeUInt32LE(n, 0); // every MiB differs, so reordering or duplication changes the hash
    h.update(block);
    if (!s.write(Buffer.from(block))) await once(s, 'drain');
  }
  s.end();
  const reply = await replyP;
  const secs = (performance.now() - t0) / 1000;
  assert.equal(reply, `server ${total} ${h.digest('hex')}\n`);
  console.log(`# 1 GiB through two proxies in ${secs.toFixed(1)} s (${(total / secs / 1e6).toFixed(0)} MB/s, including hashing on both ends)`);
});

test('1000 concurrent connections, each echoing its own bytes', { skip, timeout: 120_000 }, async () => {
  const N = 1000;
  const socks: net.Socket[] = [];
  try {
    // Open in batches: the native connect runs one thread per call.
    for (let i = 0; i < N; i += 100) socks.push(...await Promise.all(Array.from({ length: Math.min(100, N - i) }, () => c.connect(client, VIP, 80))));
    const greetings = await Promise.all(socks.map((s) => readLine(s)));
    assert.ok(greetings.every((g) => g === 'hello from server'));
    const stats = JSON.parse((await c.httpGet(client, 15000, '/stats')).body) as { active: number };
    assert.ok(stats.active >= N, `client proxy holds ${stats.active} connections at once`);
    const echoes = await Promise.all(socks.map((s, i) => {
      s.resume();
      const want = `conn-${i}\n`;
      let got = '';
      return new Promise<string>((resolve) => {
        s.on('data', (d: Buffer) => { got += d.toString(); if (got.length >= want.length) resolve(got); });
        s.write(want);
      });
    }));
    echoes.forEach((e, i) => assert.equal(e, `conn-${i}\n`));
  } finally {
    for (const s of socks) s.destroy();
  }
});

test('max connections: the connection over the limit is refused, the others keep working', { skip, timeout: 15_000 }, async () => {
  const limited = await c.addPod('limited', 'tcp');
  await c.startProxy(limited, ['--max-connections', '2', '--idle-timeout', '600ms']);
  const errors: string[] = [];
  const a = await c.connect(limited, VIP, 80);
  const b = await c.connect(limited, VIP, 80);
  for (const x of [a, b]) x.on('error', (e: NodeJS.ErrnoException) => errors.push(e.code ?? String(e)));
  assert.equal(await readLine(a), 'hello from server');
  assert.equal(await readLine(b), 'hello from server');
  // The kernel completes the handshake before the proxy accepts and resets, so
  // the reset can land either before the connecting thread reads SO_ERROR
  // (connect fails with ECONNRESET) or after it (the socket closes unread).
  const third = await c.connect(limited, VIP, 80).catch((e: NodeJS.ErrnoException) => {
    assert.equal(e.code, 'ECONNRESET', `the refused connection is reset, not ${e.code}`);
    return undefined;
  });
  if (third) {
    third.on('error', () => {});
    third.resume();
    // Reset by the proxy (events.once would reject on the 'error' that precedes 'close').
    await new Promise((r) => third.once('close', r));
    assert.equal(third.bytesRead, 0, 'nothing from the app on the refused connection');
  }
  assert.ok(await c.metric(limited, 'weir_proxy_rejected_connections_total', { reason: 'max_connections' }) >= 1);

  // Idle timeout (600 ms): both held connections are closed by the proxy.
  for (const x of [a, b]) x.resume();
  const t0 = Date.now();
  await Promise.all([a, b].map((x) => (x.closed ? undefined : new Promise((r) => { x.once('end', r); x.once('close', r); }))));
  a.destroy(); b.destroy();
  assert.deepEqual(errors, [], 'idle close is a clean FIN, not a reset');
  assert.ok(Date.now() - t0 < 3000);
  assert.ok(await c.metric(limited, 'istio_tcp_connections_closed_total', { response_flags: 'IT' }) >= 2);
});

test('status port 15020: another pod cannot stop the proxy with POST /quitquitquit; the pod itself can', { skip, timeout: 30_000 }, async () => {
  const victim = await c.addPod('victim', 'tcp');
  await c.startProxy(victim, ['--no-access-log']);
  const quit = async (s: net.Socket): Promise<string> => {
    s.end('POST /quitquitquit HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    return (await readAll(s)).split('\r\n')[0];
  };
  // 15020 is excluded from inbound capture: this reaches the status server directly, from the client pod's IP.
  assert.equal(await quit(await c.connect(client, victim.ip4, 15020)), 'HTTP/1.1 403 Forbidden');
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(victim.proxy!.exitCode, null, 'the proxy is still running');
  assert.equal((await c.httpGet(victim, 15021, '/healthz/ready')).status, 200);
  const exited = once(victim.proxy!, 'exit');
  assert.equal(await quit(await c.connect(victim, '127.0.0.1', 15020)), 'HTTP/1.1 200 OK');
  await exited;
});

test('without an agent the proxy passes traffic to the original destination and becomes ready', { skip }, async () => {
  const lonely = await c.addPod('lonely', 'tcp');
  await c.startProxy(lonely, ['--control-plane-socket', '/nonexistent/weir.sock', '--ready-without-agent', '1s']);
  // Direct to the server pod IP: passthrough here, inbound capture there.
  const s = await c.connect(lonely, server.ip4, 8080);
  assert.equal(await readLine(s), 'hello from server');
  s.destroy();
  // A VIP means nothing without the registry: it is passed through too (and goes nowhere), never blackholed in the proxy.
  await new Promise((r) => setTimeout(r, 1100));
  const ready = await c.httpGet(lonely, 15021, '/healthz/ready');
  assert.equal(ready.status, 200);
  assert.match(ready.body, /passing traffic through/);
});

test('SIGTERM: not ready, new connections refused, open ones finish, then exit 0', { skip, timeout: 20_000 }, async () => {
  const draining = await c.addPod('draining', 'tcp');
  await c.startProxy(draining, ['--drain-timeout', '10s']);
  const open = await c.connect(draining, VIP, 80);
  assert.equal(await readLine(open), 'hello from server');
  const openErrors: string[] = [];
  open.on('error', (e: NodeJS.ErrnoException) => openErrors.push(e.code ?? String(e)));
  open.resume();
  const exited = once(draining.proxy!, 'exit');
  draining.proxy!.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 300));
  // The listener is closed: a new captured connection is refused by the kernel.
  await assert.rejects(c.connect(draining, VIP, 80));
  // The open connection still works.
  const echo = new Promise<string>((r) => open.once('data', (d: Buffer) => r(d.toString())));
  open.write('during drain\n');
  assert.equal(await echo, 'during drain\n');
  open.end();
  const [code] = await exited;
  assert.equal(code, 0);
  assert.deepEqual(openErrors, []);
});
