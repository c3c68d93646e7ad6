// Pure parts of the proxy: settings, routing table, load balancing, conntrack parsing, framing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULTS, resolveProxyConfig, workloadFromPodName } from '../../src/proxy/config.js';
import { LeastConnections, RouteTable } from '../../src/proxy/routing.js';
import { findInConntrack } from '../../src/proxy/original-dst.js';
import { canonicalIp } from '../../src/proxy/addr.js';
import { LineDecoder } from '../../src/controlplane/protocol.js';
import { RegistryBuilder } from '../../src/controlplane/registry-builder.js';

test('config: defaults, env, and errors that name the flag', () => {
  const c = resolveProxyConfig({}, { POD_NAMESPACE: 'shop', POD_NAME: 'web-7c9d8f6b5-x2k4q' });
  assert.equal(c.outboundPort, 15001);
  assert.equal(c.inboundPort, 15006);
  assert.equal(c.workload, 'web');
  assert.equal(resolveProxyConfig({ idleTimeout: '90s', connectTimeout: '250ms' }, {}).idleTimeoutMs, 90_000);
  assert.throws(() => resolveProxyConfig({ maxConnections: '0' }, {}), /--max-connections: must be an integer/);
  assert.throws(() => resolveProxyConfig({ idleTimeout: 'soon' }, {}), /--idle-timeout: must be a duration.*"soon"/);
  // A bare number is refused with the same words the agent uses (src/common/duration.ts).
  assert.throws(() => resolveProxyConfig({ connectTimeout: '30' }, {}), /--connect-timeout: needs a unit: ms, s, m or h.*"30"/);
  assert.throws(() => resolveProxyConfig({ drainTimeout: '5' }, {}), /--drain-timeout: needs a unit/);
  assert.throws(() => resolveProxyConfig({ outboundPort: '70000' }, {}), /--outbound-port: must be a port/);
  assert.throws(() => resolveProxyConfig({ inboundPort: '15001' }, {}), /--inbound-port: same port as --outbound-port/);
  assert.throws(() => resolveProxyConfig({ podNamespace: 'Bad_NS' }, {}), /--pod-namespace/);
  assert.equal(workloadFromPodName('db-0'), 'db-0');
  assert.equal(workloadFromPodName('agent-x7k2p'), 'agent');
});

test('config: busy-poll window from --busy-poll or WEIR_BUSY_POLL, errors name the one that is wrong', () => {
  assert.equal(resolveProxyConfig({}, {}).busyPollUs, DEFAULTS.busyPollUs);
  assert.equal(resolveProxyConfig({ busyPoll: '200us' }, {}).busyPollUs, 200);
  assert.equal(resolveProxyConfig({ busyPoll: '0.25ms' }, {}).busyPollUs, 250);
  assert.equal(resolveProxyConfig({ busyPoll: '75' }, {}).busyPollUs, 75);
  assert.equal(resolveProxyConfig({ busyPoll: 'off' }, {}).busyPollUs, 0);
  assert.equal(resolveProxyConfig({}, { WEIR_BUSY_POLL: '50us' }).busyPollUs, 50);
  // The flag wins over the environment.
  assert.equal(resolveProxyConfig({ busyPoll: 'off' }, { WEIR_BUSY_POLL: '50us' }).busyPollUs, 0);
  assert.throws(() => resolveProxyConfig({ busyPoll: 'fast' }, {}), /--busy-poll: must be off or a duration in microseconds.*"fast"/);
  assert.throws(() => resolveProxyConfig({ busyPoll: '-5us' }, {}), /--busy-poll: must be off/);
  assert.throws(() => resolveProxyConfig({ busyPoll: '20ms' }, {}), /--busy-poll: must be at most 10ms.*"20ms"/);
  assert.throws(() => resolveProxyConfig({}, { WEIR_BUSY_POLL: '1s' }), /WEIR_BUSY_POLL: must be off or a duration/);
});

