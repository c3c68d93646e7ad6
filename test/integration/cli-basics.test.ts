// The CLI the way kubectl/istioctl users expect: `weir version` from
// package.json, defaults shown in --help, one exit-code table applied to
// every command (and documented in the README), bash completion generated
// from the command tree, and `weir precheck` on this machine's real kernel.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Command } from 'commander';
import { buildProgram } from '../../src/cli/program.js';
import { EXIT_CODE_TABLE } from '../../src/cli/exit.js';
import { resolveAgentConfig } from '../../src/agent/config.js';
import { resolveProxyConfig } from '../../src/proxy/config.js';
import { weirCli } from '../support/cli.js';
import { skipUnlessRoot } from '../support/netns.js';

const REPO = path.resolve(import.meta.dirname, '../..');
const pkg = JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { version: string };
const dirs: string[] = [];
after(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

function leaves(cmd: Command, prefix: string[] = []): string[][] {
  if (cmd.commands.length === 0) return [prefix];
  return cmd.commands.filter((c) => c.name() !== 'help').flatMap((c) => leaves(c, [...prefix, c.name()]));
}

test('weir version and --version print package.json\'s version', async () => {
  const v = await weirCli(['version']);
  assert.equal(v.code, 0);
  assert.equal(v.stdout, `weir ${pkg.version}\n`);
  assert.equal((JSON.parse((await weirCli(['version', '-o', 'json'])).stdout) as { version: string }).version, pkg.version);
  assert.equal((await weirCli(['--version'])).stdout.trim(), pkg.version);
});

test('every option with a default shows it in --help', () => {
  const missing: string[] = [];
  const walk = (cmd: Command, where: string): void => {
    const help = cmd.helpInformation();
    for (const o of cmd.options) {
      const hasDefault = o.defaultValue !== undefined || o.defaultValueDescription !== undefined;
      if (!hasDefault || o.negate || o.hidden) continue;
      const line = help.split('\n').findIndex((l) => l.includes(o.flags));
      const text = help.split('\n').slice(line, line + 4).join(' ');
      if (!/default:/.test(text)) missing.push(`${where} ${o.flags}`);
    }
    for (const c of cmd.commands) walk(c, `${where} ${c.name()}`);
  };
  walk(buildProgram(), 'weir');
  // agent and proxy apply their defaults after the environment (in their config resolvers), so
  // commander does not know them: every option whose setting has a default must still show it.
  const resolved: Record<string, Record<string, unknown>> = {
    agent: resolveAgentConfig({ nodeName: 'n' }, {}) as unknown as Record<string, unknown>,
    proxy: resolveProxyConfig({}, {}) as unknown as Record<string, unknown>,
  };
  for (const [name, cfg] of Object.entries(resolved)) {
    const cmd = buildProgram().commands.find((c) => c.name() === name)!;
    const help = cmd.helpInformation().split('\n');
    for (const o of cmd.options) {
      if (o.negate || o.isBoolean() || o.attributeName() === 'nodeName') continue; // required, given above
      const key = Object.keys(cfg).find((k) => k === o.attributeName() || k.startsWith(o.attributeName()));
      const v = key ? cfg[key] : undefined;
      if (v === undefined || v === '' || (Array.isArray(v) && v.length === 0)) continue;
      const at = help.findIndex((l) => l.includes(o.flags));
      if (!/\(default: /.test(help.slice(at, at + 4).join(' '))) missing.push(`weir ${name} ${o.flags} (resolves to ${JSON.stringify(v)})`);
    }
  }
  assert.deepEqual(missing, []);
  // Spot checks of what operators look for.
  const agentHelp = buildProgram().commands.find((c) => c.name() === 'agent')!.helpInformation();
  assert.match(agentHelp, /--cni-conf-dir <dir>[\s\S]*default: \/etc\/cni\/net\.d/);
  assert.match(agentHelp, /--metrics-addr[\s\S]*default:/);
});

test('every command: an unknown flag is a usage error (exit 2); --help is exit 0', async () => {
  const all = leaves(buildProgram());
  assert.ok(all.length >= 20, `only ${all.length} commands found`);
  const wrong: string[] = [];
  // Four at a time: the machine is shared.
  const queue = [...all];
  await Promise.all([0, 1, 2, 3].map(async () => {
    for (let words = queue.shift(); words; words = queue.shift()) {
      const bad = await weirCli([...words, '--no-such-flag']);
      if (bad.code !== 2) wrong.push(`${words.join(' ')} --no-such-flag → ${bad.code} ${bad.stderr.split('\n')[0]}`);
    }
  }));
  assert.deepEqual(wrong, []);
  assert.equal((await weirCli(['no-such-command'])).code, 2);
  assert.equal((await weirCli(['proxy-config', 'endpoints', '--help'])).code, 0);
  assert.equal((await weirCli(['pods', '-o', 'xml'])).code, 2);
});

test('the exit-code table is documented in the README and in weir --help', async () => {
  const readme = readFileSync(path.join(REPO, 'README.md'), 'utf8');
  const help = (await weirCli(['--help'])).stdout;
  for (const [code, meaning] of EXIT_CODE_TABLE) {
    assert.match(readme, new RegExp(`^\\| ${code} \\| `, 'm'), `README exit code ${code}`);
    assert.ok(help.includes(`  ${code}  ${meaning}`), `--help exit code ${code}`);
  }
});

test('agent unreachable is exit 4 for every command that needs the agent', async () => {
  const sock = path.join(tmpdir(), `weir-no-agent-${process.pid}.sock`);
  for (const args of [['status'], ['pods'], ['pod-rules', 'a/b'], ['check', 'a/b'], ['repair', 'a/b'], ['logs'], ['describe', 'a/b'], ['proxy-config', 'clusters', 'a/b'], ['proxy-config', 'log', 'a/b']]) {
    const r = await weirCli([...args, '--socket', sock]);
    assert.equal(r.code, 4, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /cannot reach the weir agent/);
  }
  // The env variable works as the flag does.
  assert.equal((await weirCli(['status'], { env: { WEIR_ADMIN_SOCKET: sock } })).code, 4);
});

test('bash completion is generated from the command tree and completes subcommands and flags', async () => {
  const script = (await weirCli(['completion', 'bash'])).stdout;
  const complete = (words: string[]): string[] => execFileSync('bash', ['-c', `${script}\nCOMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _weir; printf '%s\\n' "\${COMPREPLY[@]}"`], { encoding: 'utf8' }).split('\n').filter(Boolean);
  assert.deepEqual(complete(['weir', 'proxy-config', 'end']), ['endpoints']);
  assert.deepEqual(complete(['weir', 'desc']), ['describe']);
  assert.ok(complete(['weir', 'logs', '--']).includes('--tail'));
  assert.ok(!complete(['weir', 'logs', '--']).includes('--lines'), 'hidden flags are not offered');
  assert.ok(complete(['weir', 'rules', 'apply', '-f', 'x.yaml', '--']).includes('--netns'));
  const zsh = await weirCli(['completion', 'zsh']);
  assert.match(zsh.stdout, /^#compdef weir\n/);
  assert.equal((await weirCli(['completion', 'fish'])).code, 2);
});

test('weir precheck: one line per check on this machine, with what to do; a Cilium primary is flagged', { skip: skipUnlessRoot() }, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'weir-precheck-'));
  dirs.push(dir);
  writeFileSync(path.join(dir, '05-cilium.conflist'), JSON.stringify({ cniVersion: '1.0.0', name: 'cilium', plugins: [{ type: 'cilium-cni' }, { type: 'portmap' }] }));
  const r = await weirCli(['precheck', '--cni-conf-dir', dir, '--socket', path.join(dir, 'none.sock'), '-o', 'json']);
  const lines = JSON.parse(r.stdout) as { check: string; status: string; detail: string; fix?: string }[];
  const by = (c: string) => lines.find((l) => l.check === c)!;
  for (const c of ['kernel', 'backend nftables', 'iptables in use', 'backend iptables', 'CNI conf dir', 'primary CNI', 'cilium', 'cgroup2', 'bpffs', 'backend ebpf', 'agent']) assert.ok(by(c), `check ${c}`);
  // This machine runs every other real-kernel test with nftables: the probe must agree.
  assert.equal(by('backend nftables').status, 'ok', by('backend nftables').detail);
  assert.match(by('primary CNI').detail, /^cilium-cni → portmap/);
  assert.match(by('cilium').fix!, /cni\.exclusive=false/);
  // The kernel really loads (and verifies) every eBPF program; nothing is left attached or pinned.
  assert.equal(by('backend ebpf').status, 'ok', by('backend ebpf').detail);
  assert.match(by('backend ebpf').detail, /accepts weir's 9 programs \(cgroup\/connect4, cgroup\/connect6, .*cgroup\/getsockopt, sk_msg, sockops\)/);
  assert.equal(by('agent').status, 'warn');
  assert.equal(r.code, lines.some((l) => l.status === 'fail') ? 1 : 0);
  const missing = await weirCli(['precheck', '--cni-conf-dir', path.join(dir, 'nope'), '--socket', path.join(dir, 'none.sock')]);
  assert.equal(missing.code, 1);
  assert.match(missing.stdout, /^CNI conf dir\s+FAIL\s+.*does not exist/m);
});
