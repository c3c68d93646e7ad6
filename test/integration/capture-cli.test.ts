// `weir rules ...` as a subprocess, as an operator runs it: exit codes 0/1/2/3,
// messages that name the bad annotation and token, and a netns left exactly
// as it was when the input is bad.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Netns, skipUnlessRoot } from '../support/netns.js';
import { weirCli, type CliResult } from '../support/cli.js';

const skip = skipUnlessRoot();
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const fixtures = path.join(repo, 'test', 'fixtures', 'pods');
const cleanups: Array<() => void> = [];
after(() => { for (const c of cleanups.reverse()) { try { c(); } catch { /* best effort */ } } });

function weir(...args: string[]): Promise<CliResult> {
  return weirCli(args, { timeoutMs: 60_000 });
}

function tempDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'wr-cli-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function kernelState(ns: Netns): string {
  const strip = (s: string): string => s.split('\n').filter((l) => !l.startsWith('#')).join('\n').replace(/\[\d+:\d+\]/g, '');
  return `${ns.exec('nft', ['list', 'ruleset']).replace(/counter packets \d+ bytes \d+/g, 'counter')}\n${strip(ns.exec('iptables-nft-save'))}\n${strip(ns.exec('ip6tables-nft-save'))}`;
}

test('render prints both rulesets; bad annotation → exit 2 naming annotation and token', async () => {
  const nft = await weir('rules', 'render', '-f', path.join(fixtures, 'defaults.yaml'));
  assert.equal(nft.code, 0, nft.stderr);
  assert.match(nft.stdout, /^table inet weir_nat \{$/m);
  const ipt = await weir('rules', 'render', '-f', path.join(fixtures, 'linkerd.yaml'), '--backend', 'iptables');
  assert.equal(ipt.code, 0, ipt.stderr);
  assert.match(ipt.stdout, /-A WEIR_OUTBOUND -m owner --uid-owner 2102 -j RETURN/);
  assert.match(ipt.stdout, /-A WEIR_OUTBOUND -p tcp -j REDIRECT --to-ports 4140/);
  const bad = await weir('rules', 'render', '-f', path.join(fixtures, 'bad-cidr.yaml'));
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /traffic\.sidecar\.istio\.io\/excludeOutboundIPRanges: .*"10\.0\.0\.0\/33"/);
  assert.equal(bad.stdout, '');
});

test('bad input: missing file, not a pod, unknown backend, unknown option → exit 2', async () => {
  const dir = tempDir();
  const notPod = path.join(dir, 'svc.yaml');
  writeFileSync(notPod, 'kind: Service\nmetadata: {name: x}\nspec: {}\n');
  const junk = path.join(dir, 'junk.yaml');
  writeFileSync(junk, 'metadata: [unclosed\n');
  for (const args of [
    ['rules', 'render', '-f', path.join(dir, 'missing.yaml')],
    ['rules', 'render', '-f', notPod],
    ['rules', 'render', '-f', junk],
    ['rules', 'render', '-f', path.join(fixtures, 'defaults.yaml'), '--backend', 'bpfilter'],
    ['rules', 'render', '--no-such-option'],
  ]) {
    const r = await weir(...args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
  }
  const r = await weir('rules', 'render', '-f', notPod);
  assert.match(r.stderr, /kind: expected one of Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Job, CronJob, List \(bad value: "Service"\)/);
});

for (const backend of ['iptables', 'nftables']) {
  test(`${backend}: apply, show, verify, drift → 3, bad pod leaves the netns untouched, remove`, { skip }, async () => {
    const ns = Netns.create('wrc');
    cleanups.push(() => ns.destroy());
    const pod = path.join(fixtures, 'every-annotation.yaml');
    const common = ['--netns', ns.path, '--backend', backend, '--iptables-mode', 'nft'];

    let r = await weir('rules', 'apply', '-f', pod, ...common);
    assert.equal(r.code, 0, r.stderr);
    r = await weir('rules', 'show', '--netns', ns.path, '--iptables-mode', 'nft');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`# backend ${backend} plan=[0-9a-f]{12}`));
    assert.match(r.stdout, /15001/);
    r = await weir('rules', 'verify', '-f', pod, ...common);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^ok: /);

    // Another pod's plan is drift, reported line by line.
    r = await weir('rules', 'verify', '-f', path.join(fixtures, 'defaults.yaml'), ...common);
    assert.equal(r.code, 3, r.stdout + r.stderr);
    assert.match(r.stdout, /missing: /);
    assert.match(r.stdout, /unexpected: /);

    const before = kernelState(ns);
    r = await weir('rules', 'apply', '-f', path.join(fixtures, 'bad-cidr.yaml'), ...common);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /excludeOutboundIPRanges.*10\.0\.0\.0\/33/);
    assert.equal(kernelState(ns), before, 'a rejected pod must not touch the netns');

    // Hand-made drift: a rule added to weir's chain.
    if (backend === 'iptables') ns.exec('iptables-nft', ['-t', 'nat', '-I', 'WEIR_OUTBOUND', '1', '-p', 'tcp', '--dport', '1234', '-j', 'RETURN']);
    else ns.exec('nft', ['insert rule inet weir_nat outbound tcp dport 1234 return']);
    r = await weir('rules', 'verify', '-f', pod, ...common);
    assert.equal(r.code, 3);
    assert.match(r.stdout, /unexpected: .*1234/);

    r = await weir('rules', 'remove', '--netns', ns.path, '--iptables-mode', 'nft');
    assert.equal(r.code, 0, r.stderr);
    r = await weir('rules', 'show', '--netns', ns.path, '--iptables-mode', 'nft');
    assert.match(r.stdout, /^no weir rules in /);
    assert.doesNotMatch(kernelState(ns), /weir|WEIR_/);
  });
}

