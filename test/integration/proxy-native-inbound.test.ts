// Native inbound (native/src/l4_inbound.cc, src/proxy/native-l4/inbound.ts):
// connections captured to 15006 for a declared-TCP app port are accepted,
// peeked, dialled (from 127.0.0.6) and pumped by the server proxy's pump
// thread — proven by its own counters — and report exactly what the
// JavaScript inbound path reports for the same traffic (a second server
// proxy with --native-accept off, side by side). A TLS first byte, an HTTP
// port, a STRICT port and an AuthorizationPolicy stay JavaScript's (fail
// closed); a server-first app works after the peek timeout; hostile peers
// during the peek leak nothing.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { once } from 'node:events';
import type { ChildProcess } from 'node:child_process';
import type { Socket } from 'node:net';
import { skipUnlessRoot } from '../support/netns.js';
import type { SecuritySource } from '../../src/controlplane/v2/security-feed.js';
import { compileSecurity } from '../../src/security/compile.js';
import { securityItems } from '../../src/security/items.js';
import { readSecurityResource } from '../../src/security/read.js';
import type { SecurityResource } from '../../src/security/types.js';
import { until } from '../support/poll.js';
import { Cluster, service, slice, waitForLine, type Pod } from './proxy-harness.js';

const skip = skipUnlessRoot();
// Each server pod's app: 7000 answers the first line with who connected, then echoes;
// 7001 speaks first (a server-first protocol), then echoes; 7080 is HTTP.
const APP = `
const net = require('node:net');
const who = (s) => String(s.remoteAddress).replace(/^::ffff:/, '');
net.createServer({ allowHalfOpen: true }, (s) => {
  s.on('error', () => {});
  s.on('end', () => s.end()); // a client that leaves without a word is answered with a close
  s.once('data', (d) => { s.write('from ' + who(s) + '\\n'); s.write(d); s.pipe(s); });
}).listen(7000, '::');
net.createServer({ allowHalfOpen: true }, (s) => { s.on('error', () => {}); s.write('first ' + who(s) + '\\n'); s.pipe(s); }).listen(7001, '::');
require('node:http').createServer((q, r) => r.end('http from ' + who(q.socket))).listen(7080, '::', () => console.log('app ready'));
`;
const VIP = { n: '10.96.82.10', j: '10.96.82.11', first: '10.96.82.12', web: '10.96.82.13', strict: '10.96.82.14', a: '10.96.82.15' };
const NS = 'shop';

let c: Cluster;
let client: Pod;
let outside: Pod;
const servers: Record<'n' | 'j' | 's' | 'a', Pod> = {} as never;
const apps: ChildProcess[] = [];

interface NativeAccept { accepted: number; native: number; handedOff: number; dropped: number; active: number; foldedSeries: number }
const nativeOf = async (pod: Pod): Promise<NativeAccept> => {
  const s = JSON.parse((await c.httpGet(pod, 15000, '/stats')).body) as { pump?: { nativeAccept?: NativeAccept } };
  assert.ok(s.pump?.nativeAccept, `${pod.name} runs the native accept path: ${JSON.stringify(s.pump)}`);
  return s.pump.nativeAccept;
};
const fds = (pod: Pod) => readdirSync(`/proc/${pod.proxy!.pid}/fd`).length;

/** Lines from `s` (however the bytes are split into reads) until `n` have come. */
function lines(s: Socket, n: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const on = (d: Buffer) => {
      buf += d.toString('latin1');
      const got = buf.split('\n');
      if (got.length > n) { s.off('data', on); resolve(got.slice(0, n)); }
    };
    s.on('data', on);
    s.once('error', reject);
    s.once('end', () => reject(new Error(`ended after ${JSON.stringify(buf)}`)));
  });
}

/** One client-first exchange through both proxies: `line` out, the app's "from …" and the echo back. */
async function exchange(ip: string, port: number, line = 'ping'): Promise<string> {
  const s = await c.connect(client, ip, port);
  try {
    const got = lines(s, 2);
    s.write(`${line}\n`);
    const [from, echo] = await got;
    assert.equal(echo, line);
    s.end();
    await once(s, 'close');
    return from;
  } finally { s.destroy(); }
}

