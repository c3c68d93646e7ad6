// The real agent (startAgent) against the TestApiServer, with the real CNI
// chain (bridge + host-local + weir-cni installed by the agent) run the way a
// container runtime runs it. Proves with traffic that pods with the proxy
// are captured, that pods without it or opted out are not, that a pod whose
// sandbox existed before the agent started is repaired (found through a
// /proc scan), that flushed rules come back within one repair period (found
// through the SandboxStore), and that the node CLI answers with its exit codes.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { Netns, sh, skipUnlessRoot, uniq } from '../support/netns.js';
import { TestApiServer, type KubeObject } from '../support/apiserver.js';
import { weirCli } from '../support/cli.js';
import { CniRuntime, type SandboxSpec } from '../support/cni-runtime.js';
import { startAgent, type Agent } from '../../src/agent/agent.js';
import type { AgentConfig } from '../../src/agent/config.js';
import { socketInNetns, socketFd, originalDst } from '../../src/native/addon.js';
import { until } from '../support/poll.js';

const REPO = path.resolve(import.meta.dirname, '../..');
const PLUGIN = path.join(REPO, 'dist/weir-cni');
const NODE = `wk-node-${randomUUID().slice(0, 6)}`;
const NS = 'wk-apps';

function pod(name: string, opts: { proxy?: boolean; annotations?: Record<string, string>; hostNetwork?: boolean; uid?: string; phase?: string } = {}): KubeObject {
  const containers: Record<string, unknown>[] = [{ name: 'app' }];
  if (opts.proxy ?? true) containers.push({ name: 'weir-proxy', securityContext: { runAsUser: 1337, runAsGroup: 1337 } });
  return {
    kind: 'Pod',
    metadata: { name, namespace: NS, uid: opts.uid ?? randomUUID(), annotations: opts.annotations ?? {}, creationTimestamp: new Date(Date.now() - 600_000).toISOString() },
    spec: { nodeName: NODE, hostNetwork: opts.hostNetwork ?? false, containers },
    status: { phase: opts.phase ?? 'Running' },
  };
}

function weirTables(ns: Netns): string[] {
  return [...ns.exec('nft', ['list', 'tables']).matchAll(/^table inet (weir\S*)$/gm)].map((m) => m[1]);
}

/** A listener inside `ns` answering each connection with its original destination. */
async function captureListener(ns: Netns, port: number): Promise<{ close(): Promise<void> }> {
  const fd = await socketInNetns(ns.path, { kind: 'tcp-listen', family: 4, address: '0.0.0.0', port });
  const open = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    open.add(sock);
    sock.on('close', () => open.delete(sock));
    sock.on('error', () => undefined);
    const od = originalDst(socketFd(sock));
    sock.end(`${od.address}:${od.port}\n`);
  });
  await new Promise<void>((resolve) => server.listen({ fd }, resolve));
  return {
    close: () => new Promise((resolve) => {
      server.close(() => resolve());
      for (const s of open) s.destroy();
    }),
  };
}

function connectFrom(ns: Netns, ip: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile('ip', ['netns', 'exec', ns.name, 'socat', '-T', '3', '-', `TCP:${ip}:${port},connect-timeout=2`], { encoding: 'utf8', timeout: 8000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`socat in ${ns.name} to ${ip}:${port}: ${stderr || err.message}`));
      else resolve(stdout.trim());
    });
    child.stdin?.end('hi\n');
  });
}

// The CLI bundled once per test process (test/support/cli.ts): a tsx start per call costs seconds under load.
const cli = (args: string[]) => weirCli(args);

