// Two pods through both weir proxies, captured by the eBPF backend: the
// client app dials a Service VIP (or a pod IP); connect4/6 points it at the
// client proxy's 15001, whose getsockopt(SO_ORIGINAL_DST) the getsockopt
// program answers; the client proxy dials the server pod, whose inbound
// (nft, as the eBPF design leaves it) lands on the server proxy's 15006,
// which hands it to the app. The same harness as proxy-l4.test.ts (nft),
// only the backend differs. Programs attach to a cgroup of this test's own,
// which this process (and so every app and proxy it starts) joins.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { skipUnlessRoot } from '../support/netns.js';
import { until } from '../support/poll.js';
import { createBpfSandbox, type BpfSandbox } from '../support/bpf-sandbox.js';
import { EbpfBackend } from '../../src/netns/ebpf-backend.js';
import { sandboxAt } from '../../src/netns/backend-types.js';
import { Registry as PromRegistry } from 'prom-client';
import { buildPlan } from '../../src/redirect/plan.js';
import { ANNOTATIONS } from '../../src/redirect/annotations.js';
import { Cluster, REPO, readAll, readLine, service, slice, type Pod } from './proxy-harness.js';

const skip = skipUnlessRoot();
const execFileAsync = promisify(execFile);
const VIP = '10.96.88.10';
const VIP6 = 'fd00:96::88:10';
const PORTS = [{ name: 'echo', port: 80 }, { name: 'sink', port: 81 }];
const EP_PORTS = [{ name: 'echo', port: 8080 }, { name: 'sink', port: 8081 }];

let bpf: BpfSandbox;
let c: Cluster;
let client: Pod;
let s1: Pod;
let s2: Pod;

const manifest = (p: Pod, annotations?: Record<string, string>) => ({
  metadata: { name: p.name, namespace: p.namespace, ...(annotations ? { annotations } : {}) },
  spec: { containers: [{ name: 'app' }, { name: 'weir-proxy' }] },
});

function applyRegistry(): void {
  c.cp!.apply((b) => b.upsertService(service('web', 'shop', VIP, PORTS)));
  c.cp!.apply((b) => b.upsertEndpointSlice(slice('web', 'shop', 'web-a', [{ pod: s1 }], EP_PORTS)));
  c.cp!.apply((b) => b.upsertService({ metadata: { name: 'web6', namespace: 'shop' }, spec: { type: 'ClusterIP', clusterIP: VIP6, clusterIPs: [VIP6], ports: [{ name: 'echo', port: 80, protocol: 'TCP' }] } }));
  c.cp!.apply((b) => b.upsertEndpointSlice({
    metadata: { name: 'web6-a', namespace: 'shop', labels: { 'kubernetes.io/service-name': 'web6' } },
    addressType: 'IPv6',
    endpoints: [{ addresses: [s2.ip6], conditions: { ready: true, serving: true, terminating: false }, targetRef: { kind: 'Pod', name: s2.name, namespace: 'shop' } }],
    ports: [{ name: 'echo', port: 8080, protocol: 'TCP' }],
  }));
}

/** until() with the proxies' logs on a timeout. */
const waitFor = (cond: () => Promise<boolean> | boolean, ms: number, what: string) => until(what, cond, { ms, detail: () => c.logs() });

/** The access-log lines of a pod's proxy since `from`, parsed. */
function accessLog(p: Pod, from = 0): { downstream_local_address?: string; upstream_host?: string; upstream_cluster?: string }[] {
  return p.proxyLog.slice(from).flatMap((l) => { try { const o = JSON.parse(l); return o && 'downstream_local_address' in o ? [o] : []; } catch { return []; } });
}

const loRx = (p: Pod) => Number(p.ns.exec('cat', ['/sys/class/net/lo/statistics/rx_bytes']).trim());
const opened = (p: Pod, reporter: 'source' | 'destination') => c.metric(p, 'istio_tcp_connections_opened_total', { reporter });

/** One greeting and one echo over a fresh connection from the client app. */
async function roundTrip(address: string, port: number, text: string): Promise<string> {
  const s = await c.connect(client, address, port);
  try {
    const hello = await readLine(s);
    s.resume();
    const echo = new Promise<string>((r) => { let b = ''; s.on('data', (d: Buffer) => { b += d; if (b.includes('\n')) r(b.trim()); }); });
    s.write(`${text}\n`);
    return `${hello} | ${await echo}`;
  } finally {
    s.destroy();
  }
}

