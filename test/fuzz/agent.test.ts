// Fuzz: every socket and port of a running `weir agent` (cni.sock,
// admin.sock, proxy.sock, the metrics/health port) and CNI stdin/env through
// the C relay, with and without the agent. Seeded (WEIR_FUZZ_SEED), bounded
// in count and time (fuzz-support.ts). For each target: the agent never
// dies, a well-formed peer is served during and after, and the agent's fd
// count returns to where it was.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { skipUnlessRoot } from '../support/netns.js';
import { AgentChild, RELAY, meshPod } from '../support/agent-child.js';
import { runRelay } from '../support/relay.js';
import { fuzz, mutateHttp, mutateJson, MAX_CASES, MAX_MS, Rng, SEED } from './fuzz-support.js';

function httpOk(opts: http.RequestOptions, expect: (status: number, body: string) => boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = http.request({ ...opts, agent: false, timeout: 5000 }, (res) => {
      let t = '';
      res.on('data', (c: Buffer) => { t += c.toString(); });
      res.on('end', () => (expect(res.statusCode ?? 0, t) ? resolve() : reject(new Error(`unexpected answer ${res.statusCode}: ${t.slice(0, 200)}`))));
    });
    req.on('timeout', () => req.destroy(new Error('no answer within 5 s')));
    req.on('error', reject);
    req.end();
  });
}

const POD_REQ = { containerId: 'fuzzc', ifName: 'eth0', netns: '/run/netns/wk-fuzz-none', podNamespace: 'default', podName: 'fuzz', podUid: 'u-fuzz', ips: ['10.1.1.1'], cniVersion: '1.0.0', network: 'n' };
const CONF = { cniVersion: '1.0.0', name: 'fuzz', type: 'weir-cni', agentTimeoutMs: 3000, prevResult: { cniVersion: '1.0.0', ips: [{ address: '10.1.1.1/24' }] } };

