// Time to program a pod's capture rules into a FRESH netns, per backend, in
// one run, interleaved so that machine noise hits every backend alike:
//   weir backend     NftablesBackend.apply: libnftables via the addon; in a weir-free
//                    netns a `list tables` + create-only transaction (no table delete)
//   nft in-process   the renderer's full replace script via the addon, one transaction
//   nft CLI          `ip netns exec NS nft -f -`       (the same script, a process per apply)
//   iptables-restore `ip netns exec NS iptables-restore` + `ip6tables-restore` (nf_tables backend)
//   iptables-legacy  the same with iptables-legacy-restore / ip6tables-legacy-restore
// Netns creation and deletion are not timed. Writes bench/results/apply-latency.md.
//   npx tsx bench/apply-latency.ts            (root; WEIR_BENCH_N=200 netns per backend)
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { nftRun } from '../src/native/addon.js';
import { NftablesBackend, WEIR_NFT_RENDERER, type NftRenderer } from '../src/netns/nft-backend.js';
import { buildPlan } from '../src/redirect/plan.js';
import type { RedirectPlan } from '../src/redirect/types.js';
import { benchNftRenderer, benchPlan, iptablesRulesets } from './apply-rulesets.js';
import { sandboxAt } from '../src/netns/backend-types.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const N = Number(process.env.WEIR_BENCH_N ?? 200);
if (!Number.isInteger(N) || N < 1) throw new Error(`WEIR_BENCH_N must be a positive integer, got ${process.env.WEIR_BENCH_N}`);
if (process.getuid?.() !== 0) throw new Error('bench/apply-latency needs root (network namespaces)');

interface Inputs {
  plan: RedirectPlan;
  nft: NftRenderer;
  v4: string;
  v6: string;
  source: string;
}

/**
 * weir's renderers for a default sidecar pod (src/redirect). The iptables
 * renderer is loaded by path so the bench still runs where it is absent;
 * WEIR_BENCH_LOCAL_RULESETS=1 uses bench/apply-rulesets.ts for both.
 */
async function loadInputs(): Promise<Inputs> {
  if (process.env.WEIR_BENCH_LOCAL_RULESETS === '1') {
    return { plan: benchPlan(), nft: benchNftRenderer, ...iptablesRulesets(), source: 'bench/apply-rulesets.ts (Istio REDIRECT-mode equivalent, IPv4+IPv6, DNS + conntrack zones)' };
  }
  const plan = buildPlan({
    metadata: { name: 'bench', namespace: 'default', uid: 'bench-uid' },
    spec: { containers: [{ name: 'app' }, { name: 'istio-proxy' }] },
  });
  const iptMod = path.join(root, 'src/redirect/render-iptables.ts');
  if (existsSync(iptMod)) {
    const { renderIptables } = (await import(iptMod)) as { renderIptables: (p: RedirectPlan) => { v4: string; v6: string } };
    return { plan, nft: WEIR_NFT_RENDERER, ...renderIptables(plan), source: 'weir renderers (renderNftables, renderIptables) for a default sidecar pod' };
  }
  return { plan, nft: WEIR_NFT_RENDERER, ...iptablesRulesets(), source: 'renderNftables for a default sidecar pod; iptables: bench/apply-rulesets.ts (renderIptables absent)' };
}

type Backend = { name: string; apply(ns: string, r: Inputs): Promise<void> };

function restoreIn(ns: string, cmd: string, input: string): void {
  if (input === '') return;
  const res = spawnSync('ip', ['netns', 'exec', ns, cmd, '--noflush'], { input, encoding: 'utf8' });
  if (res.status !== 0) throw new Error(`${cmd} in ${ns} failed (${res.status}): ${res.stderr}`);
}

let weirBackend: NftablesBackend | undefined;

const backends: Backend[] = [
  {
    name: 'weir NftablesBackend.apply (in-process)',
    async apply(ns, r) { await (weirBackend ??= new NftablesBackend(r.nft)).apply(sandboxAt(`/run/netns/${ns}`), r.plan); },
  },
  { name: 'nft in-process, replace script', async apply(ns, r) { await nftRun(`/run/netns/${ns}`, r.nft.render(r.plan)); } },
  {
    name: 'nft CLI process, replace script',
    async apply(ns, r) {
      const res = spawnSync('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], { input: r.nft.render(r.plan), encoding: 'utf8' });
      if (res.status !== 0) throw new Error(`nft -f in ${ns} failed: ${res.stderr}`);
    },
  },
  { name: 'iptables-restore (nft backend)', async apply(ns, r) { restoreIn(ns, 'iptables-restore', r.v4); restoreIn(ns, 'ip6tables-restore', r.v6); } },
  { name: 'iptables-legacy-restore', async apply(ns, r) { restoreIn(ns, 'iptables-legacy-restore', r.v4); restoreIn(ns, 'ip6tables-legacy-restore', r.v6); } },
];

/**
 * weir's IptablesBackend (save + restore per family under a per-netns lock)
 * when it is present, loaded by path so the bench runs without it.
 */
async function iptablesBackendRows(): Promise<Backend[]> {
  const mod = path.join(root, 'src/netns/iptables-backend.ts');
  if (!existsSync(mod)) return [];
  type Applier = { apply(netns: string, plan: RedirectPlan): Promise<void> };
  const { IptablesBackend } = (await import(mod)) as { IptablesBackend: new (o: { mode: string; lockDir: string }) => Applier };
  const lockDir = `/tmp/wn-bench-locks-${process.pid}`;
  return (['nft', 'legacy'] as const).map((mode) => {
    const backend = new IptablesBackend({ mode, lockDir });
    return { name: `weir IptablesBackend.apply (${mode})`, async apply(ns, r) { await backend.apply(`/run/netns/${ns}`, r.plan); } };
  });
}

function quantile(sorted: number[], q: number): number {
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i];
}