/** The istio_tcp_* series of a proxy, reporter=destination, with the workload-specific names replaced by X. */
async function inboundSeries(pod: Pod, names: string[]): Promise<string[]> {
  const { body } = await c.httpGet(pod, 15090, '/stats/prometheus');
  return body.split('\n')
    .filter((l) => l.startsWith('istio_tcp_') && l.includes('reporter="destination"'))
    .map((l) => names.reduce((acc, n) => acc.split(n).join('X'), l))
    .sort();
}

/** What the control plane pushes to server-s: set(), and every proxy of the namespace is recompiled and pushed. */
let serverSPolicies: SecurityResource[] = [];
let policiesChanged: () => void = () => {};
const policies: SecuritySource = {
  workloadKey: (id) => `${id.namespace}/${id.name}`,
  compile: (key) => securityItems(compileSecurity(key === `${NS}/server-s` ? serverSPolicies : [], { namespace: NS, labels: {} })),
  onChange: (cb) => { policiesChanged = cb; },
};
function setServerSPolicies(objs: unknown[]): void {
  serverSPolicies = objs.map((o) => { const r = readSecurityResource(o); assert.ok(r.resource, JSON.stringify(r.problems)); return r.resource; });
  policiesChanged();
}
const compiledMode = async () => (JSON.parse((await c.httpGet(servers.s, 15000, '/config_dump')).body) as { mesh: { compiled: { mode: string; deny: unknown[] } } }).mesh.compiled;

before(async () => {
  if (skip) return;
  c = new Cluster();
  // server-s's policies come from the control plane (the v2 Security kind), changed by the tests as they go.
  await c.startControlPlane({ security: policies });
  client = await c.addPod('client-6c9f7d5b4-qwert', NS);
  for (const k of ['n', 'j', 's', 'a'] as const) servers[k] = await c.addPod(`server-${k}`, NS);
  outside = await c.addPod('outside', 'elsewhere', { capture: false });
  const svc = (name: string, vip: string, pod: Pod, port: number, portName = 'tcp-echo') => {
    c.cp!.apply((b) => b.upsertService(service(name, NS, vip, [{ name: portName, port }])));
    c.cp!.apply((b) => b.upsertEndpointSlice(slice(name, NS, `${name}-a`, [{ pod }], [{ name: portName, port }])));
  };
  svc('client', '10.96.82.16', client, 7000); // so both servers know the client pod by its IP (source_* labels)
  svc('echo-n', VIP.n, servers.n, 7000);
  svc('echo-j', VIP.j, servers.j, 7000);
  svc('first', VIP.first, servers.n, 7001, 'tcp-first');
  svc('web', VIP.web, servers.n, 7080, 'http-web');
  svc('strict', VIP.strict, servers.s, 7000);
  svc('echo-a', VIP.a, servers.a, 7000);
  for (const p of Object.values(servers)) {
    const app = p.ns.spawn(process.execPath, ['-e', APP]);
    apps.push(app);
    await waitForLine(app, /app ready/, 5000);
  }
  await Promise.all([
    c.startProxy(client, ['--no-dns']),
    c.startProxy(servers.n, ['--no-dns', '--access-log', 'json']),
    c.startProxy(servers.j, ['--no-dns', '--access-log', 'json', '--native-accept', 'off']),
    c.startProxy(servers.s, ['--no-dns']),
    c.startProxy(servers.a, ['--no-dns']), // no access log: native telemetry as aggregated series
  ]);
  await c.cp!.waitAcked(c.cp!.stats().version as number, 5000);
});

after(async () => {
  for (const a of apps) a.kill('SIGKILL');
  await c?.destroy();
});

