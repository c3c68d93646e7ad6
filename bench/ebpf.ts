// bench/ebpf: the nftables and eBPF capture backends side by side, same run,
// same two-pod topology with `weir proxy` (the shipped bundle) in both pods:
// the client pod's app dials a Service VIP; capture takes it to the client
// proxy, which dials the server pod, whose capture takes it to the server
// proxy, then to the app. Per backend: one bulk stream, short connections/s,
// 64-byte echo at 1000 req/s (p50/p99), and the time `apply` takes on a fresh
// netns (the backend's share of CNI ADD). Also a direct baseline (no capture,
// no proxies) for the added latency, and eBPF with the same-node shortcut
// (proxies on the stream pump, which it needs; plus the same pump without it).
// eBPF programs attach to a cgroup of the bench's own, which the bench joins
// (nothing on the node's root cgroup).
// Run: node --import tsx bench/ebpf.ts (root). Writes bench/results/ebpf.md.
// During each short-connections run it also reads what a connection costs in
// the kernel: each eBPF program's run time (per-program stats, on for the
// bench only) and the CPU of the bench's cgroup (every pod process).
// During each latency run: what a request costs (programs, cgroup CPU) and,
// after it, the conntrack entries in the mode's two pods. After the rounds,
// one extra (unmeasured) latency run per capture mode under perf, for where
// the kernel time goes (conntrack, NAT, nftables, eBPF).
// Goals are decided round by round (bench/lib/paired-rounds.ts): per-round
// p99-added difference and conns/s ratio, their median, wins per side, sign test.
// Env: LAT_SECONDS (default 15), CONN_SECONDS (3), BULK_MB (256), ROUNDS (7), APPLY_N (20), PERF (1; 0 = no perf pass),
// MODES (comma-separated keys: direct,nft,ebpf,ebpf-tracked,ebpf-stream,shortcut; default all).
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { BenchCluster, REPO, fmt, machineLines, median, quantile, runNodeIn, waitForLine, type Pod, type PodPair } from './lib/two-pod.js';
import { enableBpfStats, kernelSnapshot, perConnection, type KernelCost } from './lib/bpf-stats.js';
import { createBpfSandbox } from '../test/support/bpf-sandbox.js';
import { Netns } from '../test/support/netns.js';
import { getBackend } from '../src/netns/backends.js';
import { EbpfBackend } from '../src/netns/ebpf-backend.js';
import { sandboxAt, type CaptureBackend } from '../src/netns/backend-types.js';
import { buildPlan } from '../src/redirect/plan.js';
import type { RedirectPlan } from '../src/redirect/types.js';
import { NftablesBackend } from '../src/netns/nft-backend.js';
import { cgroup2Root } from '../src/netns/ebpf-loader.js';
import { paired, signTestP, verdict, type PairedResult } from './lib/paired-rounds.js';
import { sampleCgroup, SAMPLE_HZ, SYMBOL_FAMILIES, type PerfShare } from './lib/perf-share.js';

const LAT_SECONDS = Number(process.env.LAT_SECONDS ?? 15);
const CONN_SECONDS = Number(process.env.CONN_SECONDS ?? 3);
const BULK = Number(process.env.BULK_MB ?? 256) * 1024 * 1024;
const ROUNDS = Number(process.env.ROUNDS ?? 7);
const PERF = process.env.PERF !== '0';
const APPLY_N = Number(process.env.APPLY_N ?? 20);
const OUT = process.env.BENCH_OUT ?? path.join(REPO, 'bench/results/ebpf.md');

// Server app on 9000: 'E' first → echo; anything else → count bytes, answer the count on FIN.
const SERVER = `require('node:net').createServer({ allowHalfOpen: true }, (s) => { s.on('error', () => {});
  s.once('data', (d) => { if (d[0] === 69) { s.write(d.subarray(1)); s.pipe(s); return; } let n = d.length; s.on('data', (x) => { n += x.length; }); s.on('end', () => s.end(String(n))); });
}).listen({ port: 9000, host: '::' }, () => console.log('bench server ready'));`;

