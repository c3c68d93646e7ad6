// bench/ebpf: the nftables and eBPF capture backends side by side, same run,
// same two-pod topology with `weir proxy` (the shipped bundle) in both pods:
// the client pod's app dials a Service VIP; capture takes it to the client
// proxy, which dials the server pod, whose capture takes it to the server
// proxy, then to the app. Per backend: one bulk stream, short connections/s,
// 64-byte echo at 1000 req/s (p50/p99), and the time `apply` takes on a fresh
// netns (the backend's share of CNI ADD). eBPF programs attach to a cgroup of
// the bench's own, which the bench joins (nothing on the node's root cgroup).
// Run: node --import tsx bench/ebpf.ts (root). Writes bench/results/ebpf.md.
// Env: LAT_SECONDS (default 5), CONN_SECONDS (3), BULK_MB (256), ROUNDS (2), APPLY_N (20).
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { BenchCluster, REPO, fmt, machineLines, median, quantile, runNodeIn, waitForLine, type Pod } from './lib/two-pod.js';
import { createBpfSandbox } from '../test/support/bpf-sandbox.js';
import { Netns } from '../test/support/netns.js';
import { getBackend } from '../src/netns/backends.js';
import { EbpfBackend } from '../src/netns/ebpf-backend.js';
import { sandboxAt, type CaptureBackend } from '../src/netns/backend-types.js';
import { buildPlan } from '../src/redirect/plan.js';

const LAT_SECONDS = Number(process.env.LAT_SECONDS ?? 5);
const CONN_SECONDS = Number(process.env.CONN_SECONDS ?? 3);
const BULK = Number(process.env.BULK_MB ?? 256) * 1024 * 1024;
const ROUNDS = Number(process.env.ROUNDS ?? 2);
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

interface Mode { name: string; backend: CaptureBackend; client?: Pod; vip: string }

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

async function main(): Promise<void> {
  const started = Date.now();
  const bpf = createBpfSandbox('weir-bench');
  const bc = new BenchCluster();
  try {
    await bc.start();
    const ebpf = new EbpfBackend({ pinDir: bpf.pinDir, cgroup: bpf.cgroup });
    ebpf.ensureLoaded(); // program load is once per node, not per pod: kept out of the apply times
    const modes: Mode[] = [{ name: 'nftables', backend: getBackend('nftables'), vip: '10.96.90.10' }, { name: 'ebpf', backend: ebpf, vip: '10.96.90.11' }];
    for (const m of modes) {
      bc.c.captureBackend = m.backend;
      const p = await bc.pair(m.name);
      const app = bc.spawnIn(p.server, process.execPath, ['-e', SERVER]);
      await waitForLine(app, /bench server ready/, 10_000);
      await bc.weir(p, `svc-${m.name}`, m.vip, [{ name: 'tcp', port: 80, targetPort: 9000 }], []);
      m.client = p.client;
    }
    const res = new Map<string, { bulk: number[]; conns: number[]; lat: number[]; apply: number[] }>(modes.map((m) => [m.name, { bulk: [], conns: [], lat: [], apply: [] }]));
    for (let r = 0; r < ROUNDS; r++) {
      for (const m of r % 2 ? [...modes].reverse() : modes) {
        const x = res.get(m.name)!;
        x.bulk.push(Number(runNodeIn(m.client!, LOAD, ['bulk', m.vip, '80', String(BULK)]).MBps));
        x.conns.push(Number(runNodeIn(m.client!, LOAD, ['conns', m.vip, '80', String(CONN_SECONDS)]).perSec));
        x.lat.push(...(runNodeIn(m.client!, LOAD, ['lat', m.vip, '80', String(LAT_SECONDS)]).ms as number[]));
      }
    }
    for (const m of modes) res.get(m.name)!.apply = await applyTimes(m.backend);
    const rows = modes.map((m) => {
      const x = res.get(m.name)!;
      const lat = [...x.lat].sort((a, b) => a - b);
      return `| ${m.name} | ${fmt(median(x.bulk))} | ${fmt(median(x.conns), 0)} (${x.conns.map((c) => fmt(c, 0)).join(', ')}) | ${lat.length} | ${fmt(quantile(lat, 0.5), 3)} | ${fmt(quantile(lat, 0.99), 3)} | ${fmt(quantile(x.apply, 0.5), 2)} | ${fmt(quantile(x.apply, 0.9), 2)} |`;
    });
    const md = `# bench/ebpf — capture by nftables vs eBPF, weir proxy in both pods

${machineLines((Date.now() - started) / 1000, 'other engineers built and tested on the same 2 vCPUs during the run: compare the two rows of this run, and read them as indicative')}
${ROUNDS} interleaved rounds per backend: bulk ${BULK / 1048576} MiB (1 stream), short connections ${CONN_SECONDS} s (16 parallel), 64-byte echo at 1000 req/s over 10 connections for ${LAT_SECONDS} s (latency samples pooled).
Apply: \`backend.apply\` of a default weir pod's plan into ${APPLY_N} fresh netns each (the backend's share of CNI ADD; eBPF program load happens once per node and is excluded).

Topology: client pod → (capture) → client weir proxy → server pod IP → (nft inbound capture, both modes) → server weir proxy → app. eBPF: connect4/6 + sockops + getsockopt programs in a bench-owned cgroup2 sub-cgroup; nftables: weir's nat table.

| backend | bulk MB/s (median) | short conns/s median (per round) | latency samples | p50 ms | p99 ms | apply p50 ms | apply p90 ms |
|---|---|---|---|---|---|---|---|
${rows.join('\n')}

Not measured here: the sockops + sk_msg same-node shortcut (not built), which is where eBPF would cut the proxies' loopback hops.
`;
    writeFileSync(OUT, md);
    process.stdout.write(md);
  } finally {
    await bc.close();
    bpf.destroy();
  }
}

await main();