describe('fuzz: the agent\'s sockets and ports', { skip: skipUnlessRoot() || (!existsSync(RELAY) && 'dist/weir-cni not built (npm run build)'), timeout: 120_000 }, () => {
  let agent: AgentChild;
  before(async () => {
    agent = await AgentChild.create('wk-fuzz-node');
    agent.api.put(meshPod('fuzz', 'default', 'wk-fuzz-node'));
    await agent.start();
  });
  after(async () => { await agent?.stop(); });

  test(`seed ${SEED}, at most ${MAX_CASES} cases / ${MAX_MS} ms per target`, () => { assert.ok(Number.isFinite(SEED)); });

  test('cni.sock', async (t) => {
    const paths = ['/v1/ready', '/v1/cni/add', '/v1/cni/check', '/v1/cni/del', '/v1/cni/gc', '/v1/log', '/v1/cni/exec'];
    let r0 = new Rng(SEED);
    const body = (): string => r0.pick([
      () => mutateJson(r0, POD_REQ),
      () => mutateJson(r0, { env: { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'x', CNI_NETNS: '/run/netns/wk-fuzz-none', CNI_IFNAME: 'eth0' }, stdin: JSON.stringify(CONF) }),
      () => mutateJson(r0, { validAttachments: [{ containerId: 'x', ifName: 'eth0' }] }),
      () => mutateJson(r0, { level: 'info', msg: 'm', fields: { a: 1 } }),
    ])();
    const res = await fuzz(agent, {
      name: 'cni.sock',
      connect: () => net.connect(agent.cniSocket),
      mutant: (r) => { r0 = r; return mutateHttp(r, paths, body); },
      probe: () => httpOk({ socketPath: agent.cniSocket, path: '/v1/ready' }, (s, b) => s === 200 && /"ready":/.test(b)),
    });
    t.diagnostic(`cases ${res.cases}, probes ${res.probes}`);
  });

  test('admin.sock', async (t) => {
    const paths = ['/v1/status', '/v1/pods', '/v1/logs?n=5', '/v1/pods/default/fuzz/rules', '/v1/pods/default/fuzz/check', '/v1/pods/default/fuzz/repair', '/v1/logs?n=-1'];
    const res = await fuzz(agent, {
      name: 'admin.sock',
      connect: () => net.connect(agent.adminSocket),
      mutant: (r) => mutateHttp(r, paths, () => mutateJson(r, { a: 1 })),
      probe: () => httpOk({ socketPath: agent.adminSocket, path: '/v1/status' }, (s, b) => s === 200 && /"node":"wk-fuzz-node"/.test(b)),
    });
    t.diagnostic(`cases ${res.cases}, probes ${res.probes}`);
  });

  test('proxy.sock (the proxies\' control-plane listener)', async (t) => {
    const hello = { type: 'hello', versions: [1], resume: { epoch: 'e', version: 3 }, claimed: { namespace: 'default', name: 'fuzz' } };
    const res = await fuzz(agent, {
      name: 'proxy.sock',
      connect: () => net.connect(agent.proxySocket),
      mutant: (r) => {
        const csr = { type: 'csr', nonce: 'n1', pem: '-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n' };
        const lines = Array.from({ length: 1 + r.int(3) }, () => mutateJson(r, [hello, { type: 'ack', version: r.int(5) }, csr][r.int(3)]));
        if (r.int(3) === 0) lines.unshift(JSON.stringify(hello));
        return lines.join('\n') + (r.int(4) ? '\n' : '');
      },
      probe: () => new Promise<void>((resolve, reject) => {
        // This test process is no pod: a well-formed hello is answered with a refusal that says why.
        const s = net.connect(agent.proxySocket, () => s.write('{"type":"hello","versions":[1]}\n'));
        let text = '';
        const timer = setTimeout(() => { s.destroy(); reject(new Error('no answer to hello within 5 s')); }, 5000);
        s.on('data', (c: Buffer) => { text += c.toString(); });
        s.on('error', () => undefined);
        s.on('close', () => { clearTimeout(timer); if (/"type":"refused"/.test(text)) resolve(); else reject(new Error(`hello answered with ${text}`)); });
      }),
    });
    t.diagnostic(`cases ${res.cases}, probes ${res.probes}`);
  });

  test('metrics/health port', async (t) => {
    const u = new URL(agent.metricsUrl);
    const res = await fuzz(agent, {
      name: 'metrics',
      connect: () => net.connect(Number(u.port), u.hostname),
      mutant: (r) => mutateHttp(r, ['/metrics', '/healthz', '/readyz'], () => ''),
      probe: () => httpOk({ host: u.hostname, port: Number(u.port), path: '/healthz' }, (s) => s === 200),
    });
    t.diagnostic(`cases ${res.cases}, probes ${res.probes}`);
  });

  for (const withAgent of [true, false]) {
    test(`CNI stdin/env through the relay, ${withAgent ? 'with' : 'without'} the agent`, async (t) => {
      const r = new Rng(SEED + (withAgent ? 1 : 2));
      const sock = withAgent ? agent.cniSocket : '/run/wk-fuzz-no-agent/cni.sock';
      await httpOk({ socketPath: agent.cniSocket, path: '/v1/ready' }, (s) => s === 200);
      const baseline = agent.fdCount();
      const started = Date.now();
      let cases = 0;
      const one = async (): Promise<void> => {
        const env: Record<string, string | undefined> = {
          CNI_COMMAND: r.pick(['ADD', 'DEL', 'CHECK', 'VERSION', 'STATUS', 'GC', 'add', '', 'X'.repeat(300)]),
          CNI_CONTAINERID: r.pick(['fuzz1', '', '../x', 'a'.repeat(200), undefined]),
          CNI_NETNS: r.pick(['/run/netns/wk-fuzz-none', '/proc/self/ns/net', 'rel', '', undefined, '/etc/hostname']),
          CNI_IFNAME: r.pick(['eth0', '', undefined]),
          CNI_ARGS: r.pick(['K8S_POD_NAMESPACE=kube-system;K8S_POD_NAME=fuzz', 'K8S_POD_NAMESPACE=default;K8S_POD_NAME=fuzz', 'garbage', '=;=', undefined]),
        };
        const stdin = r.int(6) === 0 ? r.bytes(r.int(3000)) : mutateJson(r, { ...CONF, agentSocket: sock });
        const out = await runRelay(env, stdin);
        assert.equal(out.signal, null, `relay killed by ${out.signal}`);
        assert.ok(out.code === 0 || out.code === 1, `relay exit ${out.code}: ${out.stdout}${out.stderr}`);
        if (out.code === 1) assert.equal(typeof out.json?.code, 'number', `an error is a CNI error object: ${out.stdout}`);
      };
      const workers = Array.from({ length: 4 }, async () => {
        while (cases < MAX_CASES && Date.now() - started < MAX_MS) { cases++; await one(); }
      });
      await Promise.all(workers);
      assert.ok(agent.alive, 'agent died');
      await httpOk({ socketPath: agent.cniSocket, path: '/v1/ready' }, (s) => s === 200);
      assert.ok(await agent.fdsSettle(baseline) <= baseline, 'agent fds back to the baseline');
      t.diagnostic(`cases ${cases}`);
    });
  }
});