test('declared-TCP inbound is served by the pump thread, from 127.0.0.6, and reports what the JavaScript inbound path reports', { skip }, async () => {
  const before = { n: await nativeOf(servers.n), j: await nativeOf(servers.j).catch(() => undefined) };
  assert.equal(before.j, undefined, 'server-j runs without the native accept path (the reference)');
  for (let i = 0; i < 5; i++) {
    assert.equal(await exchange(VIP.n, 7000, `n${i}`), 'from 127.0.0.6');
    assert.equal(await exchange(VIP.j, 7000, `n${i}`), 'from 127.0.0.6');
  }
  const after = await nativeOf(servers.n);
  assert.equal(after.native - before.n.native, 5, `all five kept native on server-n: ${JSON.stringify({ before: before.n, after })}`);
  assert.equal(after.handedOff - before.n.handedOff, 0);
  // Same series, same values: the native path's telemetry is the JavaScript chain's.
  const names = ['server-n', 'server-j', 'echo-n', 'echo-j'];
  await until('server-n reported 5 closed', async () => (await inboundSeries(servers.n, names)).some((l) => l.startsWith('istio_tcp_connections_closed_total') && l.endsWith(' 5')), 5000);
  await until('server-j reported 5 closed', async () => (await inboundSeries(servers.j, names)).some((l) => l.startsWith('istio_tcp_connections_closed_total') && l.endsWith(' 5')), 5000);
  const [sn, sj] = [await inboundSeries(servers.n, names), await inboundSeries(servers.j, names)];
  assert.ok(sn.length >= 4, sn.join('\n'));
  assert.deepEqual(sn, sj);
  assert.ok(sn.some((l) => l.includes('source_workload="client"') && l.includes('destination_service="X.shop.svc.cluster.local"') && l.includes('connection_security_policy="none"')), sn.join('\n'));
  // What the mesh gate and protocol selection count, on both.
  const counted: [string, Record<string, string>][] = [
    ['weir_inbound_mtls_total', { mode: 'PERMISSIVE', outcome: 'plaintext' }],
    ['weir_proxy_protocol_detected_total', { direction: 'inbound', protocol: 'tcp', reason: 'declared' }],
  ];
  for (const [m, match] of counted) {
    assert.equal(await c.metric(servers.n, m, match), 5, m);
    assert.equal(await c.metric(servers.j, m, match), 5, m);
  }
  const access = (p: Pod) => p.proxyLog.filter((l) => l.startsWith('{"start_time"')).map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.upstream_cluster === 'inbound|7000||');
  await until('5 access-log lines', () => access(servers.n).length === 5, 5000);
  const line = access(servers.n)[0];
  assert.equal(line.upstream_host, '127.0.0.1:7000');
  assert.equal(line.downstream_local_address, `${servers.n.ip4}:7000`);
  assert.equal(line.bytes_received, 3);
  const ref = access(servers.j)[0];
  for (const k of ['upstream_host', 'upstream_cluster', 'bytes_received', 'bytes_sent', 'response_flags']) assert.equal(line[k], ref[k], k);
});

/** inboundSeries as series → value, for deltas. */
async function inboundValues(pod: Pod, names: string[]): Promise<Map<string, number>> {
  return new Map((await inboundSeries(pod, names)).map((l) => [l.slice(0, l.lastIndexOf(' ')), Number(l.slice(l.lastIndexOf(' ') + 1))]));
}

