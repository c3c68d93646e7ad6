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
// Env: LAT_SECONDS (default 5), CONN_SECONDS (3), BULK_MB (256), ROUNDS (3), APPLY_N (20),
// MODES (comma-separated keys: direct,nft,ebpf,ebpf-stream,shortcut; default all).
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { BenchCluster, REPO, fmt, machineLines, median, quantile, runNodeIn, waitForLine, type Pod } from './lib/two-pod.js';
import { enableBpfStats, kernelSnapshot, perConnection, type KernelCost } from './lib/bpf-stats.js';
import { createBpfSandbox } from '../test/support/bpf-sandbox.js';
import { Netns } from '../test/support/netns.js';
import { getBackend } from '../src/netns/backends.js';
import { EbpfBackend } from '../src/netns/ebpf-backend.js';
import { sandboxAt, type CaptureBackend } from '../src/netns/backend-types.js';
import { buildPlan } from '../src/redirect/plan.js';

const LAT_SECONDS = Number(process.env.LAT_SECONDS ?? 5);
const CONN_SECONDS = Number(process.env.CONN_SECONDS ?? 3);
const BULK = Number(process.env.BULK_MB ?? 256) * 1024 * 1024;
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const APPLY_N = Number(process.env.APPLY_N ?? 20);
const OUT = process.env.BENCH_OUT ?? path.join(REPO, 'bench/results/ebpf.md');

// Server app on 9000: 'E' first → echo; anything else → count bytes, answer the count on FIN.
const SERVER = `require('node:net').createServer({ allowHalfOpen: true }, (s) => { s.on('error', () => {});
  s.once('data', (d) => { if (d[0] === 69) { s.write(d.subarray(1)); s.pipe(s); return; } let n = d.length; s.on('data', (x) => { n += x.length; }); s.on('end', () => s.end(String(n))); });
}).listen({ port: 9000, host: '::' }, () => console.log('bench server ready'));`;

// Load generator in the client pod (root, so capture applies). Prints one JSON line.
const LOAD = `const net = require('node:net'); const [what, host, port, arg] = process.argv.slice(1); const P = +port;
const t = () => performance.now(); const out = (o) => { console.log(JSON.stringify(o)); process.exit(0); };
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
interface Round { bulk: number; conns: number; p50: number; p99: number; samples: number; kernel: KernelCost }

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

async function main(): Promise<void> {
  const started = Date.now();
  const loadStart = loadavg();
  const bpf = createBpfSandbox('weir-bench');
  const bc = new BenchCluster();
  try {
    await bc.start();
    const ebpf = new EbpfBackend({ pinDir: bpf.pinDir, cgroup: bpf.cgroup });
    const shortcut = new EbpfBackend({ pinDir: bpf.pinDir, cgroup: bpf.cgroup, shortcut: true });
    ebpf.ensureLoaded(); // program load is once per node, not per pod: kept out of the apply times
    const stream = ['--pump', 'stream'];
    const allModes: Mode[] = [
      { key: 'direct', name: 'direct (no capture, no proxies)', proxyFlags: [], port: '9000' },
      { key: 'nft', name: 'nftables', backend: getBackend('nftables'), proxyFlags: [], host: '10.96.90.10', port: '80' },
      { key: 'ebpf', name: 'ebpf', backend: ebpf, proxyFlags: [], host: '10.96.90.11', port: '80' },
      { key: 'ebpf-stream', name: 'ebpf, proxies --pump stream', backend: ebpf, proxyFlags: stream, host: '10.96.90.12', port: '80' },
      { key: 'shortcut', name: 'ebpf + shortcut, proxies --pump stream', backend: shortcut, proxyFlags: stream, host: '10.96.90.13', port: '80' },
    ];
    const wanted = (process.env.MODES ?? allModes.map((m) => m.key).join(',')).split(',');
    const unknown = wanted.filter((k) => !allModes.some((m) => m.key === k));
    if (unknown.length) throw new Error(`MODES: unknown mode ${unknown.join(', ')} (known: ${allModes.map((m) => m.key).join(', ')})`);
    if (wanted[0] !== 'direct') throw new Error('MODES must start with direct (the added-latency baseline)');
    const modes = allModes.filter((m) => wanted.includes(m.key));
    stopStats = enableBpfStats();
    for (const [i, m] of modes.entries()) {
      if (m.backend) bc.c.captureBackend = m.backend;
      const p = await bc.pair(`m${i}`, { capture: m.backend !== undefined });
      const app = bc.spawnIn(p.server, process.execPath, ['-e', SERVER]);
      await waitForLine(app, /bench server ready/, 10_000);
      if (m.backend) await bc.weir(p, `svc-${i}`, m.host!, [{ name: 'tcp', port: 80, targetPort: 9000 }], m.proxyFlags);
      else m.host = p.server.ip4;
      clients.set(m.name, p.client);
    }
    const res = new Map<string, Round[]>(modes.map((m) => [m.name, []]));
    for (let r = 0; r < ROUNDS; r++) {
      // Rotated order: each mode runs early and late in some round (a shared machine's load drifts).
      for (const m of modes.map((_, i) => modes[(i + r) % modes.length])) {
        const client = clients.get(m.name)!;
        const bulk = Number(runNodeIn(client, LOAD, ['bulk', m.host!, m.port, String(BULK)]).MBps);
        const k0 = kernelSnapshot(bpf.pinDir, bpf.cgroup);
        const conns = Number(runNodeIn(client, LOAD, ['conns', m.host!, m.port, String(CONN_SECONDS)]).perSec);
        const kernel = perConnection(k0, kernelSnapshot(bpf.pinDir, bpf.cgroup), conns * CONN_SECONDS);
        const lat = (runNodeIn(client, LOAD, ['lat', m.host!, m.port, String(LAT_SECONDS)]).ms as number[]).sort((a, b) => a - b);
        res.get(m.name)!.push({ bulk, conns, p50: quantile(lat, 0.5), p99: quantile(lat, 0.99), samples: lat.length, kernel });
      }
    }
    const apply = new Map<string, number[]>([['nftables', await applyTimes(getBackend('nftables'))], ['ebpf', await applyTimes(ebpf)]]);
    const direct = res.get(modes[0].name)!;
    const rows = modes.map((m) => {
      const x = res.get(m.name)!;
      // Added latency per round against the direct run of the SAME round, then the median over rounds.
      const added = (k: 'p50' | 'p99') => (m.backend ? span(x.map((q, r) => q[k] - direct[r][k]), 3) : '—');
      return `| ${m.name} | ${span(x.map((q) => q.bulk), 1)} | ${span(x.map((q) => q.conns), 0)} | ${span(x.map((q) => q.p50), 3)} | ${span(x.map((q) => q.p99), 3)} | ${added('p50')} | ${added('p99')} | ${x.reduce((n, q) => n + q.samples, 0)} |`;
    });
    // Programs that ran at all in some mode, in one column order.
    const progNames = [...new Set(modes.flatMap((m) => res.get(m.name)!.flatMap((q) => [...q.kernel.progs].filter(([, c]) => c.runs > 0).map(([n]) => n))))].sort();
    const costRows = modes.map((m) => {
      const x = res.get(m.name)!;
      const prog = (n: string) => {
        const c = x.map((q) => q.kernel.progs.get(n) ?? { ns: 0, runs: 0 });
        return `${fmt(median(c.map((q) => q.ns)), 0)} ns / ${fmt(median(c.map((q) => q.runs)), 1)}`;
      };
      const total = x.map((q) => [...q.kernel.progs.values()].reduce((t, c) => t + c.ns, 0));
      return `| ${m.name} | ${span(x.map((q) => q.kernel.userUs), 0)} | ${span(x.map((q) => q.kernel.systemUs), 0)} | ${span(total, 0)} | ${progNames.map(prog).join(' | ')} |`;
    });
    const applyRows = [...apply].map(([name, t]) => `| ${name} | ${fmt(quantile(t, 0.5), 2)} | ${fmt(quantile(t, 0.9), 2)} | ${fmt(t[t.length - 1], 2)} |`);
    const md = `# bench/ebpf — capture by nftables vs eBPF (with and without the same-node shortcut), weir proxy in both pods

