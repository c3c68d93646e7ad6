// Fuzz: a running `weir proxy` — its capture listeners (outbound, inbound),
// admin, readiness, Prometheus and status (15020) ports, and the DNS proxy over UDP and TCP.
// The proxy runs without an agent (a pod whose agent is down must still
// behave). Seeded, bounded in count and time (fuzz-support.ts). For each
// target: the proxy never dies, keeps serving a well-formed peer during and
// after, and its fd count returns to where it was.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import dnsPacket from 'dns-packet';
import { REPO } from '../support/agent-child.js';
import { fuzz, mutateHttp, FuzzChild, MAX_CASES, MAX_MS, Rng, SEED } from './fuzz-support.js';

/** Ports the kernel says are free now (TCP on ::, and UDP for DNS), so parallel suites do not collide. */
async function freePorts(n: number): Promise<number[]> {
  const out: number[] = [];
  while (out.length < n) {
    const s = net.createServer();
    await new Promise<void>((r) => s.listen({ port: 0, host: '::', ipv6Only: false }, () => r()));
    const port = (s.address() as net.AddressInfo).port;
    await new Promise<void>((r) => s.close(() => r()));
    const u = dgram.createSocket('udp6');
    const udpFree = await new Promise<boolean>((r) => { u.once('error', () => r(false)); u.bind(port, '::', () => r(true)); });
    u.close();
    if (udpFree && !out.includes(port)) out.push(port);
  }
  return out;
}
const PORTS = { outbound: 0, inbound: 0, admin: 0, ready: 0, prometheus: 0, dns: 0, status: 0 };

function httpGet(port: number, p: string, ok: (status: number, body: string) => boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: p, agent: false, timeout: 5000 }, (res) => {
      let t = '';
      res.on('data', (c: Buffer) => { t += c.toString(); });
      res.on('end', () => (ok(res.statusCode ?? 0, t) ? resolve() : reject(new Error(`${p}: ${res.statusCode} ${t.slice(0, 200)}`))));
    });
    req.on('timeout', () => req.destroy(new Error(`${p}: no answer within 5 s`)));
    req.on('error', reject);
  });
}

/** A well-formed query the proxy answers by itself (opcode STATUS → NOTIMP), with no upstream involved. */
function statusQuery(id: number): Buffer {
  const q = Buffer.from(dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name: 'fuzz.default.svc.cluster.local' }] }));
  q.writeUInt16BE((q.readUInt16BE(2) & ~0x7800) | (2 << 11), 2);
  return q;
}

function udpProbe(): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket('udp4');
    const id = Math.floor(Math.random() * 65535);
    const t = setTimeout(() => { s.close(); reject(new Error('no DNS answer over UDP within 3 s')); }, 3000);
    s.on('message', (m) => { if (m.readUInt16BE(0) === id && (m[3] & 0xf) === 4) { clearTimeout(t); s.close(); resolve(); } });
    s.send(statusQuery(id), PORTS.dns, '127.0.0.1');
  });
}

/** The capture listeners pass connections on to their original destination; with no capture rules a connection is accepted and then closed. */
function acceptProbe(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    const t = setTimeout(() => { s.destroy(); reject(new Error(`:${port} neither served nor closed the connection within 5 s`)); }, 5000);
    s.on('error', () => undefined);
    s.on('connect', () => s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    s.on('close', () => { clearTimeout(t); resolve(); });
  });
}