// Load generator in the client pod (root, so capture applies). Prints one JSON line
// (exits once it is written: a latency run's line is larger than a pipe's buffer).
const LOAD = `const net = require('node:net'); const [what, host, port, arg] = process.argv.slice(1); const P = +port;
const t = () => performance.now(); const out = (o) => process.stdout.write(JSON.stringify(o) + '\\n', () => process.exit(0));
if (what === 'bulk') { const s = net.connect(P, host); const blk = Buffer.alloc(1 << 18, 1); let sent = 0; const t0 = t(); let r = '';
  s.on('connect', () => { s.write('B'); (function go() { while (sent < +arg) { sent += blk.length; if (!s.write(blk)) return s.once('drain', go); } s.end(); })(); });
  s.on('data', (d) => { r += d; }); s.on('end', () => out({ MBps: +r / 1e6 / ((t() - t0) / 1000) })); }
if (what === 'conns') { let n = 0; const end = t() + +arg * 1000; let live = 16;
  const one = () => { if (t() > end) { if (--live === 0) out({ perSec: n / +arg }); return; } const s = net.connect(P, host); s.setNoDelay(true);
    s.on('connect', () => s.write('Ex')); s.on('data', () => { n++; s.destroy(); one(); }); s.on('error', () => { s.destroy(); one(); }); };
  for (let i = 0; i < 16; i++) one(); }
if (what === 'lat') { const socks = []; const lat = []; let up = 0;
  for (let i = 0; i < 10; i++) { const s = net.connect(P, host); s.setNoDelay(true); s.on('connect', () => { s.write('E'); if (++up === 10) go(); }); socks.push({ s, at: 0, busy: false, got: 0 }); }
  function go() { for (const o of socks) o.s.on('data', (d) => { o.got += d.length; while (o.got >= 64) { o.got -= 64; lat.push(t() - o.at); o.busy = false; } });
    const t0 = t(); let j = 0; const msg = Buffer.alloc(64, 2);
    const iv = setInterval(() => { const now = t(); if (now - t0 > +arg * 1000) { clearInterval(iv); return setTimeout(() => out({ ms: lat }), 200); }
      while (t0 + j <= now) { const o = socks[j++ % 10]; if (o.busy) continue; o.busy = true; o.at = t(); o.s.write(msg); } }, 1); } }`;

interface Mode {
  key: string;
  name: string;
  /** undefined: the direct baseline (no capture, no proxies). */
  backend?: CaptureBackend;
  proxyFlags: string[];
  host?: string;
  port: string;
}
interface Round {
  bulk: number; conns: number; p50: number; p99: number; samples: number; kernel: KernelCost;
  /** Per latency request. */
  latKernel: KernelCost;
  /** conntrack entries in the mode's two pods after its latency run. */
  ct: { loopback: number; all: number };
  load1: number;
}

/**
 * The eBPF backend's inbound nft ruleset as it was before untrackLoopback
 * (loopback tracked): the same nftables backend, given the plan without it.
 * Bench-only: the before/after of that change in one run.
 */
function trackedLoopbackInbound(): CaptureBackend {
  const nft = new NftablesBackend();
  const strip = (plan: RedirectPlan): RedirectPlan => {
    const { untrackLoopback: _dropped, ...rest } = plan;
    return rest;
  };
  return { name: 'nftables', apply: (t, p) => nft.apply(t, strip(p)), read: (t) => nft.read(t), verify: (t, p) => nft.verify(t, strip(p)), remove: (t) => nft.remove(t) };
}

const LOOPBACK = /^(127\.|::1$|::6$)/;
/** conntrack entries in `pods`: between two loopback addresses, and all. */
function conntrackCounts(pods: Pod[]): { loopback: number; all: number } {
  let loopback = 0;
  let all = 0;
  for (const p of pods) {
    // Tens of thousands of lines after a short-connections run: more than Netns.exec's buffer.
    const listing = execFileSync('ip', ['netns', 'exec', p.ns.name, 'conntrack', '-L'], { encoding: 'utf8', maxBuffer: 512 << 20, stdio: ['ignore', 'pipe', 'ignore'] });
    for (const line of listing.split('\n')) {
      // The original direction's tuple comes first on each line.
      const m = / src=(\S+) dst=(\S+) /.exec(line);
      if (!m) continue;
      all++;
      if (LOOPBACK.test(m[1]) && LOOPBACK.test(m[2])) loopback++;
    }
  }
  return { loopback, all };
}