describe('weir agent: Kubernetes + real CNI chain + repair', { timeout: 60_000, skip: skipUnlessRoot() || (!existsSync(PLUGIN) && 'dist/weir-cni not built (npm run build)') }, () => {
  const bridge = uniq('wkb');
  const subnet = `10.${100 + Math.floor(Math.random() * 90)}.${1 + Math.floor(Math.random() * 250)}`;
  const namespaces: Netns[] = [];
  const sandboxes: SandboxSpec[] = [];
  let api: TestApiServer;
  let dir: string;
  let confDir: string;
  let procRoot: string;
  let agent: Agent | undefined;
  let runtime: CniRuntime;
  let early: Netns;
  const earlyUid = randomUUID();

  /** A fake host /proc entry: pid → netns symlink + a kubelet-style cgroup (systemd driver form). */
  function fakeProc(pid: number, netnsPath: string, podUid?: string): void {
    mkdirSync(path.join(procRoot, String(pid), 'ns'), { recursive: true });
    symlinkSync(netnsPath, path.join(procRoot, String(pid), 'ns', 'net'));
    const cg = podUid ? `0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${podUid.replace(/-/g, '_')}.slice/cri-containerd-${randomUUID().replace(/-/g, '')}.scope\n` : '0::/init.scope\n';
    writeFileSync(path.join(procRoot, String(pid), 'cgroup'), cg);
  }

  async function runPod(name: string, obj: KubeObject): Promise<{ ns: Netns; ip: string; spec: SandboxSpec }> {
    api.put(obj);
    await until(`${name} in the informer`, () => agent!.pods.get(NS, name));
    const ns = Netns.create('wkp');
    namespaces.push(ns);
    const spec: SandboxSpec = { containerId: `wk-${randomUUID()}`, netns: ns.path, args: { K8S_POD_NAMESPACE: NS, K8S_POD_NAME: name, K8S_POD_UID: obj.metadata.uid! } };
    const out = await runtime.add(spec);
    assert.ok(out.ok, `ADD ${name}: ${JSON.stringify(!out.ok && out.error)}`);
    sandboxes.push(spec);
    const ip = String((out.result!.ips as { address: string }[])[0].address).split('/')[0];
    return { ns, ip, spec };
  }

  before(async () => {
    api = await TestApiServer.start({ bookmarkIntervalMs: 500 });
    dir = mkdtempSync(path.join(tmpdir(), 'wk-agent-'));
    confDir = path.join(dir, 'net.d');
    procRoot = path.join(dir, 'hostproc');
    mkdirSync(confDir, { recursive: true });
    mkdirSync(procRoot, { recursive: true });
    const primary = {
      cniVersion: '1.0.0', name: `wk-net-${bridge}`,
      plugins: [{ type: 'bridge', bridge, isGateway: true, ipMasq: false, ipam: { type: 'host-local', dataDir: path.join(dir, 'ipam'), ranges: [[{ subnet: `${subnet}.0/24` }]] } }],
    };
    writeFileSync(path.join(confDir, '10-wk.conflist'), JSON.stringify(primary, null, 2));

    // The node-boot race: this pod's sandbox exists before weir does.
    api.put({ kind: 'Namespace', metadata: { name: NS } });
    api.put(pod('early', { uid: earlyUid }));
    early = Netns.create('wke');
    namespaces.push(early);
    fakeProc(1, '/proc/1/ns/net'); // the host's netns: never a pod
    fakeProc(4242, early.path, earlyUid);
    fakeProc(4243, early.path, earlyUid); // a second process of the same pod
    fakeProc(777, '/proc/1/ns/net'); // a host process

    const config: AgentConfig = {
      nodeName: NODE, kubeconfig: api.writeKubeconfig(dir), cniConfDir: confDir, cniBinDir: path.join(dir, 'bin'), cniPluginBinary: PLUGIN,
      install: true, runDir: path.join(dir, 'run'), backend: 'nftables', ebpfFallback: 'nftables', bpfPinDir: '/sys/fs/bpf/weir', repairMode: 'repair', repairIntervalMs: 1000,
      metricsAddr: '127.0.0.1:0', hostProc: procRoot, excludeNamespaces: ['kube-system'], keepChainOnShutdown: false,
      controlPlane: true, clusterDomain: 'cluster.local', logLevel: process.env.WK_LOG ?? 'silent',
    };
    agent = await startAgent(config);
    runtime = new CniRuntime({ conflist: path.join(confDir, '10-wk.conflist'), binDirs: [path.join(dir, 'bin'), '/usr/lib/cni'] });
  });

  after(async () => {
    for (const s of sandboxes) await runtime?.del(s).catch(() => undefined);
    await agent?.close();
    for (const ns of namespaces) ns.destroy();
    try { sh('ip', ['link', 'del', bridge]); } catch { /* never created */ }
    await api?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('the pod that started before the agent was repaired by the first pass (found via /proc scan) and its traffic is captured', async () => {
    assert.ok(weirTables(early).length > 0, 'weir tables programmed in the early pod');
    const outcome = agent!.repair.lastRun!.outcomes.find((o) => o.name === 'early');
    assert.ok(outcome && ['repaired', 'ok'].includes(outcome.result) && outcome.via === 'proc-scan', JSON.stringify(outcome));
    // A repaired pod gets its control-plane socket too (no record: keyed by pod UID).
    await until('pod socket in the early pod', () => early.exec('ss', ['-xlnH']).includes('@weir/proxy'));
    // Give the netns a route out (a veth pair inside it): traffic to loopback-routed addresses is never captured.
    early.ip('link', 'add', 'd0', 'type', 'veth', 'peer', 'name', 'd1');
    early.ip('addr', 'add', '192.0.2.10/24', 'dev', 'd0');
    early.ip('link', 'set', 'd0', 'up');
    early.ip('link', 'set', 'd1', 'up');
    const l = await captureListener(early, 15001);
    try {
      assert.equal(await connectFrom(early, '192.0.2.99', 8080), '192.0.2.99:8080');
    } finally { await l.close(); }
    await until('status annotation enabled', () => api.get('Pod', NS, 'early')?.metadata.annotations?.['weir.io/capture'] === 'enabled');
    await until('CaptureRepaired event', () => api.events(NS).some((e) => (e as { reason?: string }).reason === 'CaptureRepaired'));
  });

  test('a pod with the proxy is captured through the chain: outbound lands on 15001 with its original destination', async () => {
    const { ns } = await runPod('meshed', pod('meshed'));
    assert.ok(weirTables(ns).length > 0);
    const l = await captureListener(ns, 15001);
    try {
      assert.equal(await connectFrom(ns, `${subnet}.250`, 9090), `${subnet}.250:9090`);
    } finally { await l.close(); }
    await until('annotation enabled', () => api.get('Pod', NS, 'meshed')?.metadata.annotations?.['weir.io/capture'] === 'enabled');
  });

  test('pods without the proxy, opted out, or hostNetwork are not captured', async () => {
    const plain = await runPod('plain', pod('plain', { proxy: false }));
    const opted = await runPod('opted', pod('opted', { annotations: { 'sidecar.istio.io/inject': 'false' } }));
    assert.deepEqual(weirTables(plain.ns), []);
    assert.deepEqual(weirTables(opted.ns), []);
    await until('annotations disabled', () =>
      api.get('Pod', NS, 'plain')?.metadata.annotations?.['weir.io/capture'] === 'disabled:no-proxy'
      && api.get('Pod', NS, 'opted')?.metadata.annotations?.['weir.io/capture'] === 'disabled:opted-out');
    // A hostNetwork pod whose process lives in the host netns: the repair pass leaves it (and the host) alone.
    const hostUid = randomUUID();
    api.put(pod('hostnet', { hostNetwork: true, uid: hostUid }));
    fakeProc(900, '/proc/1/ns/net', hostUid);
    await until('hostnet in the informer', () => agent!.pods.get(NS, 'hostnet'));
    const outcomes = await agent!.repair.runOnce();
    assert.equal(outcomes.find((o) => o.name === 'hostnet'), undefined);
    assert.equal(outcomes.find((o) => o.name === 'plain'), undefined);
    assert.doesNotMatch(sh('nft', ['list', 'tables']), /table inet weir/);
  });

  test('rules flushed by hand are reprogrammed within one repair period', async () => {
    const { ns } = await runPod('flushed', pod('flushed'));
    const before = weirTables(ns);
    assert.ok(before.length > 0);
    const t0 = Date.now();
    ns.exec('nft', ['flush', 'ruleset']);
    assert.deepEqual(weirTables(ns), []);
    await until('rules back', () => weirTables(ns).length === before.length, 5000);
    const took = Date.now() - t0;
    assert.ok(took < 2500, `repaired after ${took} ms (interval 1000 ms)`);
    const l = await captureListener(ns, 15001);
    try { assert.equal(await connectFrom(ns, `${subnet}.251`, 81), `${subnet}.251:81`); } finally { await l.close(); }
    const metrics = await (await fetch(`${agent!.metricsUrl}/metrics`)).text();
    assert.match(metrics, /weir_agent_repairs_total\{result="repaired"\} [1-9]/);
  });

  test('metrics and health endpoints', async () => {
    const ready = await fetch(`${agent!.metricsUrl}/readyz`);
    assert.equal(ready.status, 200, await ready.text());
    assert.equal((await fetch(`${agent!.metricsUrl}/healthz`)).status, 200);
    const m = await (await fetch(`${agent!.metricsUrl}/metrics`)).text();
    assert.match(m, /weir_agent_cni_requests_total\{route="\/v1\/cni\/add",result="ok"\} [1-9]/);
    assert.match(m, /weir_agent_pods_captured [2-9]/);
    assert.match(m, /weir_agent_install_ready 1/);
    assert.match(m, /weir_agent_informer_synced\{informer="pods"\} 1/);
    assert.match(m, /weir_agent_rule_programming_seconds_count\{backend="nftables"\} [1-9]/);
    // The proxies' control plane runs inside the agent, on the same registry.
    assert.match(m, /weir_controlplane_proxies_connected 0/);
    assert.ok(existsSync(path.join(dir, 'run', 'proxy.sock')));
  });

  test('the informer survives closed watches and 410 Gone: a pod created afterwards is captured', async () => {
    api.closeWatches();
    api.expireHistory();
    const { ns } = await runPod('after410', pod('after410'));
    assert.ok(weirTables(ns).length > 0);
    assert.ok(agent!.pods.health().relists >= 1);
  });

  test('node CLI: pods, check, drift exit 3, repair, usage 2, unreachable 4', async () => {
    await agent!.repair.stop(); // no background repair from here: the CLI must see the drift
    const sock = agent!.adminSocket;
    const pods = await cli(['pods', '--socket', sock, '-o', 'json']);
    assert.equal(pods.code, 0, pods.stderr);
    const rows = JSON.parse(pods.stdout) as { name: string; captured: boolean; reason: string; sandboxes: { planHash?: string }[] }[];
    assert.deepEqual(rows.find((r) => r.name === 'plain'), { ...rows.find((r) => r.name === 'plain'), captured: false, reason: 'no-proxy' });
    assert.equal(rows.find((r) => r.name === 'meshed')?.captured, true);
    const ok = await cli(['check', `${NS}/meshed`, '--socket', sock]);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    const meshedNs = agent!.store.list().find((s) => s.podName === 'meshed')!.netns;
    sh('ip', ['netns', 'exec', path.basename(meshedNs), 'nft', 'flush', 'ruleset']);
    const drift = await cli(['check', `${NS}/meshed`, '--socket', sock, '-o', 'json']);
    assert.equal(drift.code, 3, drift.stdout + drift.stderr);
    assert.ok((JSON.parse(drift.stdout) as { differences: string[] }).differences.length > 0);
    const fixed = await cli(['repair', `${NS}/meshed`, '--socket', sock]);
    assert.equal(fixed.code, 0, fixed.stdout + fixed.stderr);
    assert.equal((await cli(['check', `${NS}/meshed`, '--socket', sock])).code, 0);
    const rules = await cli(['pod-rules', `${NS}/meshed`, '--socket', sock]);
    assert.equal(rules.code, 0, rules.stderr);
    assert.match(rules.stdout, /15001/);
    // One plan hash everywhere: the sandbox record `weir pods` shows is the one the kernel holds.
    const kernelHash = /planHash=([0-9a-f]+)/.exec(rules.stdout)?.[1];
    assert.match(kernelHash ?? '', /^[0-9a-f]{12}$/, rules.stdout);
    assert.deepEqual(rows.find((r) => r.name === 'meshed')!.sandboxes.map((s) => s.planHash), [kernelHash]);
    assert.equal((await cli(['check', 'Bad/Pod/x', '--socket', sock])).code, 2);
    assert.equal((await cli(['status', '--socket', path.join(dir, 'nope.sock')])).code, 4);
    const logs = await cli(['logs', '--socket', sock, '--tail', '5', '-o', 'json']);
    assert.equal(logs.code, 0);
    assert.equal((JSON.parse(logs.stdout) as unknown[]).length, 5);
  });

  test('shutdown undoes the chaining (keepChainOnShutdown=false)', async () => {
    await agent!.close();
    agent = undefined;
    const conf = JSON.parse(readFileSync(path.join(confDir, '10-wk.conflist'), 'utf8')) as { plugins: { type: string }[] };
    assert.deepEqual(conf.plugins.map((p) => p.type), ['bridge']);
  });
});
