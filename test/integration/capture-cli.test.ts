// `weir rules ...` as a subprocess, as an operator runs it: exit codes 0/1/2/3,
// messages that name the bad annotation and token, and a netns left exactly
// as it was when the input is bad.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Netns, skipUnlessRoot } from '../support/netns.js';

const skip = skipUnlessRoot();
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const fixtures = path.join(repo, 'test', 'fixtures', 'pods');
const execFileAsync = promisify(execFile);
const cleanups: Array<() => void> = [];
after(() => { for (const c of cleanups.reverse()) { try { c(); } catch { /* best effort */ } } });

async function weir(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await execFileAsync(process.execPath, ['--import', 'tsx', path.join(repo, 'src', 'cli', 'main.ts'), ...args], { cwd: repo, timeout: 60_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    if (typeof err.code !== 'number') throw e;
    return { code: err.code, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
  }
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
    ['rules', 'render', '-f', path.join(fixtures, 'defaults.yaml'), '--backend', 'ebpf'],
    ['rules', 'render', '--no-such-option'],
  ]) {
    const r = await weir(...args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
  }
  const r = await weir('rules', 'render', '-f', notPod);
  assert.match(r.stderr, /kind: expected "Pod" \(bad value: "Service"\)/);
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