test('with no access log, native telemetry comes as aggregated series: the same istio_tcp_* series and values as the JavaScript path, inbound and outbound', { skip }, async () => {
  const names = ['server-a', 'server-j', 'echo-a', 'echo-j'];
  const [a0, client0] = [await nativeOf(servers.a), await nativeOf(client)];
  const j0 = await inboundValues(servers.j, names);
  for (let i = 0; i < 5; i++) {
    assert.equal(await exchange(VIP.a, 7000, `a${i}`), 'from 127.0.0.6');
    assert.equal(await exchange(VIP.j, 7000, `a${i}`), 'from 127.0.0.6');
  }
  const a1 = await nativeOf(servers.a);
  assert.equal(a1.native - a0.native, 5, 'all five native on server-a');
  // Folded before every scrape: no waiting for the once-a-second fold (only for the pump thread to see the closes).
  const closed = (m: Map<string, number>) => [...m].filter(([k]) => k.startsWith('istio_tcp_connections_closed_total')).reduce((n, [, v]) => n + v, 0);
  await until('server-a reported 5 closed', async () => closed(await inboundValues(servers.a, names)) === 5, 5000);
  await until('server-j reported 5 more closed', async () => closed(await inboundValues(servers.j, names)) - closed(j0) === 5, 5000);
  const sa = await inboundValues(servers.a, names);
  const sj = new Map([...(await inboundValues(servers.j, names))].map(([k, v]) => [k, v - (j0.get(k) ?? 0)] as const).filter(([, v]) => v > 0));
  assert.ok(sa.size >= 4, [...sa].join('\n'));
  assert.deepEqual([...sa].sort(), [...sj].sort());
  for (const m of ['weir_inbound_mtls_total', 'weir_proxy_protocol_detected_total']) assert.equal(await c.metric(servers.a, m, m.includes('mtls') ? { outcome: 'plaintext' } : { direction: 'inbound' }), 5, m);
  // The client's proxy (no access log either): its outbound series for echo-a, value by value.
  const out = { reporter: 'source', destination_service_name: 'echo-a', destination_workload: 'server-a' };
  assert.equal(await c.metric(client, 'istio_tcp_connections_opened_total', out), 5);
  await until('client reported 5 closed', async () => (await c.metric(client, 'istio_tcp_connections_closed_total', out)) === 5, 5000);
  assert.equal(await c.metric(client, 'istio_tcp_received_bytes_total', out), 5 * 'a0\n'.length);
  assert.equal(await c.metric(client, 'istio_tcp_sent_bytes_total', out), 5 * ('from 127.0.0.6\n'.length + 'a0\n'.length));
  // Proof that it was the aggregated path: series were folded on both proxies, no access log line was written.
  const [a2, client2] = [await nativeOf(servers.a), await nativeOf(client)];
  assert.ok(a2.foldedSeries > a0.foldedSeries && client2.foldedSeries > client0.foldedSeries, JSON.stringify({ a0, a2, client0, client2 }));
  assert.equal(servers.a.proxyLog.filter((l) => l.startsWith('{"start_time"')).length, 0);
});

test('a TLS first byte is handed to the mesh gate with its bytes intact (the app\'s own TLS passes through)', { skip }, async () => {
  const before = await nativeOf(servers.n);
  const record = '\x16\x03\x01\x00\x04abcd';
  const s = await c.connect(client, VIP.n, 7000);
  let got = '';
  s.on('data', (d: Buffer) => { got += d.toString('latin1'); });
  s.write(Buffer.from(record, 'latin1'));
  await until('the app\'s answer and the TLS record echoed', () => got === `from 127.0.0.6\n${record}`, 3000);
  s.destroy();
  const after = await nativeOf(servers.n);
  assert.equal(after.handedOff - before.handedOff, 1);
  assert.equal(after.native - before.native, 0);
  assert.equal(await c.metric(servers.n, 'weir_inbound_mtls_total', { outcome: 'passthrough_tls' }), 1);
});

test('a server-first app on a declared-TCP port is dialled natively after the peek timeout', { skip }, async () => {
  const before = await nativeOf(servers.n);
  const s = await c.connect(client, VIP.first, 7001);
  const got = lines(s, 2);
  setTimeout(() => s.write('x\n'), 300); // well after the first line, which the app sends once dialled
  assert.deepEqual(await got, ['first 127.0.0.6', 'x']);
  s.end();
  await once(s, 'close');
  assert.equal((await nativeOf(servers.n)).native - before.native, 1);
});

