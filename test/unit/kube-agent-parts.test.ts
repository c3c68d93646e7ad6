// Pure parts of the agent: pod UID from cgroup paths, the /proc scan over a
// fake proc tree, configuration errors naming the flag, status values, and
// readiness hysteresis.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { podUidFromCgroup, scanPodNetns } from '../../src/agent/netns-scan.js';
import { resolveAgentConfig } from '../../src/agent/config.js';
import { statusValue } from '../../src/agent/status-writer.js';
import { ReadinessGate } from '../../src/agent/metrics.js';

const UID = '0f2c5a4e-9d1b-4c3a-8e7f-112233445566';

test('pod UID from cgroup v1 (cgroupfs) and v2 (systemd) paths', () => {
  assert.equal(podUidFromCgroup(`12:memory:/kubepods/burstable/pod${UID}/0123abcd\n11:cpu:/kubepods/burstable/pod${UID}/0123abcd\n`), UID);
  assert.equal(podUidFromCgroup(`0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${UID.replace(/-/g, '_')}.slice/cri-containerd-ab.scope\n`), UID);
  assert.equal(podUidFromCgroup(`0::/kubepods/pod${UID.toUpperCase()}/x\n`), UID);
  assert.equal(podUidFromCgroup('0::/system.slice/containerd.service\n'), undefined);
  assert.equal(podUidFromCgroup('0::/user.slice/pod-not-a-uid\n'), undefined);
});

