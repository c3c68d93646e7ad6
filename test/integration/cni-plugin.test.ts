// The weir-cni executable against the CNI spec: versions, error codes and
// messages, prevResult pass-through, STATUS and GC through a real agent
// (in-process CniServer + CaptureController + nftables backend in real netns).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { Netns, skipUnlessRoot } from '../support/netns.js';
import { CniRuntime } from '../support/cni-runtime.js';
import { CniServer } from '../../src/agent/cni-server.js';
import { CaptureController, type ControllerLogger } from '../../src/agent/capture-controller.js';
import { SandboxStore } from '../../src/agent/sandbox-store.js';
import { StaticResolver } from '../../src/agent/static-resolver.js';
import type { Pod } from '../../src/kube/pod-types.js';
import { buildPlan } from '../../src/redirect/plan.js';
import { NFT_TABLES, renderNftables, renderNftablesDefinition } from '../../src/redirect/render-nftables.js';
import { NftablesBackend } from '../../src/netns/nft-backend.js';

const REPO = path.resolve(import.meta.dirname, '../..');
const PLUGIN = path.join(REPO, 'dist/weir-cni');

const prevResult031 = {
  cniVersion: '0.3.1',
  interfaces: [{ name: 'eth0', mac: '0a:58:0a:f4:00:05', sandbox: '/var/run/netns/x' }],
  ips: [{ version: '4', address: '10.244.0.5/24', gateway: '10.244.0.1', interface: 0 }],
  routes: [{ dst: '0.0.0.0/0' }],
  dns: { nameservers: ['10.96.0.10'] },
  // A field this plugin does not know: must survive untouched.
  'x-primary-extension': { keep: [1, 2, 3] },
};