test('an HTTP port stays with JavaScript (handed over, served by the HTTP chain)', { skip }, async () => {
  const before = await nativeOf(servers.n);
  const s = await c.connect(client, VIP.web, 7080);
  s.end('GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n');
  let text = '';
  s.on('data', (d: Buffer) => { text += d.toString(); });
  await once(s, 'close');
  assert.match(text, /^HTTP\/1\.1 200[\s\S]*http from 127\.0\.0\.6/);
  assert.equal((await nativeOf(servers.n)).handedOff - before.handedOff, 1);
  assert.ok(await c.metric(servers.n, 'istio_requests_total', { reporter: 'destination', response_code: '200' }) >= 1);
});

/** The client gets no byte from the app: refused (reset or closed) before anything is relayed. */
async function refused(ip: string): Promise<void> {
  const s: Socket = await c.connect(client, ip, 7000);
  let got = '';
  s.on('data', (d: Buffer) => { got += d.toString(); });
  s.on('end', () => s.end()); // a denied connection is closed (FIN), a STRICT refusal reset: both refuse
  s.write('ping\n');
  await new Promise((r) => s.once('close', r));
  assert.equal(got, '');
}

test('a STRICT PeerAuthentication or an AuthorizationPolicy pushed at run time takes the port back to JavaScript, which refuses (fail closed)', { skip }, async () => {
  const step = async (want: 'native' | 'handedOff', run: () => Promise<unknown>) => {
    const b = await nativeOf(servers.s);
    await run();
    const a = await nativeOf(servers.s);
    assert.equal(a[want] - b[want], 1, `${want}: ${JSON.stringify({ b, a })}`);
    assert.equal(a[want === 'native' ? 'handedOff' : 'native'] - b[want === 'native' ? 'handedOff' : 'native'], 0);
  };
  await step('native', async () => assert.equal(await exchange(VIP.strict, 7000), 'from 127.0.0.6'));
  setServerSPolicies([{ apiVersion: 'security.istio.io/v1', kind: 'PeerAuthentication', metadata: { name: 'strict', namespace: NS }, spec: { mtls: { mode: 'STRICT' } } }]);
  await until('server-s enforces STRICT', async () => (await compiledMode()).mode === 'STRICT', 5000);
  await step('handedOff', () => refused(VIP.strict));
  assert.equal(await c.metric(servers.s, 'weir_inbound_mtls_total', { mode: 'STRICT', outcome: 'refused_plaintext' }), 1);
  setServerSPolicies([{ apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'no-7000', namespace: NS }, spec: { action: 'DENY', rules: [{ to: [{ operation: { ports: ['7000'] } }] }] } }]);
  await until('server-s enforces the DENY policy', async () => { const m = await compiledMode(); return m.mode === 'PERMISSIVE' && m.deny.length === 1; }, 5000);
  await step('handedOff', () => refused(VIP.strict));
  assert.equal(await c.metric(servers.s, 'weir_authorization_denied_total', { protocol: 'tcp' }), 1);
  setServerSPolicies([]);
  await until('server-s has no policy', async () => (await compiledMode()).deny.length === 0, 5000);
  await step('native', async () => assert.equal(await exchange(VIP.strict, 7000), 'from 127.0.0.6'));
});

test('hostile peers during the peek (RST at once, silence then close, silence then RST, a burst) leak nothing and stop nothing', { skip }, async () => {
  const base = fds(servers.n);
  const direct = () => c.connect(outside, servers.n.ip4, 7000);
  for (let i = 0; i < 20; i++) (await direct()).resetAndDestroy();
  for (let i = 0; i < 10; i++) { const s = await direct(); setTimeout(() => s.end(), 20); }
  const silent = await Promise.all(Array.from({ length: 10 }, () => direct()));
  await new Promise((r) => setTimeout(r, 300)); // past the 100 ms peek: dialled, then reset by the client
  for (const s of silent) s.resetAndDestroy();
  await Promise.all(Array.from({ length: 50 }, () => direct().then((s) => s.resetAndDestroy())));
  await until('no native connection left', async () => (await nativeOf(servers.n)).active === 0, 5000);
  await until('fds back to the baseline', () => fds(servers.n) <= base, 5000);
  assert.equal(await exchange(VIP.n, 7000, 'still'), 'from 127.0.0.6');
});
