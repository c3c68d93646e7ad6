// Backend lifecycle beyond the traffic tests: changing a pod's plan in place
// (DNS capture turned off removes the raw-table pieces), the legacy xtables
// variant with its per-netns lock file, and choosing the iptables variant
// from what the reference netns uses.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Netns, skipUnlessRoot } from '../support/netns.js';
import { getBackend } from '../../src/netns/backends.js';
import { IptablesBackend } from '../../src/netns/iptables-backend.js';
import { detectIptablesMode } from '../../src/netns/iptables-detect.js';
import { buildPlan } from '../../src/redirect/plan.js';
import type { Pod } from '../../src/kube/pod-types.js';
import type { BackendName } from '../../src/netns/backend-types.js';
import { sandboxAt } from '../../src/netns/backend-types.js';

const skip = skipUnlessRoot();
const cleanups: Array<() => void> = [];
after(() => { for (const c of cleanups.reverse()) { try { c(); } catch { /* best effort */ } } });

function netns(): Netns {
  const ns = Netns.create('wrl');
  cleanups.push(() => ns.destroy());
  return ns;
}
const pod = (annotations: Record<string, string>): Pod => ({ metadata: { annotations }, spec: { containers: [{ name: 'istio-proxy', env: [{ name: 'ISTIO_META_DNS_CAPTURE', value: 'true' }] }] } });

for (const name of ['iptables', 'nftables'] as BackendName[]) {
  test(`${name}: re-applying a changed plan replaces it exactly (DNS off drops the zone rules)`, { skip }, async () => {
    const ns = netns();
    const backend = getBackend(name);
    const withDns = buildPlan(pod({ 'traffic.sidecar.istio.io/excludeOutboundPorts': '5432' }));
    const withoutDns = buildPlan(pod({ 'weir.io/dns-capture': 'false' }));
    await backend.apply(sandboxAt(ns.path), withDns);
    assert.match((await backend.read(sandboxAt(ns.path))).listing, /zone/i);
    await backend.apply(sandboxAt(ns.path), withoutDns);
    const state = await backend.read(sandboxAt(ns.path));
    assert.doesNotMatch(state.listing, /zone|5432|15053/i);
    assert.deepEqual(await backend.verify(sandboxAt(ns.path), withoutDns), { ok: true, differences: [] });
    const drift = await backend.verify(sandboxAt(ns.path), withDns);
    assert.equal(drift.ok, false);
    assert.ok(drift.differences.some((d) => d.startsWith('missing: ') && /5432/.test(d)), drift.differences.join('\n'));
    await backend.remove(sandboxAt(ns.path));
    assert.equal((await backend.read(sandboxAt(ns.path))).present, false);
  });
}

test('iptables legacy variant: apply, verify, re-apply, remove, with a lock file per netns', { skip }, async () => {
  const ns = netns();
  const lockDir = mkdtempSync(path.join(tmpdir(), 'wr-locks-'));
  cleanups.push(() => rmSync(lockDir, { recursive: true, force: true }));
  const backend = new IptablesBackend({ mode: 'legacy', lockDir });
  const plan = buildPlan(pod({}));
  await backend.apply(sandboxAt(ns.path), plan);
  await backend.apply(sandboxAt(ns.path), plan);
  assert.deepEqual(await backend.verify(sandboxAt(ns.path), plan), { ok: true, differences: [] });
  const legacy = ns.exec('iptables-legacy-save', ['-t', 'nat']);
  assert.equal(legacy.match(/-j WEIR_OUTPUT$/gm)?.length, 1, legacy);
  assert.doesNotMatch(ns.exec('iptables-nft-save'), /WEIR_/, 'legacy mode must not write nft tables');
  assert.ok(readdirSync(lockDir).some((f) => f.includes(ns.name)), `no per-netns lock in ${readdirSync(lockDir).join(', ')}`);
  await backend.remove(sandboxAt(ns.path));
  assert.ok(!readdirSync(lockDir).some((f) => f.includes(ns.name)), 'remove deletes the netns lock file');
  assert.doesNotMatch(ns.exec('iptables-legacy-save'), /WEIR_/);
  assert.doesNotMatch(ns.exec('ip6tables-legacy-save'), /WEIR_/);
});

test('iptables variant detection follows the reference netns; override and env win', { skip }, async () => {
  const ns = netns();
  assert.equal((await detectIptablesMode({ referenceNetns: ns.path, env: {} })).mode, 'nft', 'no rules anywhere → nft');
  ns.exec('iptables-legacy', ['-t', 'filter', '-A', 'INPUT', '-p', 'tcp', '--dport', '1', '-j', 'ACCEPT']);
  const legacy = await detectIptablesMode({ referenceNetns: ns.path, env: {} });
  assert.equal(legacy.mode, 'legacy', legacy.reason);
  ns.exec('iptables-nft', ['-t', 'filter', '-A', 'INPUT', '-p', 'tcp', '--dport', '1', '-j', 'ACCEPT']);
  assert.equal((await detectIptablesMode({ referenceNetns: ns.path, env: {} })).mode, 'nft', 'rules in both → nft');
  assert.equal((await detectIptablesMode({ referenceNetns: ns.path, override: 'legacy' })).mode, 'legacy');
  assert.equal((await detectIptablesMode({ referenceNetns: ns.path, env: { WEIR_IPTABLES_MODE: 'legacy' } })).mode, 'legacy');
  await assert.rejects(detectIptablesMode({ env: { WEIR_IPTABLES_MODE: 'xt' } }), /WEIR_IPTABLES_MODE: must be "nft" or "legacy" \(bad value: "xt"\)/);
  assert.ok(existsSync(ns.path));
});

test('iptables legacy: concurrent applies to 6 netns, and 4 at once to one netns, all end exactly programmed', { skip }, async () => {
  const lockDir = mkdtempSync(path.join(tmpdir(), 'wr-locks-'));
  cleanups.push(() => rmSync(lockDir, { recursive: true, force: true }));
  const backend = new IptablesBackend({ mode: 'legacy', lockDir });
  const plan = buildPlan(pod({}));
  const many = Array.from({ length: 6 }, () => netns());
  await Promise.all(many.map((ns) => backend.apply(sandboxAt(ns.path), plan)));
  const one = many[0];
  await Promise.all(Array.from({ length: 4 }, () => backend.apply(sandboxAt(one.path), plan)));
  for (const ns of many) assert.deepEqual(await backend.verify(sandboxAt(ns.path), plan), { ok: true, differences: [] }, ns.name);
  assert.equal(readdirSync(lockDir).filter((f) => f.startsWith('_run_netns_wrl-')).length, many.length, 'one lock file per netns');
});
