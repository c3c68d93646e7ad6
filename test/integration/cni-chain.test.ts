// weir-cni in a real CNI chain: Debian's bridge + host-local + portmap with
// weir-cni appended by weir's installer, run exactly as a runtime does, with
// the agent's CNI server and capture controller in-process and the capture
// core's nftables backend programming real netns. Proves capture with real
// traffic between two "pods", and fail-closed / DEL / CHECK behaviour.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, existsSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { execFile } from 'node:child_process';
import { Netns, skipUnlessRoot, uniq, sh } from '../support/netns.js';
import { CniRuntime, type SandboxSpec } from '../support/cni-runtime.js';
import { Installer } from '../../src/agent/installer.js';
import { CniServer } from '../../src/agent/cni-server.js';
import { CaptureController } from '../../src/agent/capture-controller.js';
import { SandboxStore } from '../../src/agent/sandbox-store.js';
import { StaticResolver } from '../../src/agent/static-resolver.js';
import type { CaptureEvent } from '../../src/agent/contracts.js';
import type { Pod } from '../../src/kube/pod-types.js';
import { buildPlan } from '../../src/redirect/plan.js';
import { NFT_TABLES, renderNftables, renderNftablesDefinition } from '../../src/redirect/render-nftables.js';
import { NftablesBackend } from '../../src/netns/nft-backend.js';
import { socketInNetns, socketFd, originalDst } from '../../src/native/addon.js';

const REPO = path.resolve(import.meta.dirname, '../..');
const PLUGIN = path.join(REPO, 'dist/weir-cni');

function meshPod(name: string, namespace = 'default', annotations: Record<string, string> = {}): Pod {
  return {
    metadata: { name, namespace, uid: `uid-${name}`, annotations },
    spec: { containers: [{ name: 'app' }, { name: 'weir-proxy', securityContext: { runAsUser: 1337, runAsGroup: 1337 } }] },
  };
}

function weirTables(ns: Netns): string[] {
  return [...ns.exec('nft', ['list', 'tables']).matchAll(/^table inet (weir\S*)$/gm)].map((m) => m[1]);
}

/** A TCP listener inside `ns` that records each connection's original destination. */
async function captureListener(ns: Netns, port: number): Promise<{ seen: string[]; close(): Promise<void> }> {
  const fd = await socketInNetns(ns.path, { kind: 'tcp-listen', family: 4, address: '0.0.0.0', port });
  const seen: string[] = [];
  const open = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    open.add(sock);
    sock.on('close', () => open.delete(sock));
    const od = originalDst(socketFd(sock));
    seen.push(`${od.address}:${od.port}`);
    sock.end(`${od.address}:${od.port}\n`);
  });
  await new Promise<void>((resolve) => server.listen({ fd }, resolve));
  return {
    seen,
    close: () => new Promise((resolve) => {
      server.close(() => resolve());
      for (const s of open) s.destroy();
    }),
  };
}

/**
 * Connect from inside `ns` (optionally as the proxy's uid) and return what
 * the listener answered. Asynchronous: the listeners run in this process.
 */