test('a netns path that does not exist is bad input (exit 2)', { skip }, async () => {
  const r = await weir('rules', 'apply', '-f', path.join(fixtures, 'defaults.yaml'), '--netns', '/run/netns/wr-no-such-netns');
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--netns: no such network namespace/);
});

const DEPLOYMENT = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  template:
    metadata:
      annotations: {traffic.sidecar.istio.io/excludeOutboundPorts: "5432"}
    spec:
      containers: [{name: app}, {name: weir-proxy}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  jobTemplate:
    spec:
      template:
        metadata:
          annotations: {traffic.sidecar.istio.io/excludeOutboundPorts: "6379"}
        spec:
          containers: [{name: app}, {name: weir-proxy}]
`;

test('rules render -f -: stdin, multi-document YAML, Deployment and CronJob pod templates', async () => {
  const r = await weirCli(['rules', 'render', '-f', '-'], { input: DEPLOYMENT });
  assert.equal(r.code, 0, r.stderr);
  const parts = r.stdout.split(/^# ---- /m).slice(1);
  assert.equal(parts.length, 2);
  assert.match(parts[0], /^Deployment\/web \(pod template\)\n/);
  assert.match(parts[0], /5432/);
  assert.doesNotMatch(parts[0], /6379/);
  assert.match(parts[1], /^CronJob\/nightly \(pod template\)\n/);
  assert.match(parts[1], /6379/);
  // One bad document: nothing printed, exit 2, the document named.
  const bad = await weirCli(['rules', 'render', '-f', '-'], { input: `${DEPLOYMENT}---\nkind: StatefulSet\nmetadata: {name: db}\nspec: {}\n` });
  assert.equal(bad.code, 2);
  assert.equal(bad.stdout, '');
  assert.match(bad.stderr, /stdin \(document 3\): spec\.template: StatefulSet has no pod template/);
});

test('rules apply --netns takes an ip-netns name and a PID; two pods for one netns is bad input', { skip }, async () => {
  const ns = Netns.create('wrn');
  cleanups.push(() => ns.destroy());
  let r = await weir('rules', 'apply', '-f', path.join(fixtures, 'defaults.yaml'), '--netns', ns.name);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`applied nftables rules to /run/netns/${ns.name}`));
  const holder = ns.spawn('sleep', ['30']);
  await new Promise((res) => setTimeout(res, 200));
  r = await weir('rules', 'show', '--netns', String(holder.pid), '--backend', 'nftables');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /# backend nftables plan=/);
  const two = path.join(tempDir(), 'two.yaml');
  writeFileSync(two, DEPLOYMENT);
  r = await weir('rules', 'apply', '-f', two, '--netns', ns.name);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /one pod is needed to program a netns, found 2/);
  r = await weir('rules', 'show', '--netns', 'bad name!');
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--netns: expected an absolute netns path, a PID or an `ip netns` name/);
});
