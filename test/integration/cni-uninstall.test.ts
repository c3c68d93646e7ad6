// Fail closed across restarts, then a clean uninstall, on the real CNI chain
// (Debian's bridge + host-local + portmap, weir-cni chained by the agent's
// installer, run as a container runtime runs them). The agent with its
// DEFAULT settings keeps weir-cni chained when it stops, so a new pod that
// may need capture waits (code 11) instead of starting uncaptured;
// `weir uninstall` (the real CLI) refuses while an agent serves, then removes
// weir-cni and its binary, leaving the primary conf exactly as it was: a new
// sandbox starts with the primary CNI only, and a pod created while weir was
// installed is still torn down cleanly.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { Netns, sh, skipUnlessRoot, uniq } from '../support/netns.js';
import { TestApiServer, type KubeObject } from '../support/apiserver.js';
import { CniRuntime, type SandboxSpec } from '../support/cni-runtime.js';
import { startAgent, type Agent } from '../../src/agent/agent.js';
import { resolveAgentConfig } from '../../src/agent/config.js';

const REPO = path.resolve(import.meta.dirname, '../..');
const PLUGIN = path.join(REPO, 'dist/weir-cni');
const NODE = `wu-node-${randomUUID().slice(0, 6)}`;
const NS = 'wu-apps';

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', path.join(REPO, 'src/cli/main.ts'), ...args], { cwd: REPO, encoding: 'utf8', timeout: 90_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

function meshPod(name: string): KubeObject {
  return {
    kind: 'Pod',
    metadata: { name, namespace: NS, uid: randomUUID(), creationTimestamp: new Date().toISOString() },
    spec: { nodeName: NODE, containers: [{ name: 'app' }, { name: 'weir-proxy', securityContext: { runAsUser: 1337, runAsGroup: 1337 } }] },
    status: { phase: 'Running' },
  };
}