${machineLines((Date.now() - started) / 1000, `The machine was SHARED: other engineers built and tested on the same 2 vCPUs during the run (load average at the start ${loadStart}); compare the rows of this run, rounds interleave the modes in rotated order, read the min–max spread`)}
${ROUNDS} rounds; per round and mode: bulk ${BULK / 1048576} MiB (1 stream), short connections for ${CONN_SECONDS} s (16 in parallel, each connect + 1-byte echo + close), 64-byte echo at a fixed 1000 req/s over 10 connections for ${LAT_SECONDS} s.
Cells: median over rounds (min–max). "Added" = the mode's p50/p99 minus the direct run's in the same round.

Topology: client pod app → (capture) → client weir proxy :15001 → server pod IP → (nft inbound capture, all modes) → server weir proxy :15006 → app :9000. eBPF programs in a bench-owned cgroup2 sub-cgroup. The shortcut splices the two loopback hops (app ↔ client proxy, server proxy ↔ app); it needs recvmsg readers, so its row runs the proxies with \`--pump stream\`, and the row above it is the same pump without the shortcut.

| mode | bulk MB/s | short conns/s | p50 ms | p99 ms | p50 added ms | p99 added ms | latency samples |
|---|---|---|---|---|---|---|---|
${rows.join('\n')}

What a short connection costs, measured during the short-connections runs (per connection = delta / connections completed): CPU of the bench's cgroup (every pod process: load generator incl. its node start-up, apps, proxies; kernel time includes the loopback/veth softirq work run in their context) from cpu.stat, and the run time of each of weir's eBPF programs from the kernel's per-program stats (BPF_ENABLE_STATS, on for this run only). Every mode's processes sit in the cgroup the programs are attached to, so non-eBPF modes show what the programs cost sockets without a weir_pods entry. Program cells: median ns per connection / median runs per connection.

| mode | CPU user µs/conn | CPU kernel µs/conn | all eBPF programs ns/conn | ${progNames.join(' | ')} |
|---|---|---|---|${progNames.map(() => '---|').join('')}
${costRows.join('\n')}

CNI ADD share of the backend: \`backend.apply\` of a default weir pod's plan into ${APPLY_N} fresh netns each (eBPF: one map update + the nft inbound tables; program load happens once per node and is excluded).

| backend | apply p50 ms | p90 ms | max ms |
|---|---|---|---|
${applyRows.join('\n')}
`;
    writeFileSync(OUT, md);
    process.stdout.write(md);
  } finally {
    stopStats?.();
    await bc.close();
    bpf.destroy();
  }
}

const clients = new Map<string, Pod>();
let stopStats: (() => void) | undefined;

await main();