test('scanPodNetns over a fake proc tree: lowest pid wins, host netns and non-pod processes skipped', async (t) => {
  const root = mkdtempSync(path.join(tmpdir(), 'wk-proc-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const proc = (pid: number, target: string, cgroup: string): void => {
    mkdirSync(path.join(root, String(pid), 'ns'), { recursive: true });
    symlinkSync(target, path.join(root, String(pid), 'ns', 'net'));
    writeFileSync(path.join(root, String(pid), 'cgroup'), cgroup);
  };
  // Distinct "netns" stand-ins: any files have distinct inodes.
  const a = path.join(root, 'netA'); writeFileSync(a, '');
  const hostUid = '11111111-2222-3333-4444-555555555555';
  proc(1, '/proc/1/ns/net', '0::/init.scope\n');
  proc(50, a, `0::/kubepods/pod${UID}/c2\n`);
  proc(40, a, `0::/kubepods/pod${UID}/c1\n`);
  proc(60, '/proc/1/ns/net', `0::/kubepods/pod${hostUid}/c\n`); // hostNetwork pod
  proc(70, a, '0::/system.slice/foo.service\n');
  mkdirSync(path.join(root, 'self')); // non-numeric entries are ignored
  const found = await scanPodNetns(root);
  assert.deepEqual([...found.keys()], [UID]);
  assert.equal(found.get(UID)!.pid, 40);
  assert.equal(found.get(UID)!.netnsPath, path.join(root, '40', 'ns', 'net'));
  await assert.rejects(scanPodNetns(path.join(root, 'nope')), /host-proc: cannot read/);
});

test('agent config: defaults, env, and errors that name the flag and env variable', () => {
  const c = resolveAgentConfig({ nodeName: 'node-1' }, {});
  assert.equal(c.metricsAddr, '0.0.0.0:15014');
  assert.equal(c.repairMode, 'repair');
  assert.equal(c.repairIntervalMs, 60_000);
  assert.equal(c.hostProc, '/proc');
  assert.equal(c.runDir, '/var/run/weir');
  assert.deepEqual(c.excludeNamespaces, ['kube-system']);
  // Fail closed across restarts by default; weir uninstall removes the chain.
  assert.equal(c.keepChainOnShutdown, true);
  assert.equal(resolveAgentConfig({ nodeName: 'n' }, { WEIR_KEEP_CHAIN_ON_SHUTDOWN: 'false' }).keepChainOnShutdown, false);
  // No CA URL: no certificates (the proxies then run plaintext); with one, the manifest's paths by default.
  assert.equal(c.ca, undefined);
  assert.deepEqual(resolveAgentConfig({ nodeName: 'n' }, { WEIR_CA_URL: 'https://weir-ca.weir-system.svc:15012' }).ca, {
    url: 'https://weir-ca.weir-system.svc:15012', tokenFile: '/var/run/secrets/weir/ca-token/token', rootsFile: '/var/run/secrets/weir/mesh-roots/root-cert.pem', trustDomain: 'cluster.local',
  });
  const e = resolveAgentConfig({}, { NODE_NAME: 'n2', WEIR_REPAIR_MODE: 'label', WEIR_REPAIR_INTERVAL: '500ms', WEIR_EXCLUDE_NAMESPACES: 'a, b', WEIR_INSTALL: 'false' });
  assert.deepEqual([e.nodeName, e.repairMode, e.repairIntervalMs, e.excludeNamespaces, e.install], ['n2', 'label', 500, ['a', 'b'], false]);
  const bad: [Record<string, string>, RegExp][] = [
    [{}, /--node-name \(env NODE_NAME\): required/],
    [{ nodeName: 'Bad_Node' }, /--node-name.*DNS-1123/],
    [{ nodeName: 'n', backend: 'bpf' }, /--backend \(env WEIR_BACKEND\): must be one of nftables, iptables, ebpf.*"bpf"/],
    [{ nodeName: 'n', ebpfFallback: 'iptables' }, /--ebpf-fallback \(env WEIR_EBPF_FALLBACK\): must be one of nftables, fail.*"iptables"/],
    [{ nodeName: 'n', repairMode: 'fix' }, /--repair-mode.*repair, delete, label/],
    [{ nodeName: 'n', repairInterval: '10 minutes' }, /--repair-interval.*duration/],
    // A bare number is refused (it meant seconds here and milliseconds in the proxy).
    [{ nodeName: 'n', repairInterval: '30' }, /--repair-interval \(env WEIR_REPAIR_INTERVAL\): needs a unit.*"30"/],
    [{ nodeName: 'n', metricsAddr: '15014' }, /--metrics-addr.*host:port/],
    [{ nodeName: 'n', hostProc: 'host/proc' }, /--host-proc.*absolute path/],
    [{ nodeName: 'n', caUrl: 'http://weir-ca:15012' }, /--ca-url \(env WEIR_CA_URL\): must be https/],
    [{ nodeName: 'n', caUrl: 'weir-ca' }, /--ca-url.*must be a URL/],
    [{ nodeName: 'n', caUrl: 'https://ca:15012', caTokenFile: 'token' }, /--ca-token-file.*absolute path/],
    [{ nodeName: 'n', caUrl: 'https://ca:15012', trustDomain: 'Cluster Local' }, /--trust-domain.*trust domain name/],
    [{ nodeName: 'n', excludeNamespaces: 'ok,Not OK' }, /--exclude-namespaces.*"Not OK"/],
    [{ nodeName: 'n', keepChainOnShutdown: 'maybe' }, /--keep-chain-on-shutdown.*true or false/],
  ];
  for (const [raw, re] of bad) assert.throws(() => resolveAgentConfig(raw, {}), re, JSON.stringify(raw));
  assert.equal(resolveAgentConfig({ nodeName: 'n', repairInterval: '2m' }, {}).repairIntervalMs, 120_000);
  assert.throws(() => resolveAgentConfig({ nodeName: 'n' }, { WEIR_REPAIR_INTERVAL: '60' }), /--repair-interval \(env WEIR_REPAIR_INTERVAL\): needs a unit/);
});

test('status annotation values from capture events', () => {
  assert.equal(statusValue({ kind: 'programmed' }), 'enabled');
  assert.equal(statusValue({ kind: 'repaired' }), 'enabled');
  assert.equal(statusValue({ kind: 'skipped', error: 'no-proxy' }), 'disabled:no-proxy');
  assert.equal(statusValue({ kind: 'failed', error: 'x'.repeat(1000) })!.length, 250);
  assert.equal(statusValue({ kind: 'removed' }), undefined);
});

test('readiness turns ready at once and unready only after the grace period', () => {
  let ok = false;
  const gate = new ReadinessGate([{ name: 'install', check: () => ({ ok, reason: 'not chained' }) }], 1000);
  assert.equal(gate.evaluate(0).ready, false);
  ok = true;
  assert.equal(gate.evaluate(10).ready, true);
  ok = false; // a conf rewrite: briefly unchained
  assert.deepEqual(gate.evaluate(20), { ready: true, raw: false, reason: 'install: not chained' });
  assert.equal(gate.evaluate(900).ready, true);
  ok = true;
  assert.equal(gate.evaluate(950).ready, true);
  ok = false;
  assert.equal(gate.evaluate(1000).ready, true);
  assert.equal(gate.evaluate(2001).ready, false);
});