describe('fuzz: the proxy\'s listeners, ports and DNS proxy', { timeout: 120_000 }, () => {
  const proxy = new FuzzChild();
  before(async () => {
    const [outbound, inbound, admin, ready, prometheus, dns, status] = await freePorts(7);
    Object.assign(PORTS, { outbound, inbound, admin, ready, prometheus, dns, status });
    proxy.child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO, 'src/cli/main.ts'), 'proxy',
      '--pod-namespace', 'default', '--pod-name', 'fuzz-6d5f7-abcde', '--control-plane-socket', '/run/wk-fuzz-no-agent/proxy.sock',
      '--outbound-port', String(PORTS.outbound), '--inbound-port', String(PORTS.inbound), '--admin-port', String(PORTS.admin),
      '--ready-port', String(PORTS.ready), '--prometheus-port', String(PORTS.prometheus), '--dns-port', String(PORTS.dns),
      '--ready-without-agent', '1ms', '--no-access-log', '--connect-timeout', '500ms'],
    // The status port as the injector configures it: one rewritten probe (to a closed port: answered 503).
    { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, WEIR_STATUS_PORT: String(PORTS.status), INSTANCE_IP: '127.0.0.1', ISTIO_KUBE_APP_PROBERS: JSON.stringify({ '/app-health/app/livez': { tcpSocket: { port: 1 }, timeoutSeconds: 1 } }) } });
    const keep = (c: Buffer): void => { proxy.log += c.toString(); };
    proxy.child.stdout!.on('data', keep);
    proxy.child.stderr!.on('data', keep);
    const deadline = Date.now() + 40_000;
    while (!/weir proxy listening/.test(proxy.log)) {
      if (Date.now() > deadline || !proxy.alive) throw new Error(`proxy did not start:\n${proxy.log.slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  });
  after(() => { proxy.child?.kill('SIGKILL'); });

  test(`seed ${SEED}, at most ${MAX_CASES} cases / ${MAX_MS} ms per target`, () => { assert.ok(Number.isFinite(SEED)); });

  const httpPorts: [string, keyof typeof PORTS, string[], string][] = [
    ['admin port', 'admin', ['/config_dump', '/clusters', '/stats', '/ready', '/stats/prometheus'], '/stats'],
    ['ready port', 'ready', ['/healthz/ready'], '/healthz/ready'],
    ['prometheus port', 'prometheus', ['/stats/prometheus'], '/stats/prometheus'],
    // Not /quitquitquit: from loopback it rightly stops the proxy.
    ['status port (15020)', 'status', ['/app-health/app/livez', '/app-health/app/readyz', '/healthz/ready'], '/healthz/ready'],
  ];
  for (const [name, key, paths, probePath] of httpPorts) {
    test(name, async (t) => {
      const port = PORTS[key];
      const res = await fuzz(proxy, {
        name, connect: () => net.connect(port, '127.0.0.1'),
        mutant: (r) => mutateHttp(r, paths, () => r.bytes(r.int(100)).toString('latin1')),
        probe: () => httpGet(port, probePath, (s) => s === 200),
      });
      t.diagnostic(`cases ${res.cases}, probes ${res.probes}`);
    });
  }

  for (const [name, key] of [['outbound listener', 'outbound'], ['inbound listener', 'inbound']] as const) {
    test(name, async (t) => {
      const port = PORTS[key];
      const res = await fuzz(proxy, {
        name, connect: () => net.connect(port, '127.0.0.1'),
        mutant: (r) => (r.int(2) ? mutateHttp(r, ['/', '/x'], () => 'body') : r.bytes(r.int(4000))),
        probe: async () => { await acceptProbe(port); await httpGet(PORTS.ready, '/healthz/ready', (s) => s === 200); },
      });
      t.diagnostic(`cases ${res.cases}, probes ${res.probes}`);
    });
  }

  test('DNS proxy over TCP', async (t) => {
    const res = await fuzz(proxy, {
      name: 'dns-tcp', connect: () => net.connect(PORTS.dns, '127.0.0.1'),
      mutant: (r) => {
        const q = r.int(2) ? statusQuery(r.int(65535)) : r.bytes(r.int(600));
        const len = Buffer.alloc(2);
        len.writeUInt16BE(r.int(3) ? q.length : r.int(65536));
        return Buffer.concat([len, q.subarray(0, r.int(q.length + 1))]);
      },
      probe: udpProbe,
    });
    t.diagnostic(`cases ${res.cases}, probes ${res.probes}`);
  });

  test('DNS proxy over UDP', async (t) => {
    const r = new Rng(SEED + 5);
    await udpProbe();
    const baseline = proxy.fdCount();
    const s = dgram.createSocket('udp4');
    const started = Date.now();
    let cases = 0;
    while (cases < MAX_CASES * 5 && Date.now() - started < MAX_MS) {
      const q = statusQuery(r.int(65535));
      for (let i = 0; i < 1 + r.int(4); i++) q[r.int(q.length)] = r.int(256);
      s.send(r.int(4) ? q.subarray(0, r.int(q.length + 1)) : r.bytes(r.int(1500)), PORTS.dns, '127.0.0.1');
      cases++;
      if (cases % 100 === 0) await udpProbe();
      if (cases % 20 === 0) await new Promise((res) => setImmediate(res));
    }
    s.close();
    await udpProbe();
    assert.ok(proxy.alive);
    assert.ok(await proxy.fdsSettle(baseline) <= baseline);
    t.diagnostic(`cases ${cases}`);
  });
});