test('routing: VIP:port → ready endpoints by port name; headless pod IP:port; terminating fallback', () => {
  const b = new RegistryBuilder();
  b.upsertService({ metadata: { namespace: 'a', name: 'web' }, spec: { clusterIPs: ['10.96.0.10', 'fd00::a'], ports: [{ name: 'http', port: 80 }, { name: 'udp', port: 53, protocol: 'UDP' }] } });
  b.upsertEndpointSlice({ metadata: { namespace: 'a', name: 'w1', labels: { 'kubernetes.io/service-name': 'web' } }, endpoints: [
    { addresses: ['10.0.0.1'] }, { addresses: ['10.0.0.2'], conditions: { ready: false } },
  ], ports: [{ name: 'http', port: 8080 }] });
  b.upsertService({ metadata: { namespace: 'a', name: 'db' }, spec: { clusterIP: 'None', ports: [{ name: 'pg', port: 5432 }] } });
  b.upsertEndpointSlice({ metadata: { namespace: 'a', name: 'd1', labels: { 'kubernetes.io/service-name': 'db' } }, endpoints: [
    { addresses: ['10.0.0.7'] }, { addresses: ['10.0.0.8'] },
  ], ports: [{ name: 'pg', port: 5432 }] });
  const t = new RouteTable(b.snapshot());
  const r = t.lookup('10.96.0.10', 80)!;
  assert.deepEqual(t.targets(r).map((x) => `${x.ip}:${x.port}`), ['10.0.0.1:8080']);
  assert.ok(t.lookup(canonicalIp('fd00:0000::000a'), 80), 'IPv6 VIP found whatever its spelling');
  assert.equal(t.lookup('10.96.0.10', 53), undefined, 'UDP ports are not TCP routes');
  const h = t.lookup('10.0.0.8', 5432)!;
  assert.deepEqual(t.targets(h).map((x) => x.ip), ['10.0.0.8']);
  assert.equal(t.serviceForInbound('10.0.0.1', 8080)?.name, 'web');

  b.upsertEndpointSlice({ metadata: { namespace: 'a', name: 'w1', labels: { 'kubernetes.io/service-name': 'web' } }, endpoints: [
    { addresses: ['10.0.0.1'], conditions: { ready: false, serving: true, terminating: true } },
  ], ports: [{ name: 'http', port: 8080 }] });
  const t2 = new RouteTable(b.snapshot());
  assert.deepEqual(t2.targets(t2.lookup('10.96.0.10', 80)!).map((x) => x.ip), ['10.0.0.1'], 'serving+terminating used when nothing is ready');
});

test('least connections spreads, honours exclusions, and releases', () => {
  const lb = new LeastConnections();
  const ep = { ip: '', ready: true, serving: true, terminating: false, ports: [] };
  const ts = [{ ip: '10.0.0.1', port: 1, endpoint: ep }, { ip: '10.0.0.2', port: 1, endpoint: ep }, { ip: '10.0.0.3', port: 1, endpoint: ep }];
  const releases = [];
  for (let i = 0; i < 6; i++) releases.push(lb.acquire(lb.pick(ts, new Set())!));
  assert.deepEqual(ts.map((t) => lb.activeFor(t.ip, 1)), [2, 2, 2]);
  for (const r of releases) { r(); r(); } // double release is harmless
  assert.deepEqual(ts.map((t) => lb.activeFor(t.ip, 1)), [0, 0, 0]);
  assert.equal(lb.pick(ts, new Set(['10.0.0.1|1', '10.0.0.2|1']))!.ip, '10.0.0.3');
  assert.equal(lb.pick(ts, new Set(['10.0.0.1|1', '10.0.0.2|1', '10.0.0.3|1'])), undefined);
});

test('conntrack fallback finds the pre-redirect destination (v4 and zero-padded v6)', () => {
  const text = [
    'ipv4     2 tcp      6 431999 ESTABLISHED src=10.1.1.2 dst=10.96.0.10 sport=40000 dport=80 src=127.0.0.1 dst=10.1.1.2 sport=15001 dport=40000 [ASSURED] mark=0 zone=0 use=2',
    'ipv4     2 tcp      6 431999 ESTABLISHED src=10.1.1.2 dst=10.96.0.11 sport=40001 dport=81 src=127.0.0.1 dst=10.1.1.2 sport=15006 dport=40001 [ASSURED] mark=0 zone=0 use=2',
    'ipv6     10 tcp      6 431999 ESTABLISHED src=fd00:0000:0000:0000:0000:0000:0000:0002 dst=fd00:0000:0000:0000:0000:0000:0000:00aa sport=41000 dport=443 src=0000:0000:0000:0000:0000:0000:0000:0001 dst=fd00:0000:0000:0000:0000:0000:0000:0002 sport=15001 dport=41000 [ASSURED] mark=0 zone=0 use=2',
  ].join('\n');
  assert.deepEqual(findInConntrack(text, '10.1.1.2', 40000, 15001), { ip: '10.96.0.10', port: 80 });
  assert.equal(findInConntrack(text, '10.1.1.2', 40001, 15001), undefined, 'went to the other listener');
  assert.deepEqual(findInConntrack(text, 'fd00::2', 41000, 15001), { ip: 'fd00::aa', port: 443 });
});

test('line decoder: split across chunks, several per chunk, bounded line length', () => {
  const d = new LineDecoder(32);
  assert.deepEqual(d.push(Buffer.from('{"a":1}\n{"b"')), [{ a: 1 }]);
  assert.deepEqual(d.push(Buffer.from(':2}\n\n{"c":3}\n')), [{ b: 2 }, { c: 3 }]);
  assert.throws(() => d.push(Buffer.alloc(40, 0x61)), /line longer than 32 bytes/);
});