async function main(): Promise<void> {
  const loadBefore = os.loadavg()[0];
  const inputs = await loadInputs();
  backends.push(...(await iptablesBackendRows()));
  const samples = new Map<string, number[]>(backends.map((b) => [b.name, []]));
  const created: string[] = [];
  const cleanup = () => { for (const ns of created.splice(0)) spawnSync('ip', ['netns', 'del', ns]); };
  process.on('SIGINT', () => { cleanup(); process.exit(130); });
  try {
    for (let i = 0; i < N; i++) {
      if (i % 50 === 0) process.stderr.write(`round ${i}/${N}\n`);
      // Rotate the order each round so no backend always runs first.
      for (let k = 0; k < backends.length; k++) {
        const b = backends[(i + k) % backends.length];
        const ns = `wn-b-${randomBytes(4).toString('hex')}`;
        execFileSync('ip', ['netns', 'add', ns]);
        created.push(ns);
        const t0 = performance.now();
        await b.apply(ns, inputs);
        samples.get(b.name)!.push(performance.now() - t0);
        // Untimed sanity check on the first round: the rules really landed.
        if (i === 0) {
          const legacy = /legacy/.test(b.name);
          const listed = spawnSync('ip', ['netns', 'exec', ns, legacy ? 'iptables-legacy-save' : 'nft', ...(legacy ? [] : ['list', 'ruleset'])], { encoding: 'utf8' }).stdout;
          if (!/redirect to :15001|REDIRECT --to-ports 15001/.test(listed)) throw new Error(`${b.name}: no outbound redirect in ${ns} after apply:\n${listed}`);
        }
        spawnSync('ip', ['netns', 'del', ns]);
        created.pop();
      }
    }
  } finally {
    cleanup();
    rmSync(`/tmp/wn-bench-locks-${process.pid}`, { recursive: true, force: true });
  }

  const stats = backends.map((b) => {
    const s = [...samples.get(b.name)!].sort((x, y) => x - y);
    const mean = s.reduce((a, x) => a + x, 0) / s.length;
    return { name: b.name, n: s.length, p50: quantile(s, 0.5), p90: quantile(s, 0.9), p99: quantile(s, 0.99), mean };
  });
  const base = stats[0];
  const cpu = (readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/) ?? [])[1] ?? 'unknown';
  const fmt = (x: number) => x.toFixed(2);
  const lines = [
    '# Apply latency: a pod capture ruleset into a fresh netns',
    '',
    `Date: ${new Date().toISOString()}  `,
    `Machine: ${os.cpus().length} vCPU (\`nproc\` ${execFileSync('nproc', { encoding: 'utf8' }).trim()}), ${cpu}, kernel ${os.release()}, shared with other workloads ` +
      `(1-min load average ${loadBefore.toFixed(2)} at start, ${os.loadavg()[0].toFixed(2)} at end; tails are sensitive to it)  `,
    `Tools: ${execFileSync('nft', ['--version'], { encoding: 'utf8' }).trim()}, ${execFileSync('iptables', ['--version'], { encoding: 'utf8' }).trim()}, Node ${process.version}  `,
    `Ruleset: ${inputs.source}; nft script ${inputs.nft.render(inputs.plan).split('\n').length} lines, iptables-restore input ${inputs.v4.split('\n').length}+${inputs.v6.split('\n').length} lines  `,
    `Method: ${N} fresh netns per backend, backends interleaved round-robin in one run; only the apply is timed (netns add/del are not). ` +
      'The iptables paths need two processes (IPv4 and IPv6) where one nft inet transaction covers both.',
    '',
    '| backend | n | p50 ms | p90 ms | p99 ms | mean ms | p50 / weir p50 | p99 / weir p99 |',
    '|---|---|---|---|---|---|---|---|',
    ...stats.map((s) => `| ${s.name} | ${s.n} | ${fmt(s.p50)} | ${fmt(s.p90)} | ${fmt(s.p99)} | ${fmt(s.mean)} | ${(s.p50 / base.p50).toFixed(1)}× | ${(s.p99 / base.p99).toFixed(1)}× |`),
    '',
    'Why the two in-process rows differ: any nf_tables transaction that deletes a table makes the kernel wait (~10 ms here), ' +
      'even when the table was declared empty in the same batch. The replace idiom ("declare empty; delete; define") pays it on every apply; ' +
      'NftablesBackend skips it when the netns has no weir table yet (CNI ADD): `create table` + the definitions in one transaction ' +
      '(preceded by a `list tables` only when the plan leaves one of weir\'s tables out), falling back to the full replace if a weir table ' +
      'exists or appears meanwhile (EEXIST aborts the whole batch).',
    '',
    'Reproduce: `npx tsx bench/apply-latency.ts` (root, addon built; `WEIR_BENCH_N` to change the count).',
    '',
  ];
  const out = path.join(root, 'bench/results/apply-latency.md');
  writeFileSync(out, lines.join('\n'));
  process.stdout.write(lines.join('\n'));
}

await main();