describe('weir-cni executable: spec behaviour', { skip: skipUnlessRoot() || (!existsSync(PLUGIN) && 'dist/weir-cni not built (npm run build)') }, () => {
  let dir: string;
  let socketPath: string;
  let server: CniServer;
  let ready = { ready: true, reason: 'chained' };
  const logged: { level: string; obj: object; msg: string }[] = [];
  const resolver = new StaticResolver();
  const namespaces: Netns[] = [];
  let rt: CniRuntime;

  const conf = (extra: Record<string, unknown> = {}) => JSON.stringify({ cniVersion: '1.1.0', name: 'wc-net', type: 'weir-cni', agentSocket: socketPath, agentTimeoutMs: 1000, ...extra });
  const env = (command: string, extra: Record<string, string> = {}) => ({ CNI_COMMAND: command, CNI_CONTAINERID: 'wcplugin1', CNI_NETNS: '/run/netns/none', CNI_IFNAME: 'eth0', CNI_ARGS: 'K8S_POD_NAMESPACE=default;K8S_POD_NAME=p', ...extra });
  const run = (command: string, stdin: string, extra: Record<string, string> = {}) => rt.exec(PLUGIN, env(command, extra), stdin);

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'wc-plugin-'));
    socketPath = path.join(dir, 'run', 'cni.sock');
    const logger: ControllerLogger = {
      debug: (obj, msg) => logged.push({ level: 'debug', obj, msg }),
      info: (obj, msg) => logged.push({ level: 'info', obj, msg }),
      warn: (obj, msg) => logged.push({ level: 'warn', obj, msg }),
      error: (obj, msg) => logged.push({ level: 'error', obj, msg }),
    };
    const controller = new CaptureController({
      resolver,
      backend: new NftablesBackend({ tables: NFT_TABLES, render: renderNftables, renderDefinition: renderNftablesDefinition }),
      planner: (pod) => buildPlan(pod),
      store: await SandboxStore.open(path.join(dir, 'run')),
    });
    server = new CniServer({ controller, socketPath, ready: () => ready, logger });
    await server.start();
    rt = new CniRuntime({ conflist: { cniVersion: '1.1.0', name: 'wc-net', plugins: [] }, binDirs: [path.dirname(PLUGIN)] });
  });

  after(async () => {
    await server.close();
    for (const ns of namespaces) ns.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  test('VERSION lists the supported versions, in the asked version', async () => {
    const r = await run('VERSION', JSON.stringify({ cniVersion: '0.4.0' }));
    assert.equal(r.exitCode, 0);
    assert.deepEqual(JSON.parse(r.stdout), { cniVersion: '0.4.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
  });

  test('malformed stdin: code 6; wrong field types: code 7 naming the field; unsupported version: code 1', async () => {
    const bad = await run('ADD', '{"cniVersion": "1.0.0", "name": ');
    assert.equal(bad.exitCode, 1);
    const e6 = JSON.parse(bad.stdout);
    assert.equal(e6.code, 6);
    assert.match(e6.msg, /not valid JSON/);
    assert.equal(e6.cniVersion, '1.1.0');

    for (const [field, value] of [['agentTimeoutMs', 99999999], ['excludeNamespaces', 'kube-system'], ['agentSocket', 'relative.sock'], ['logLevel', 'loud']] as const) {
      const r = await run('ADD', conf({ cniVersion: '1.0.0', [field]: value }));
      const e = JSON.parse(r.stdout);
      assert.equal(e.code, 7, r.stdout);
      assert.equal(e.cniVersion, '1.0.0');
      assert.match(e.msg, new RegExp(`stdin\\.${field}`));
    }
    const badIps = await run('ADD', conf({ prevResult: { cniVersion: '1.1.0', ips: [{ address: 'nope' }] } }));
    assert.match(JSON.parse(badIps.stdout).msg, /stdin\.prevResult\.ips\[0\]\.address/);

    const v = await run('ADD', conf({ cniVersion: '0.2.0' }));
    const e1 = JSON.parse(v.stdout);
    assert.equal(e1.code, 1);
    assert.match(e1.msg, /cniVersion.*0\.2\.0.*not supported/);
  });

  test('invalid environment: code 4 naming the variable', async () => {
    const r = await run('ADD', conf(), { CNI_CONTAINERID: '' });
    assert.equal(JSON.parse(r.stdout).code, 4);
    assert.match(JSON.parse(r.stdout).msg, /CNI_CONTAINERID/);
    const c = await run('FROB', conf());
    assert.match(JSON.parse(c.stdout).msg, /CNI_COMMAND/);
    const n = await run('ADD', conf(), { CNI_NETNS: '' });
    assert.match(JSON.parse(n.stdout).msg, /CNI_NETNS/);
  });

  test('prevResult of an older version passes through unchanged; nothing but the result on stdout', async () => {
    const ns = Netns.create('wc');
    namespaces.push(ns);
    // No proxy container: not captured, but the agent is asked.
    resolver.set({ metadata: { name: 'plain', namespace: 'default' }, spec: { containers: [{ name: 'app' }] } });
    const r = await run('ADD', conf({ cniVersion: '0.3.1', prevResult: prevResult031 }), { CNI_NETNS: ns.path, CNI_ARGS: 'K8S_POD_NAMESPACE=default;K8S_POD_NAME=plain' });
    assert.equal(r.exitCode, 0, r.stdout + r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), prevResult031);
    // The plugin logic runs in the agent (the executable is a relay): its log line is in the agent's log, with the pod's name.
    assert.ok(logged.some((l) => l.msg === 'not captured' && (l.obj as { podName?: string }).podName === 'plain'), JSON.stringify(logged.slice(-5)));
    // ADD without prevResult (weir-cni alone) answers an empty result in the conf's version.
    const alone = await run('ADD', conf({ cniVersion: '0.4.0' }), { CNI_NETNS: ns.path, CNI_ARGS: 'K8S_POD_NAMESPACE=default;K8S_POD_NAME=plain', CNI_CONTAINERID: 'wcplugin2' });
    assert.deepEqual(JSON.parse(alone.stdout), { cniVersion: '0.4.0', interfaces: [], ips: [], dns: {} });
  });

  test('podman-style CNI_ARGS (only K8S_POD_NAME) resolve in the default namespace', async () => {
    const ns = Netns.create('wc');
    namespaces.push(ns);
    const pod: Pod = { metadata: { name: 'podman-pod', namespace: 'default' }, spec: { containers: [{ name: 'app' }, { name: 'weir-proxy' }] } };
    resolver.set(pod);
    const r = await run('ADD', conf(), { CNI_NETNS: ns.path, CNI_ARGS: 'K8S_POD_NAME=podman-pod', CNI_CONTAINERID: 'wcpodman' });
    assert.equal(r.exitCode, 0, r.stdout);
    assert.match(ns.exec('nft', ['list', 'tables']), /table inet weir_nat/);
    const d = await run('DEL', conf(), { CNI_NETNS: ns.path, CNI_ARGS: 'K8S_POD_NAME=podman-pod', CNI_CONTAINERID: 'wcpodman' });
    assert.equal(d.exitCode, 0);
    assert.doesNotMatch(ns.exec('nft', ['list', 'tables']), /weir/);
  });

  test('GC removes rules and records of sandboxes not in cni.dev/valid-attachments', async () => {
    const [keep, gone] = [Netns.create('wc'), Netns.create('wc')];
    namespaces.push(keep, gone);
    for (const [ns, id] of [[keep, 'wckeep'], [gone, 'wcgone']] as const) {
      resolver.set({ metadata: { name: id, namespace: 'default' }, spec: { containers: [{ name: 'app' }, { name: 'weir-proxy' }] } });
      const r = await run('ADD', conf(), { CNI_NETNS: ns.path, CNI_ARGS: `K8S_POD_NAMESPACE=default;K8S_POD_NAME=${id}`, CNI_CONTAINERID: id });
      assert.equal(r.exitCode, 0, r.stdout);
    }
    const valid = [{ containerID: 'wckeep', ifname: 'eth0' }, { containerID: 'wcplugin2', ifname: 'eth0' }];
    const gc = await rt.exec(PLUGIN, { CNI_COMMAND: 'GC' }, conf({ 'cni.dev/valid-attachments': valid }));
    assert.equal(gc.exitCode, 0, gc.stdout + gc.stderr);
    assert.match(keep.exec('nft', ['list', 'tables']), /weir_nat/);
    assert.doesNotMatch(gone.exec('nft', ['list', 'tables']), /weir/);
    assert.ok(logged.some((l) => /leftovers/.test(l.msg) && JSON.stringify(l.obj).includes('wcgone')), JSON.stringify(logged.slice(-5)));
    // GC is a 1.1.0 command.
    const old = await rt.exec(PLUGIN, { CNI_COMMAND: 'GC' }, conf({ cniVersion: '1.0.0' }));
    assert.equal(JSON.parse(old.stdout).code, 1);
  });

  test('STATUS: success when the agent is ready, code 50 when not ready or down', async () => {
    const ok = await rt.exec(PLUGIN, { CNI_COMMAND: 'STATUS' }, conf());
    assert.equal(ok.exitCode, 0);
    assert.equal(ok.stdout, '');
    ready = { ready: false, reason: 'no primary CNI conf yet' };
    const notReady = await rt.exec(PLUGIN, { CNI_COMMAND: 'STATUS' }, conf());
    assert.equal(JSON.parse(notReady.stdout).code, 50);
    assert.match(JSON.parse(notReady.stdout).msg, /no primary CNI conf yet/);
    ready = { ready: true, reason: 'chained' };
    const down = await rt.exec(PLUGIN, { CNI_COMMAND: 'STATUS' }, conf({ agentSocket: path.join(dir, 'nothing.sock') }));
    assert.equal(JSON.parse(down.stdout).code, 50);
  });

  test('an agent that accepts but never answers: ADD fails with 11 within the configured bound', async () => {
    const hungSock = path.join(dir, 'hung.sock');
    const held: net.Socket[] = [];
    const hung = net.createServer((c) => { held.push(c); });
    await new Promise<void>((resolve) => hung.listen(hungSock, resolve));
    try {
      const started = performance.now();
      const r = await run('ADD', conf({ agentSocket: hungSock, agentTimeoutMs: 500 }), { CNI_NETNS: '/run/netns/none' });
      const took = performance.now() - started;
      const e = JSON.parse(r.stdout);
      assert.equal(e.code, 11);
      assert.match(e.msg, /no answer within 500 ms/);
      // 500 ms for ADD + at most 500 ms for the rollback DEL + process start.
      assert.ok(took < 2500, `ADD took ${took.toFixed(0)} ms`);
    } finally {
      for (const c of held) c.destroy();
      await new Promise((resolve) => hung.close(resolve));
    }
  });

  test('plugin errors are re-logged by the agent with the pod name', async () => {
    resolver.set({ metadata: { name: 'badpod', namespace: 'default', annotations: { 'traffic.sidecar.istio.io/includeInboundPorts': 'eighty' } }, spec: { containers: [{ name: 'weir-proxy' }] } });
    const r = await run('ADD', conf(), { CNI_NETNS: '/run/netns/none', CNI_ARGS: 'K8S_POD_NAMESPACE=default;K8S_POD_NAME=badpod', CNI_CONTAINERID: 'wcbad' });
    assert.equal(JSON.parse(r.stdout).code, 7);
    assert.match(JSON.parse(r.stdout).msg, /includeInboundPorts/);
    const line = logged.find((l) => (l.obj as { source?: string; podName?: string }).source === 'weir-cni' && (l.obj as { podName?: string }).podName === 'badpod');
    assert.ok(line, JSON.stringify(logged));
    assert.equal(line.level, 'error');
    assert.match(line.msg, /includeInboundPorts/);
  });
});