async function applyTimes(backend: CaptureBackend): Promise<number[]> {
  const plan = buildPlan({ metadata: { name: 'bench', namespace: 'bench' }, spec: { containers: [{ name: 'app' }, { name: 'weir-proxy' }] } });
  const times: number[] = [];
  for (let i = 0; i < APPLY_N; i++) {
    const ns = Netns.create('wxa');
    try {
      ns.ip('link', 'set', 'lo', 'up');
      const t0 = performance.now();
      await backend.apply(sandboxAt(ns.path), plan);
      times.push(performance.now() - t0);
    } finally { ns.destroy(); }
  }
  return times.sort((a, b) => a - b);
}

const loadavg = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
const span = (xs: number[], d: number) => `${fmt(median(xs), d)} (${fmt(Math.min(...xs), d)}–${fmt(Math.max(...xs), d)})`;

/** Per round, the mode's value and the direct run's: p99 added = mode − direct of the SAME round. */
const added = (x: Round[], direct: Round[], k: 'p50' | 'p99') => x.map((q, r) => q[k] - direct[r][k]);

function goalRow(what: string, metric: string, p: PairedResult, unit: string, d: number): string {
  const cell = (v: number) => (unit === '×' ? `${fmt(v, 3)}×` : `${v >= 0 ? '+' : ''}${fmt(v, d)}`);
  return `| ${what} | ${metric} | ${p.perRound.map(cell).join(', ')} | **${cell(p.median)}** | ${p.wins}–${p.losses}–${p.ties} | ${fmt(p.signP, 3)} | **${verdict(p)}** |`;
}