describe('weir-cni stays chained across agent restarts; weir uninstall removes it cleanly', { timeout: 300_000, skip: skipUnlessRoot() || (!existsSync(PLUGIN) && 'dist/weir-cni not built (npm run build)') }, () => {
  const bridge = uniq('wub');
  const subnet = `10.${100 + Math.floor(Math.random() * 90)}.${1 + Math.floor(Math.random() * 250)}`;
  const netnss: Netns[] = [];
  let api: TestApiServer;
  let dir: string;
  let confFile: string;
  let primaryText: string;
  let runtime: CniRuntime;
  let agent: Agent | undefined;
  const dirs = () => ({ conf: path.join(dir, 'net.d'), bin: path.join(dir, 'bin'), run: path.join(dir, 'run') });
  const pluginTypes = () => (JSON.parse(readFileSync(confFile, 'utf8')).plugins as { type: string }[]).map((p) => p.type);
  const leases = () => { const d = path.join(dir, 'ipam', `wu-net-${bridge}`); return existsSync(d) ? readdirSync(d).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)) : []; };

  async function start(): Promise<Agent> {
    // The agent's own defaults (no keep-chain setting given), as the DaemonSet runs it.
    const cfg = resolveAgentConfig({
      nodeName: NODE, kubeconfig: api.writeKubeconfig(dir), cniConfDir: dirs().conf, cniBinDir: dirs().bin, cniPluginBinary: PLUGIN,
      runDir: dirs().run, hostProc: path.join(dir, 'proc'), metricsAddr: '127.0.0.1:0', logLevel: 'silent', controlPlane: false,
    }, {});
    assert.equal(cfg.keepChainOnShutdown, true);
    agent = await startAgent(cfg);
    return agent;
  }

  function sandbox(obj: KubeObject): { ns: Netns; spec: SandboxSpec } {
    const ns = Netns.create('wup');
    netnss.push(ns);
    return { ns, spec: { containerId: `wu-${randomUUID()}`, netns: ns.path, args: { K8S_POD_NAMESPACE: NS, K8S_POD_NAME: obj.metadata.name!, K8S_POD_UID: obj.metadata.uid! } } };
  }

  before(async () => {
    api = await TestApiServer.start({ bookmarkIntervalMs: 500 });
    dir = mkdtempSync(path.join(tmpdir(), 'wu-'));
    mkdirSync(dirs().conf, { recursive: true });
    mkdirSync(path.join(dir, 'proc'), { recursive: true });
    confFile = path.join(dirs().conf, '10-wu.conflist');
    primaryText = JSON.stringify({
      cniVersion: '1.0.0', name: `wu-net-${bridge}`,
      plugins: [
        { type: 'bridge', bridge, isGateway: true, ipMasq: false, ipam: { type: 'host-local', dataDir: path.join(dir, 'ipam'), ranges: [[{ subnet: `${subnet}.0/24` }]] } },
        { type: 'portmap', capabilities: { portMappings: true } },
      ],
    }, null, 2);
    writeFileSync(confFile, primaryText, { mode: 0o644 });
    api.put({ kind: 'Namespace', metadata: { name: NS } });
    runtime = new CniRuntime({ conflist: confFile, binDirs: [dirs().bin, '/usr/lib/cni'] });
  });

  after(async () => {
    await agent?.close().catch(() => undefined);
    for (const ns of netnss) ns.destroy();
    try { sh('ip', ['link', 'del', bridge]); } catch { /* never created */ }
    await api?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const early = meshPod('early');
  let earlySandbox: { ns: Netns; spec: SandboxSpec };

  test('installed: a meshed pod is captured through the chain', async () => {
    await start();
    assert.deepEqual(pluginTypes(), ['bridge', 'portmap', 'weir-cni']);
    api.put(early);
    earlySandbox = sandbox(early);
    const deadline = Date.now() + 10_000;
    let r = await runtime.add(earlySandbox.spec);
    while (!r.ok && Date.now() < deadline) { await runtime.del(earlySandbox.spec); await new Promise((res) => setTimeout(res, 200)); r = await runtime.add(earlySandbox.spec); }
    assert.ok(r.ok, JSON.stringify(!r.ok && r.error));
    assert.match(earlySandbox.ns.exec('nft', ['list', 'tables']), /table inet weir/);
  });

  test('the agent stops: weir-cni stays chained, so a new meshed pod fails closed with code 11', async () => {
    await agent!.close();
    agent = undefined;
    assert.deepEqual(pluginTypes(), ['bridge', 'portmap', 'weir-cni'], 'default keepChainOnShutdown keeps the entry');
    assert.ok(existsSync(path.join(dirs().bin, 'weir-cni')));
    const pod = meshPod('during-restart');
    api.put(pod);
    const { spec } = sandbox(pod);
    const before = leases();
    const r = await runtime.add(spec);
    assert.equal(r.ok, false);
    if (!r.ok) { assert.equal(r.failedPlugin, 'weir-cni'); assert.equal(r.error.code, 11); }
    assert.ok((await runtime.del(spec)).ok);
    assert.deepEqual(leases(), before);
  });

  test('weir uninstall refuses while an agent serves (it would chain again)', async () => {
    await start();
    try {
      const r = await cli(['uninstall', '--cni-conf-dir', dirs().conf, '--cni-bin-dir', dirs().bin, '--run-dir', dirs().run, '--bpf-pin-dir', path.join(dirs().run, 'no-bpf')]);
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.match(r.stderr, /still serving.*kubectl delete -k daemonset/);
      assert.deepEqual(pluginTypes(), ['bridge', 'portmap', 'weir-cni']);
    } finally {
      await agent!.close();
      agent = undefined;
    }
  });

  test('uninstalled: the primary conf holds exactly its own plugins again, the binary is gone, new pods start with the primary CNI only', async () => {
    const r = await cli(['uninstall', '--cni-conf-dir', dirs().conf, '--cni-bin-dir', dirs().bin, '--run-dir', dirs().run, '--bpf-pin-dir', path.join(dirs().run, 'no-bpf'), '-o', 'json']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { unchained: [confFile], deleted: [], binaryRemoved: path.join(dirs().bin, 'weir-cni'), ebpfRemoved: [], ebpfDetachErrors: [] });
    assert.deepEqual(JSON.parse(readFileSync(confFile, 'utf8')), JSON.parse(primaryText));
    assert.equal(existsSync(path.join(dirs().bin, 'weir-cni')), false);

    const pod = meshPod('after-uninstall');
    api.put(pod);
    const { ns, spec } = sandbox(pod);
    const added = await runtime.add(spec);
    assert.ok(added.ok, JSON.stringify(!added.ok && added.error));
    assert.deepEqual(added.runs.map((x) => x.plugin), ['bridge', 'portmap']);
    assert.doesNotMatch(ns.exec('nft', ['list', 'tables']), /weir/);
    assert.ok((await runtime.del(spec)).ok);
    // The pod from before the uninstall is torn down by the primary CNI alone, lease released.
    const before = leases().length;
    const del = await runtime.del(earlySandbox.spec);
    assert.ok(del.ok, JSON.stringify(del));
    assert.equal(leases().length, before - 1);
    // Idempotent.
    const again = await cli(['uninstall', '--cni-conf-dir', dirs().conf, '--cni-bin-dir', dirs().bin, '--run-dir', dirs().run, '--bpf-pin-dir', path.join(dirs().run, 'no-bpf')]);
    assert.equal(again.code, 0);
    assert.match(again.stdout, /not installed/);
  });
});