/**
 * Both ways the eBPF backend runs: the defaults (no shortcut; the proxies'
 * splice pump), and the same-node shortcut on, which needs readers that use
 * recvmsg (splice(2) does not see bytes sk_msg redirected): the proxies'
 * stream pump.
 */
const MODES = [
  { name: 'ebpf', shortcut: false, proxyFlags: [] as string[] },
  { name: 'ebpf + same-node shortcut (stream pump)', shortcut: true, proxyFlags: ['--pump', 'stream'] },
];

for (const mode of MODES) {
  describe(mode.name, { skip, timeout: 300_000 }, () => {
    before(async () => {
      bpf = createBpfSandbox();
      c = new Cluster();
      c.captureBackend = new EbpfBackend({ pinDir: bpf.pinDir, cgroup: bpf.cgroup, shortcut: mode.shortcut });
      await c.startControlPlane();
      client = await c.addPod('client', 'shop');
      s1 = await c.addPod('server-1', 'shop');
      s2 = await c.addPod('server-2', 'shop');
      applyRegistry();
      // v6 service traffic must leave the app for capture to see it (the harness routes only v4).
      client.ns.ip('-6', 'route', 'replace', 'default', 'dev', 'eth0');
      await Promise.all([c.startApp(s1), c.startApp(s2)]);
      // json access log: each line names the connection's original destination (downstream_local_address).
      await Promise.all([client, s1, s2].map((p) => c.startProxy(p, ['--access-log', 'json', '--no-dns', ...mode.proxyFlags])));
      await waitFor(() => (c.cp!.stats().proxies as unknown[]).length === 3, 10_000, 'three proxies connected');
      await c.cp!.waitAcked(c.cp!.stats().version as number, 5000);
    });

    after(async () => {
      await c?.destroy();
      bpf?.destroy();
    });

    test('app → service VIP goes through both proxies; each proxy sees the original destination', async () => {
      const [cl, sv] = [client.proxyLog.length, s1.proxyLog.length];
      const before = await opened(client, 'source');
      assert.equal(await roundTrip(VIP, 80, 'ping'), 'hello from server-1 | ping');
      assert.equal(await opened(client, 'source') - before, 1, 'the client proxy took the connection');
      await waitFor(() => accessLog(client, cl).length > 0 && accessLog(s1, sv).length > 0, 5000, 'access log lines of both proxies');
      assert.equal(accessLog(client, cl)[0].downstream_local_address, `${VIP}:80`, 'the client proxy saw the VIP the app dialled');
      assert.equal(accessLog(client, cl)[0].upstream_host, `${s1.ip4}:8080`);
      assert.equal(accessLog(s1, sv)[0].downstream_local_address, `${s1.ip4}:8080`, 'the server proxy saw the pod address the client proxy dialled');
    });

    test('conntrack: the loopback hops (app → 127.0.0.1:15001, 127.0.0.6 → app) are untracked; the inbound capture is still tracked and NATed', async () => {
      const [clLog, svLog] = [client.proxyLog.length, s1.proxyLog.length];
      // Held open so its entries are ESTABLISHED while we look.
      const s = await c.connect(client, VIP, 80);
      try {
        assert.equal(await readLine(s), 'hello from server-1');
        const entries = (p: Pod) => p.ns.exec('conntrack', ['-L', '-p', 'tcp']).split('\n').filter((l) => l.includes('src='));
        const loopback = (l: string) => /^\S+\s+\d+\s+\d+\s+\S+\s+src=(127\.0\.0\.[16]|::1) dst=(127\.0\.0\.[16]|::1) /.test(l);
        const [cl, sv] = [entries(client), entries(s1)];
        assert.deepEqual([...cl, ...sv].filter(loopback), [], 'no conntrack entry between loopback addresses in either pod');
        assert.ok(cl.some((l) => l.includes(`dst=${s1.ip4} `) && l.includes('dport=8080 ')), `the client proxy's upstream is tracked:\n${cl.join('\n')}`);
        // The reply half names where REDIRECT sent it: the server proxy's 15006.
        assert.ok(sv.some((l) => new RegExp(`dst=${s1.ip4} sport=\\d+ dport=8080 src=${s1.ip4} dst=\\S+ sport=15006 `).test(l)), `inbound redirected to 15006 by conntrack NAT:\n${sv.join('\n')}`);
      } finally {
        s.destroy();
      }
      // Its access-log lines come at close: not in the next test's window.
      await waitFor(() => accessLog(client, clLog).length > 0 && accessLog(s1, svLog).length > 0, 5000, 'access log lines of both proxies');
    });

    test('app → another pod\'s IP: passthrough at the client, inbound at that pod; the right server answers', async () => {
      const [cl, sv] = [client.proxyLog.length, s2.proxyLog.length];
      const before = await opened(s2, 'destination');
      assert.equal(await roundTrip(s2.ip4, 8080, 'direct'), 'hello from server-2 | direct');
      assert.equal(await opened(s2, 'destination') - before, 1);
      // Both proxies' lines, so that server-2's cannot land in the next test's window.
      await waitFor(() => accessLog(client, cl).length > 0 && accessLog(s2, sv).length > 0, 5000, 'access log lines of both proxies');
      assert.equal(accessLog(client, cl)[0].downstream_local_address, `${s2.ip4}:8080`);
      assert.equal(accessLog(client, cl)[0].upstream_cluster, 'PassthroughCluster');
    });

    test('IPv6: app → v6 VIP through both proxies (connect6 → [::1]:15001, inbound over v6)', async () => {
      const cl = client.proxyLog.length;
      const sv = s2.proxyLog.length;
      assert.equal(await roundTrip(VIP6, 80, 'ping6'), 'hello from server-2 | ping6');
      await waitFor(() => accessLog(client, cl).length > 0 && accessLog(s2, sv).length > 0, 5000, 'access log lines of both proxies');
      assert.equal(accessLog(client, cl)[0].downstream_local_address, `[${VIP6}]:80`);
      // Access log lines are written when a connection ends; look for this connection's, not the first line after the mark.
      const v6 = `[${s2.ip6}]:8080`;
      await waitFor(() => accessLog(s2, sv).some((l) => l.downstream_local_address === v6), 5000, `server-2's access log line for ${v6}`);
    });

    test('16 MiB through both proxies arrives intact (sha256), and a half-close passes both ways', { timeout: 120_000 }, async () => {
      const body = Buffer.alloc(16 * 1024 * 1024);
      for (let i = 0; i < body.length; i += 4) body.writeUInt32LE((i * 2654435761) >>> 0, i);
      const lo = [loRx(client), loRx(s1)];
      const s = await c.connect(client, VIP, 81);
      const reply = readAll(s);
      if (!s.write(body)) await once(s, 'drain');
      s.end(); // half-close: the app answers only after it sees our FIN
      assert.equal(await reply, `server-1 ${body.length} ${createHash('sha256').update(body).digest('hex')}\n`);
      // app → client proxy and server proxy → app are loopback hops: the shortcut takes them off lo.
      const moved = [loRx(client) - lo[0], loRx(s1) - lo[1]];
      if (mode.shortcut) assert.ok(moved.every((m) => m < 2 << 20), `lo moved ${moved} bytes: the shortcut did not carry the loopback hops`);
      else assert.ok(moved.every((m) => m >= body.length), `lo moved ${moved} bytes`);
    });

    test('includes with real traffic: only the included CIDR and port are captured', async () => {
      // The plan a pod with these annotations gets, applied as a repair would: one map update.
      const inc = manifest(client, { [ANNOTATIONS.includeOutboundIPRanges]: '10.96.88.0/24', [ANNOTATIONS.includeOutboundPorts]: '8082' });
      await c.captureBackend.apply(sandboxAt(client.ns.path), buildPlan(inc));
      try {
        let before = await opened(client, 'source');
        assert.equal(await roundTrip(VIP, 80, 'in-range'), 'hello from server-1 | in-range');
        assert.equal(await opened(client, 'source') - before, 1, 'VIP in the included CIDR: captured');
        before = await opened(client, 'source');
        const s2Before = await opened(s2, 'destination');
        assert.equal(await roundTrip(s2.ip4, 8080, 'out-of-range'), 'hello from server-2 | out-of-range');
        assert.equal(await opened(client, 'source') - before, 0, 'pod IP outside the included CIDR, port not included: not captured');
        assert.equal(await opened(s2, 'destination') - s2Before, 1, 'still captured inbound at the server');
        before = await opened(client, 'source');
        const bye = await c.connect(client, s2.ip4, 8082);
        assert.equal(await readLine(bye), 'bye');
        bye.destroy();
        assert.equal(await opened(client, 'source') - before, 1, 'included port 8082 outside the CIDRs: captured');
      } finally {
        await c.captureBackend.apply(sandboxAt(client.ns.path), buildPlan(manifest(client)));
      }
      assert.equal(await roundTrip(s2.ip4, 8080, 'default'), 'hello from server-2 | default');
    });

    test('an agent restart mid-traffic (control plane and program loader): no connection lost, every new one captured', { timeout: 180_000 }, async () => {
      const long = await c.connect(client, VIP, 80);
      assert.equal(await readLine(long), 'hello from server-1');
      long.resume();
      let longErr: unknown;
      long.on('error', (e) => { longErr = e; });
      const say = (text: string) => new Promise<string>((r) => { let b = ''; const f = (d: Buffer) => { b += d; if (b.includes('\n')) { long.off('data', f); r(b.trim()); } }; long.on('data', f); long.write(`${text}\n`); });
      assert.equal(await say('before'), 'before');

      const clientBefore = await opened(client, 'source');
      const serverBefore = await opened(s1, 'destination') + await opened(s2, 'destination');
      let stop = false;
      const results: string[] = [];
      const traffic = (async () => {
        for (let i = 0; !stop; i++) {
          const [addr, want] = i % 3 === 0 ? [VIP6, 'hello from server-2'] : i % 3 === 1 ? [VIP, 'hello from server-1'] : [s2.ip4, 'hello from server-2'];
          const got = await roundTrip(addr, 80 + (addr === s2.ip4 ? 8000 : 0), `n${i}`).catch((e: Error) => `error ${e.message}`);
          results.push(got === `${want} | n${i}` ? 'ok' : `${addr}: ${got}`);
        }
      })();
      const agentChild = () => execFileAsync(process.execPath, ['--import', 'tsx', path.join(REPO, 'test/support/ebpf-agent-child.ts'), bpf.pinDir, bpf.cgroup, ...(mode.shortcut ? ['--shortcut'] : []),
        ...[client, s1, s2].map((p) => `${p.ns.path}=${JSON.stringify(manifest(p))}`)], { cwd: REPO, timeout: 60_000 })
        .then(({ stdout }) => JSON.parse(stdout.trim().split('\n').pop()!) as { name: string; attachedNow: boolean }[]);
      const restarts = [];
      try {
        for (let r = 0; r < 2; r++) {
          // The agent goes away: its control-plane socket closes (proxies keep serving their last config)…
          await c.cp!.close();
          // …and the new one loads the programs (re-pointing the pinned links) and re-applies every pod's entry…
          restarts.push(await agentChild());
          // …then serves the proxies again from the same registry.
          await c.startControlPlane({ metrics: new PromRegistry() }); // a new process: its metrics start afresh
          applyRegistry();
          await waitFor(() => (c.cp!.stats().proxies as unknown[]).length === 3, 20_000, 'three proxies reconnected');
          assert.equal(await say(`during ${r}`), `during ${r}`);
        }
        await waitFor(() => results.length >= 10, 30_000, 'at least 10 connections during and after the restarts');
      } finally {
        // A failed step must not leave the traffic loop running (the test process would never exit).
        stop = true;
        await traffic;
      }
      for (const progs of restarts) assert.ok(progs.length >= 8 && progs.every((p) => !p.attachedNow), `a restart re-attached instead of re-pointing: ${JSON.stringify(progs)}`);
      assert.deepEqual(results.filter((r) => r !== 'ok'), [], `${results.length} connections`);
      console.log(`# ${results.length} connections (v4 VIP, v6 VIP, pod IP) across 2 agent restarts, all through both proxies`);
      // No pod uncaptured: every connection went through the client proxy, and each arrived through a server proxy.
      assert.equal(await opened(client, 'source') - clientBefore, results.length);
      await waitFor(async () => (await opened(s1, 'destination') + await opened(s2, 'destination')) - serverBefore === results.length, 5000, 'every connection counted inbound');
      assert.equal(await say('after'), 'after', 'the connection opened before the restarts still works');
      for (const p of [client, s1, s2]) assert.match((c.captureBackend as EbpfBackend).readEntry(sandboxAt(p.ns.path)).listing!, mode.shortcut ? /shortcut sk_msg/ : /shortcut off/);
      assert.equal(longErr, undefined);
      long.destroy();
    });
  });
}