async function main(): Promise<void> {
  const started = Date.now();
  const loadStart = loadavg();
  const bpf = createBpfSandbox('weir-bench');
  const bc = new BenchCluster();
  try {
    await bc.start();
    const ebpf = new EbpfBackend({ pinDir: bpf.pinDir, cgroup: bpf.cgroup });
    const tracked = new EbpfBackend({ pinDir: bpf.pinDir, cgroup: bpf.cgroup }, trackedLoopbackInbound());
    const shortcut = new EbpfBackend({ pinDir: bpf.pinDir, cgroup: bpf.cgroup, shortcut: true });
    ebpf.ensureLoaded(); // program load is once per node, not per pod: kept out of the apply times
    const stream = ['--pump', 'stream'];
    const allModes: Mode[] = [
      { key: 'direct', name: 'direct (no capture, no proxies)', proxyFlags: [], port: '9000' },
      { key: 'nft', name: 'nftables', backend: getBackend('nftables'), proxyFlags: [], host: '10.96.90.10', port: '80' },
      { key: 'ebpf', name: 'ebpf', backend: ebpf, proxyFlags: [], host: '10.96.90.11', port: '80' },
      { key: 'ebpf-tracked', name: 'ebpf, loopback tracked (before untrackLoopback)', backend: tracked, proxyFlags: [], host: '10.96.90.14', port: '80' },
      { key: 'ebpf-stream', name: 'ebpf, proxies --pump stream', backend: ebpf, proxyFlags: stream, host: '10.96.90.12', port: '80' },
      { key: 'shortcut', name: 'ebpf + shortcut, proxies --pump stream', backend: shortcut, proxyFlags: stream, host: '10.96.90.13', port: '80' },
    ];
    const wanted = (process.env.MODES ?? allModes.map((m) => m.key).join(',')).split(',');
    const unknown = wanted.filter((k) => !allModes.some((m) => m.key === k));
    if (unknown.length) throw new Error(`MODES: unknown mode ${unknown.join(', ')} (known: ${allModes.map((m) => m.key).join(', ')})`);
    if (wanted[0] !== 'direct') throw new Error('MODES must start with direct (the added-latency baseline)');
    const modes = allModes.filter((m) => wanted.includes(m.key));
    stopStats = enableBpfStats();
    const pairs = new Map<string, PodPair>();
    for (const [i, m] of modes.entries()) {
      if (m.backend) bc.c.captureBackend = m.backend;
      const p = await bc.pair(`m${i}`, { capture: m.backend !== undefined });
      const app = bc.spawnIn(p.server, process.execPath, ['-e', SERVER]);
      await waitForLine(app, /bench server ready/, 10_000);
      if (m.backend) await bc.weir(p, `svc-${i}`, m.host!, [{ name: 'tcp', port: 80, targetPort: 9000 }], m.proxyFlags);
      else m.host = p.server.ip4;
      pairs.set(m.name, p);
    }
    const lat = (m: Mode) => (runNodeIn(pairs.get(m.name)!.client, LOAD, ['lat', m.host!, m.port, String(LAT_SECONDS)]).ms as number[]).sort((a, b) => a - b);
    const res = new Map<string, Round[]>(modes.map((m) => [m.name, []]));
    const orders: string[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      // Rotated order: each mode runs early and late in some round (a shared machine's load drifts).
      const order = modes.map((_, i) => modes[(i + r) % modes.length]);
      orders.push(order.map((m) => m.key).join(' → '));
      for (const m of order) {
        const p = pairs.get(m.name)!;
        const bulk = Number(runNodeIn(p.client, LOAD, ['bulk', m.host!, m.port, String(BULK)]).MBps);
        const k0 = kernelSnapshot(bpf.pinDir, bpf.cgroup);
        const conns = Number(runNodeIn(p.client, LOAD, ['conns', m.host!, m.port, String(CONN_SECONDS)]).perSec);
        const k1 = kernelSnapshot(bpf.pinDir, bpf.cgroup);
        const kernel = perConnection(k0, k1, conns * CONN_SECONDS);
        const ms = lat(m);
        const latKernel = perConnection(k1, kernelSnapshot(bpf.pinDir, bpf.cgroup), ms.length);
        const load1 = Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);
        res.get(m.name)!.push({ bulk, conns, p50: quantile(ms, 0.5), p99: quantile(ms, 0.99), samples: ms.length, kernel, latKernel, ct: conntrackCounts([p.client, p.server]), load1 });
      }
    }
    // Where the kernel time of a request goes: one more latency run per capture mode, sampled (not in the rounds above).
    const perf = new Map<string, PerfShare>();
    if (PERF) {
      for (const m of modes.filter((x) => x.backend)) {
        const sampling = sampleCgroup(bpf.cgroup, cgroup2Root()!, 1000, LAT_SECONDS - 2, path.join(bc.tmp, 'perf.data'));
        lat(m);
        perf.set(m.name, await sampling);
      }
    }
    const apply = new Map<string, number[]>([['nftables', await applyTimes(getBackend('nftables'))], ['ebpf', await applyTimes(ebpf)]]);
    const md = report(modes, res, orders, perf, apply, started, loadStart);
    writeFileSync(OUT, md);
    process.stdout.write(md);
  } finally {
    stopStats?.();
    await bc.close();
    bpf.destroy();
  }
}