function connectFrom(ns: Netns, ip: string, port: number, uid?: number): Promise<string> {
  const socat = ['socat', '-T', '3', '-', `TCP:${ip}:${port},connect-timeout=3`];
  const cmd = uid === undefined ? socat : ['setpriv', `--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', ...socat];
  return new Promise((resolve, reject) => {
    const child = execFile('ip', ['netns', 'exec', ns.name, ...cmd], { encoding: 'utf8', timeout: 8000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`socat in ${ns.name} to ${ip}:${port} failed: ${stderr || err.message}`));
      else resolve(stdout.trim());
    });
    child.stdin?.end('hi\n');
  });
}

describe('weir-cni chained behind bridge + host-local + portmap', { timeout: 60000, skip: skipUnlessRoot() || (!existsSync(PLUGIN) && 'dist/weir-cni not built (npm run build)') }, () => {
  const bridge = uniq('wcb');
  const subnet = `10.${100 + Math.floor(Math.random() * 90)}.${1 + Math.floor(Math.random() * 250)}`;
  let dir: string;
  let confDir: string;
  let dataDir: string;
  let socketPath: string;
  let installer: Installer;
  let server: CniServer | undefined;
  let controller: CaptureController;
  let resolver: StaticResolver;
  let runtime: CniRuntime;
  const events: CaptureEvent[] = [];
  const namespaces: Netns[] = [];

  const newPod = (): Netns => { const ns = Netns.create('wc'); namespaces.push(ns); return ns; };
  const sandbox = (ns: Netns, pod: Pod, extra: Partial<SandboxSpec> = {}): SandboxSpec => ({
    containerId: `wc${ns.name.replace(/\W/g, '')}`,
    netns: ns.path,
    args: { K8S_POD_NAMESPACE: pod.metadata.namespace!, K8S_POD_NAME: pod.metadata.name!, K8S_POD_UID: pod.metadata.uid!, K8S_POD_INFRA_CONTAINER_ID: `wc${ns.name.replace(/\W/g, '')}` },
    ...extra,
  });
  /** host-local keeps one file per leased address under dataDir/<network name>. */
  const leases = () => {
    const d = path.join(dataDir, `wc-net-${bridge}`);
    return existsSync(d) ? readdirSync(d).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)) : [];
  };
  const podIp = (result: Record<string, unknown> | undefined) => String((result!.ips as { address: string }[])[0].address).split('/')[0];

  async function startAgent(): Promise<void> {
    const store = await SandboxStore.open(path.join(dir, 'run'));
    controller = new CaptureController({
      resolver,
      backend: new NftablesBackend({ tables: NFT_TABLES, render: renderNftables, renderDefinition: renderNftablesDefinition }),
      planner: (pod) => buildPlan(pod),
      store,
      onEvent: (e) => events.push(e),
    });
    server = new CniServer({ controller, socketPath, ready: () => installer.ready() });
    await server.start();
  }

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'wc-chain-'));
    confDir = path.join(dir, 'net.d');
    dataDir = path.join(dir, 'ipam');
    socketPath = path.join(dir, 'run', 'cni.sock');
    sh('mkdir', ['-p', confDir]);
    // The bridge plugin adopts an existing bridge. A fixed MAC stops the
    // kernel from changing the bridge's address as ports join, which the
    // bridge plugin's own CHECK (v1.1.1) reports as "Mac doesn't match".
    sh('ip', ['link', 'add', bridge, 'type', 'bridge']);
    sh('ip', ['link', 'set', bridge, 'address', `02:77:63:${subnet.split('.').slice(1).map((n) => Number(n).toString(16).padStart(2, '0')).join(':')}:01`, 'up']);
    const primary = {
      cniVersion: '1.0.0',
      name: `wc-net-${bridge}`,
      plugins: [
        { type: 'bridge', bridge, isGateway: false, ipMasq: false, ipam: { type: 'host-local', dataDir, ranges: [[{ subnet: `${subnet}.0/24` }]] } },
        { type: 'portmap', capabilities: { portMappings: true } },
      ],
    };
    sh('sh', ['-c', `cat > ${confDir}/10-wc.conflist`], { input: JSON.stringify(primary, null, 2) });
    installer = new Installer({ confDir, binDir: path.join(dir, 'bin'), pluginBinary: PLUGIN, pluginConf: { agentSocket: socketPath, agentTimeoutMs: 2000 } });
    await installer.start();
    resolver = new StaticResolver();
    await startAgent();
    runtime = new CniRuntime({ conflist: path.join(confDir, '10-wc.conflist'), binDirs: [path.join(dir, 'bin'), '/usr/lib/cni'] });
  });

  after(async () => {
    await server?.close();
    await installer?.stop();
    for (const ns of namespaces) ns.destroy();
    try { sh('ip', ['link', 'del', bridge]); } catch { /* never created */ }
    rmSync(dir, { recursive: true, force: true });
  });

  test('the installer chained weir-cni last, keeping the primary plugins unchanged', () => {
    const conf = JSON.parse(readFileSync(path.join(confDir, '10-wc.conflist'), 'utf8'));
    assert.deepEqual(conf.plugins.map((p: { type: string }) => p.type), ['bridge', 'portmap', 'weir-cni']);
    assert.equal(conf.plugins[0].bridge, bridge);
    assert.deepEqual(installer.ready(), { ready: true, reason: 'chained' });
    assert.equal(server!.readiness().ready, true);
  });

  test('two captured pods: outbound lands on 15001 in the client, inbound on 15006 in the server, with original destinations', async () => {
    const before = leases();
    const [a, b] = [newPod(), newPod()];
    const [podA, podB] = [meshPod(`client-${a.name}`), meshPod(`server-${b.name}`)];
    resolver.set(podA); resolver.set(podB);
    const ra = await runtime.add(sandbox(a, podA));
    assert.ok(ra.ok, JSON.stringify(ra));
    const rb = await runtime.add(sandbox(b, podB));
    assert.ok(rb.ok, JSON.stringify(rb));
    // prevResult passes through weir-cni unchanged: the final result is the bridge's/portmap's.
    const bridgeOut = JSON.parse(ra.runs[0].stdout);
    assert.deepEqual(ra.result, JSON.parse(ra.runs[1].stdout));
    assert.deepEqual(ra.result!.ips, bridgeOut.ips);
    assert.equal(ra.result!.cniVersion, '1.0.0');
    const [ipA, ipB] = [podIp(ra.result), podIp(rb.result)];
    // weir_tproxy exists only in TPROXY pods; these are REDIRECT pods.
    assert.deepEqual(weirTables(a).sort(), NFT_TABLES.filter((t) => t !== 'weir_tproxy').sort());

    const outbound = await captureListener(a, 15001);
    const inbound = await captureListener(b, 15006);
    try {
      // App traffic (uid 0) from A to B:8080 is redirected to A's 15001.
      assert.equal(await connectFrom(a, ipB, 8080), `${ipB}:8080`);
      assert.deepEqual(outbound.seen, [`${ipB}:8080`]);
      // The proxy's own traffic (uid 1337) leaves A and is captured inbound in B.
      assert.equal(await connectFrom(a, ipB, 8080, 1337), `${ipB}:8080`);
      assert.deepEqual(inbound.seen, [`${ipB}:8080`]);
      assert.equal(outbound.seen.length, 1, 'proxy traffic must not be captured outbound');
    } finally {
      await outbound.close();
      await inbound.close();
    }
    assert.ok(ipA !== ipB);
    assert.ok(events.some((e) => e.kind === 'programmed' && e.podName === podA.metadata.name));

    // CHECK passes while the rules are intact...
    const ok = await runtime.check(sandbox(a, podA));
    assert.ok(ok.ok, JSON.stringify(ok));
    // ...and fails once someone flushes them.
    a.exec('nft', ['flush', 'ruleset']);
    const drift = await runtime.check(sandbox(a, podA));
    assert.equal(drift.ok, false);
    if (!drift.ok) {
      assert.equal(drift.failedPlugin, 'weir-cni');
      assert.equal(drift.error.code, 100);
      assert.match(drift.error.msg, /differ from what weir programmed/);
    }

    // DEL, then containerd's second DEL without netns or prevResult: both succeed.
    for (const ns of [a, b]) {
      const pod = ns === a ? podA : podB;
      const d1 = await runtime.del(sandbox(ns, pod));
      assert.ok(d1.ok, JSON.stringify(d1));
      const d2 = await runtime.del(sandbox(ns, pod, { netns: '' }), { withoutPrevResult: true });
      assert.ok(d2.ok, JSON.stringify(d2));
    }
    assert.deepEqual(weirTables(b), []);
    assert.deepEqual(leases(), before);
    assert.ok(events.some((e) => e.kind === 'removed' && e.podName === podB.metadata.name));
  });

  test('a bad annotation fails ADD with code 7 naming it, and programs nothing', async () => {
    const ns = newPod();
    const pod = meshPod(`bad-${ns.name}`, 'default', { 'traffic.sidecar.istio.io/excludeOutboundIPRanges': '10.0.0.0/99' });
    resolver.set(pod);
    const before = leases();
    const r = await runtime.add(sandbox(ns, pod));
    assert.equal(r.ok, false);
    if (!r.ok) {
      assert.equal(r.failedPlugin, 'weir-cni');
      assert.equal(r.error.code, 7);
      assert.match(r.error.msg, /excludeOutboundIPRanges/);
    }
    assert.deepEqual(weirTables(ns), []);
    assert.ok((await runtime.del(sandbox(ns, pod))).ok);
    assert.deepEqual(leases(), before);
  });

  test('pods without the proxy are passed through uncaptured', async () => {
    const ns = newPod();
    const pod: Pod = { metadata: { name: `plain-${ns.name}`, namespace: 'default', uid: 'u1' }, spec: { containers: [{ name: 'app' }] } };
    resolver.set(pod);
    const r = await runtime.add(sandbox(ns, pod));
    assert.ok(r.ok, JSON.stringify(r));
    assert.deepEqual(weirTables(ns), []);
    assert.ok((await runtime.del(sandbox(ns, pod))).ok);
  });

  test('API down: ADD for a captured pod fails with 11 and leaves nothing once the runtime DELs', async () => {
    const ns = newPod();
    const pod = meshPod(`apidown-${ns.name}`);
    resolver.set(pod);
    resolver.unavailable = new Error('connect ECONNREFUSED kube-apiserver');
    const before = leases();
    try {
      const r = await runtime.add(sandbox(ns, pod));
      assert.equal(r.ok, false);
      if (!r.ok) { assert.equal(r.error.code, 11); assert.match(r.error.msg, /cannot look up pod/); }
    } finally {
      resolver.unavailable = undefined;
    }
    assert.deepEqual(weirTables(ns), []);
    assert.ok((await runtime.del(sandbox(ns, pod))).ok);
    assert.deepEqual(leases(), before);
  });

  test('agent down: captured pod ADD fails with 11 and nothing is left; excluded namespace ADD succeeds; DEL succeeds', async () => {
    await server!.close();
    server = undefined;
    try {
      assert.equal(existsSync(socketPath), false);
      const ns = newPod();
      const pod = meshPod(`down-${ns.name}`);
      resolver.set(pod);
      const before = leases();
      const started = Date.now();
      const r = await runtime.add(sandbox(ns, pod));
      assert.equal(r.ok, false);
      if (!r.ok) {
        assert.equal(r.failedPlugin, 'weir-cni');
        assert.equal(r.error.code, 11);
        assert.match(r.error.msg, /did not answer/);
      }
      assert.ok(Date.now() - started < 10000);
      assert.deepEqual(weirTables(ns), []);
      // The runtime's DEL after the failed ADD undoes bridge + IPAM; weir's DEL succeeds with the agent down.
      const d = await runtime.del(sandbox(ns, pod));
      assert.ok(d.ok, JSON.stringify(d));
      assert.deepEqual(leases(), before);

      const sys = newPod();
      const sysPod: Pod = { metadata: { name: 'coredns', namespace: 'kube-system', uid: 'cd' }, spec: { containers: [{ name: 'coredns' }] } };
      const rs = await runtime.add(sandbox(sys, sysPod));
      assert.ok(rs.ok, JSON.stringify(rs));
      assert.ok((await runtime.del(sandbox(sys, sysPod))).ok);
    } finally {
      await startAgent();
    }
  });
});