function report(modes: Mode[], res: Map<string, Round[]>, orders: string[], perf: Map<string, PerfShare>, apply: Map<string, number[]>, started: number, loadStart: string): string {
  const direct = res.get(modes[0].name)!;
  const captured = modes.filter((m) => m.backend);
  const rows = modes.map((m) => {
    const x = res.get(m.name)!;
    const add = (k: 'p50' | 'p99') => (m.backend ? span(added(x, direct, k), 3) : '—');
    return `| ${m.name} | ${span(x.map((q) => q.bulk), 1)} | ${span(x.map((q) => q.conns), 0)} | ${span(x.map((q) => q.p50), 3)} | ${span(x.map((q) => q.p99), 3)} | ${add('p50')} | ${add('p99')} | ${x.reduce((n, q) => n + q.samples, 0)} |`;
  });
  const perRound = orders.map((o, r) => `| ${r + 1} | ${fmt(res.get(modes[0].name)![r].load1, 2)} | ${o} | ${captured.map((m) => { const q = res.get(m.name)![r]; return `${fmt(q.p99 - direct[r].p99, 3)} / ${fmt(q.conns, 0)}`; }).join(' | ')} |`);
  // The goals, round by round: a = the first mode named, b = the second.
  const goalPairs: [string, string, string][] = [['ebpf', 'nft', 'ebpf vs nftables'], ['ebpf', 'ebpf-tracked', 'ebpf vs ebpf loopback tracked (after vs before)'], ['ebpf-tracked', 'nft', 'ebpf loopback tracked vs nftables']];
  const byKey = (k: string) => { const m = modes.find((x) => x.key === k); return m ? res.get(m.name)! : undefined; };
  const goals = goalPairs.flatMap(([a, b, what]) => {
    const [x, y] = [byKey(a), byKey(b)];
    if (!x || !y) return [];
    return [
      goalRow(what, 'p99 added ms (a − b)', paired(added(x, direct, 'p99'), added(y, direct, 'p99'), 'lower', 'diff'), 'ms', 3),
      goalRow(what, 'p50 added ms (a − b)', paired(added(x, direct, 'p50'), added(y, direct, 'p50'), 'lower', 'diff'), 'ms', 3),
      goalRow(what, 'short conns/s (a / b)', paired(x.map((q) => q.conns), y.map((q) => q.conns), 'higher', 'ratio'), '×', 3),
    ];
  });
  // Programs that ran at all in some mode, in one column order.
  const progNames = [...new Set(modes.flatMap((m) => res.get(m.name)!.flatMap((q) => [...q.kernel.progs].filter(([, c]) => c.runs > 0).map(([n]) => n))))].sort();
  const costRows = (which: 'kernel' | 'latKernel', unitNs: number) => modes.map((m) => {
    const x = res.get(m.name)!;
    const prog = (n: string) => {
      const c = x.map((q) => q[which].progs.get(n) ?? { ns: 0, runs: 0 });
      return `${fmt(median(c.map((q) => q.ns)), unitNs)} ns / ${fmt(median(c.map((q) => q.runs)), 2)}`;
    };
    const total = x.map((q) => [...q[which].progs.values()].reduce((t, c) => t + c.ns, 0));
    return `| ${m.name} | ${span(x.map((q) => q[which].userUs), 1)} | ${span(x.map((q) => q[which].systemUs), 1)} | ${span(total, unitNs)} | ${progNames.map(prog).join(' | ')} |`;
  });
  const ctRows = modes.map((m) => { const x = res.get(m.name)!; return `| ${m.name} | ${span(x.map((q) => q.ct.loopback), 0)} | ${span(x.map((q) => q.ct.all), 0)} |`; });
  const requests = 1000 * (LAT_SECONDS - 2);
  const usPerReq = (pct: number, samples: number) => fmt((pct / 100) * samples * (1e6 / SAMPLE_HZ) / requests, 2);
  const perfRows = [...perf].map(([name, p]) => `| ${name} | ${p.samples} | ${usPerReq(100, p.samples)} | ${usPerReq(p.kernel, p.samples)} | ${SYMBOL_FAMILIES.map(([f]) => `${fmt(p.families.get(f)!, 2)} % = ${usPerReq(p.families.get(f)!, p.samples)}`).join(' | ')} |`);
  const applyRows = [...apply].map(([name, t]) => `| ${name} | ${fmt(quantile(t, 0.5), 2)} | ${fmt(quantile(t, 0.9), 2)} | ${fmt(t[t.length - 1], 2)} |`);
  const progHeader = `${progNames.join(' | ')} |\n|---|---|---|---|${progNames.map(() => '---|').join('')}`;
  return `# bench/ebpf — capture by nftables vs eBPF (with and without the same-node shortcut), weir proxy in both pods

${machineLines((Date.now() - started) / 1000, `The machine was SHARED: other engineers built and tested on the same 2 vCPUs during the run (load average at the start ${loadStart}; the 1-min load at each round's start is in the per-round table); compare the rows of this run, rounds interleave the modes in rotated order, decide round by round`)}
${ROUNDS} rounds; per round and mode: bulk ${BULK / 1048576} MiB (1 stream), short connections for ${CONN_SECONDS} s (16 in parallel, each connect + 1-byte echo + close), 64-byte echo at a fixed 1000 req/s over 10 persistent connections for ${LAT_SECONDS} s (≈ ${LAT_SECONDS * 1000} samples per round and mode).
Cells: median over rounds (min–max). "Added" = the mode's p50/p99 minus the direct run's in the same round.

Topology: client pod app → (capture) → client weir proxy :15001 → server pod IP → (nft inbound capture, all modes) → server weir proxy :15006 → app :9000. eBPF programs in a bench-owned cgroup2 sub-cgroup. "loopback tracked" is the eBPF backend's inbound nft ruleset without \`untrackLoopback\` (as before that change), in the same run. The shortcut splices the two loopback hops (app ↔ client proxy, server proxy ↔ app); it needs recvmsg readers, so its row runs the proxies with \`--pump stream\`, and the row above it is the same pump without the shortcut.

| mode | bulk MB/s | short conns/s | p50 ms | p99 ms | p50 added ms | p99 added ms | latency samples |
|---|---|---|---|---|---|---|---|
${rows.join('\n')}

## Goals, decided round by round

Rule (bench/lib/paired-rounds.ts): per round, a − b of the added latency (= a − b of the raw quantile: the direct run cancels) and a / b of conns/s, both modes measured in the same round. A goal is **met** when the median over rounds is on a's side AND a wins more rounds than it loses; **shown** when in addition a one-sided sign test over the decided rounds gives p < 0.05 (with ${ROUNDS} decided rounds: ${minWins(ROUNDS)} or more wins); otherwise **not met**. W–L–T: rounds a wins, loses, ties.

| comparison (a vs b) | metric | per round | median | W–L–T | sign p | verdict |
|---|---|---|---|---|---|---|
${goals.join('\n')}

Per round: 1-min load average at the round's start, the order the modes ran in, and per capture mode p99 added ms / short conns/s.

| round | load | order | ${captured.map((m) => m.name).join(' | ')} |
|---|---|---|${captured.map(() => '---|').join('')}
${perRound.join('\n')}

## What runs per request (latency runs) and per connection

Per 64-byte echo request of the latency runs (10 persistent connections, so no connect-time hook runs): the bench cgroup's CPU (every pod process) and each eBPF program's runs and time (kernel per-program stats). Program cells: median ns / runs per request.

| mode | CPU user µs/req | CPU kernel µs/req | all eBPF programs ns/req | ${progHeader}
${costRows('latKernel', 1).join('\n')}

conntrack entries in the mode's two pods right after its latency run (\`conntrack -L\` in each netns; mostly TIME_WAIT entries of that round's short connections): between two loopback addresses (app ↔ client proxy, server proxy ↔ app, admin/health), and all.

| mode | loopback entries | all entries |
|---|---|---|
${ctRows.join('\n')}

${perf.size ? `Where the bench cgroup's CPU goes during one extra latency run per capture mode (not one of the rounds: sampling perturbs latency): \`perf record -a -e cpu-clock -G <bench cgroup>\` at ${SAMPLE_HZ} Hz for ${LAT_SECONDS - 2} s (${requests} requests), self time per kernel symbol family (bench/lib/perf-share.ts), as % of the cgroup's samples = µs per request.

| mode | samples | all CPU µs/req | kernel µs/req | ${SYMBOL_FAMILIES.map(([f]) => f).join(' | ')} |
|---|---|---|---|${SYMBOL_FAMILIES.map(() => '---|').join('')}
${perfRows.join('\n')}
` : ''}
What a short connection costs, measured during the short-connections runs (per connection = delta / connections completed): CPU of the bench's cgroup (load generator incl. its node start-up, apps, proxies; kernel time includes the loopback/veth softirq work run in their context) from cpu.stat, and each of weir's eBPF programs' run time (BPF_ENABLE_STATS, on for this run only). Every mode's processes sit in the cgroup the programs are attached to, so non-eBPF modes show what the programs cost sockets without a weir_pods entry. Program cells: median ns per connection / median runs per connection.

| mode | CPU user µs/conn | CPU kernel µs/conn | all eBPF programs ns/conn | ${progHeader}
${costRows('kernel', 0).join('\n')}

CNI ADD share of the backend: \`backend.apply\` of a default weir pod's plan into ${APPLY_N} fresh netns each (eBPF: one map update + the nft inbound tables; program load happens once per node and is excluded).

| backend | apply p50 ms | p90 ms | max ms |
|---|---|---|---|
${applyRows.join('\n')}
`;
}

/** Fewest wins out of n decided rounds for which the sign test gives p < 0.05. */
function minWins(n: number): number {
  for (let k = 0; k <= n; k++) if (signTestP(k, n) < 0.05) return k;
  return Infinity;
}

let stopStats: (() => void) | undefined;

await main();
