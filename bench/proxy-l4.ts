// bench/proxy-l4: the same two-pod netns topology, several ways, in one run:
//   direct        — client pod → server pod, no capture, no proxy;
//   weir          — capture in both pods, weir proxy (UID 1337) on both sides, client dials a service VIP
//                   (once with its default busy-poll window, once with busy-poll off);
//   haproxy       — capture in both pods, HAProxy 2.6 (UID 1337) as both proxies, static config, same hops
//                   (once plain, once with its `busy-polling` global option).
// Workloads: one bulk TCP stream (throughput), short connections (conn/s),
// small echo messages at a fixed 1000 req/s (p50/p99/p99.9 over several
// interleaved rounds). Proxy CPU from /proc; memory (VmRSS, RssAnon, RssFile,
// Pss) of every proxy and of a bare Node process started in the same run.
// Run: node --import tsx bench/proxy-l4.ts   (root). Writes bench/results/proxy-l4.md.
// Env: ROUNDS (latency rounds, default 3), LAT_SECONDS (per mode per round, default 6),
//      BULK_MB (default 1024), BUSY_POLL_SWEEP=0,50,100 (one weir row per window instead of default/off),
//      WX_NS_PREFIX (netns/veth name prefix, default wx), BENCH_OUT (result file).
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { DEFAULTS } from '../src/proxy/config.js';
import type { MemoryBreakdown } from '../src/common/memory-relief.js';
import { CLIENT, SERVER } from './lib/l4-load.js';
import {
  BenchCluster, REPO, cpuSec, cpuTicks, fmt as f, machineLines, median, mem, quantile, runNodeIn, sleep, waitForLine, type Mem, type Pod,
} from './lib/two-pod.js';

const BULK_BYTES = Number(process.env.BULK_MB ?? 1024) * 1024 * 1024;
const CONN_SECONDS = 3;
const LAT_SECONDS = Number(process.env.LAT_SECONDS ?? 6);
const ROUNDS = Number(process.env.ROUNDS ?? 3);
// Short-connection rounds, interleaved like the latency rounds (the machine is shared: one 3 s sample is noise).
const CONN_ROUNDS = Number(process.env.CONN_ROUNDS ?? 3);
// ONLY=conns: skip bulk and latency (a quick conns/s + memory check while working on the accept path).
const ONLY = process.env.ONLY;
// Memory after the load, sampled at these seconds (the goal: back within 20 % of idle within 30 s).
const AFTER_S = [5, 15, 30];
const SWEEP = process.env.BUSY_POLL_SWEEP?.split(',').map((x) => Number(x.trim()));
// ARENAS=n: one more weir pair whose proxies run with MALLOC_ARENA_MAX=n (an A/B of glibc's per-thread arenas: memory kept after load vs conns/s).
const ARENAS = process.env.ARENAS;
const OUT = process.env.BENCH_OUT ?? path.join(REPO, 'bench/results/proxy-l4.md');

function runClient(pod: Pod, args: string[]): Record<string, unknown> {
  return runNodeIn(pod, CLIENT, args);
}

interface Mode {
  key: string;
  label: string;
  client: Pod;
  host: string;
  port: number;
  proxies: Pod[];
  /** HAProxy with busy-polling spins even when idle: kept SIGSTOPped outside its own measurements. */
  spinsWhenIdle?: boolean;
  weir?: boolean;
}

interface Result {
  bulkMBps: number;
  connsPerSec: number;
  /** conns/s of each round. */
  connsRounds: number[];
  loadCpuSec: number;
  lat: number[][]; // per round, sorted, µs
  latCpuSec: number;
  latSeconds: number;
  memFresh: Mem[];
  memAfter: Mem[];
  /** memory of the proxies at each of AFTER_S seconds after the load (max of the two) */
  memAfterSeries: Mem[];
  pump?: Record<string, unknown>[];
  /** weir only: each proxy's own account of its memory (/stats memoryRelief.now) when idle, right after its last load round, and AFTER_S's last second after the load. */
  breakdown?: { phase: string; proxy: string; b: MemoryBreakdown }[];
}

function haproxyConfig(upstream: string, busyPolling: boolean): string {
  return `global
  maxconn 9000
  nbthread 1
${busyPolling ? '  busy-polling\n' : ''}defaults
  mode tcp
  timeout connect 5s
  timeout client 1h
  timeout server 1h
frontend outbound
  bind :::15001 v4v6
  default_backend to_server
backend to_server
  server s1 ${upstream}:9000
frontend inbound
  bind :::15006 v4v6
  default_backend to_app
backend to_app
  server app 127.0.0.1:9000 source 127.0.0.6
`;
}

async function main(): Promise<void> {
  const bc = new BenchCluster();
  const c = bc.c;
  try {
    await bc.start();
    const modes: Mode[] = [];
    const servers: Pod[] = [];
    const d = await bc.pair('direct', { capture: false });
    servers.push(d.server);
    modes.push({ key: 'direct', label: 'direct', client: d.client, host: d.server.ip4, port: 9000, proxies: [] });

    const weirVariants: { key: string; label: string; flags: string[]; env?: NodeJS.ProcessEnv }[] = SWEEP
      ? SWEEP.map((us) => ({ key: `weir-${us}`, label: `weir, busy-poll ${us} µs`, flags: ['--busy-poll', `${us}us`] }))
      : DEFAULTS.busyPollUs > 0
        ? [{ key: 'weir', label: `weir (default: busy-poll ${DEFAULTS.busyPollUs} µs)`, flags: [] }, { key: 'weir-off', label: 'weir, busy-poll off', flags: ['--busy-poll', 'off'] }]
        : [{ key: 'weir', label: 'weir (default: busy-poll off)', flags: [] }, { key: 'weir-bp', label: 'weir, busy-poll 200 µs', flags: ['--busy-poll', '200us'] }];
    if (ARENAS) weirVariants.push({ key: 'weir-arenas', label: `weir, MALLOC_ARENA_MAX=${ARENAS}`, flags: [], env: { MALLOC_ARENA_MAX: ARENAS } });
    const weirPairs = [];
    for (const [i, v] of weirVariants.entries()) {
      const p = await bc.pair(`w${i}`);
      servers.push(p.server);
      weirPairs.push({ v, p, vip: `10.96.99.${10 + i}`, svc: `bench${i}` });
    }
    const haproxies = [];
    for (const [key, label, busy] of [['haproxy', 'HAProxy', false], ['haproxy-bp', 'HAProxy, busy-polling', true]] as const) {
      const p = await bc.pair(key);
      servers.push(p.server);
      haproxies.push({ key, label, busy, p });
    }
    for (const p of servers) {
      p.app = bc.spawnIn(p, process.execPath, ['-e', SERVER]);
      await waitForLine(p.app, /bench server ready/, 10000);
    }
    for (const w of weirPairs) {
      await bc.weir(w.p, w.svc, w.vip, [{ name: 'tcp', port: 80, targetPort: 9000 }], w.v.flags, w.v.env);
      modes.push({ key: w.v.key, label: w.v.label, client: w.p.client, host: w.vip, port: 80, proxies: [w.p.client, w.p.server], weir: true });
    }
    for (const h of haproxies) {
      await bc.haproxy(h.p.client, haproxyConfig(h.p.server.ip4, h.busy));
      await bc.haproxy(h.p.server, haproxyConfig('127.0.0.1', h.busy));
      // The client dials the same VIP as for weir; capture sends it to HAProxy, which ignores it.
      modes.push({ key: h.key, label: h.label, client: h.p.client, host: '10.96.99.10', port: 80, proxies: [h.p.client, h.p.server], spinsWhenIdle: h.busy });
    }
    // `ip netns exec` is the spawned process; the proxy is its child (exec replaces it, so it is the same pid).
    const pidOf = (p: Pod) => p.proxy!.pid!;
    const pause = (m: Mode, on: boolean) => { if (m.spinsWhenIdle) for (const p of m.proxies) process.kill(pidOf(p), on ? 'SIGSTOP' : 'SIGCONT'); };
    for (const m of modes) pause(m, true);

    const bare = bc.bareNode();
    // Let everything settle: GC after start-up, lazy pages, and the proxy's
    // memory relief after its start-up burst (it comes within two 5 s
    // intervals of going quiet), so "idle" is what an idle proxy keeps.
    await sleep(12_000);
    const bareMem = mem(bare.pid!);
    const breakdownOf = async (pod: Pod) => (JSON.parse((await c.httpGet(pod, 15000, '/stats')).body) as { memoryRelief: { now: MemoryBreakdown; reliefs: number } }).memoryRelief;
    const snapshot = async (m: Mode, r: Result, phase: string) => {
      if (!m.weir) return;
      r.breakdown ??= [];
      for (const [i, p] of m.proxies.entries()) {
        const { now, reliefs } = await breakdownOf(p);
        // Reliefs so far: whether the after-load one had run by then.
        r.breakdown.push({ phase: `${phase} (reliefs so far: ${reliefs})`, proxy: i === 0 ? 'client' : 'server', b: now });
      }
    };
    const results = new Map<string, Result>();
    for (const m of modes) {
      results.set(m.key, { bulkMBps: NaN, connsPerSec: 0, connsRounds: [], loadCpuSec: 0, lat: [], latCpuSec: 0, latSeconds: 0, memFresh: m.proxies.map((p) => mem(pidOf(p))), memAfter: [], memAfterSeries: [] });
    }
    for (const m of modes) await snapshot(m, results.get(m.key)!, 'idle');
    const total = Date.now();
    const rotated = (round: number) => modes.map((_, i) => modes[(i + round) % modes.length]);
    const measured = (m: Mode, r: Result, run: () => void) => {
      pause(m, false);
      const pids = m.proxies.map(pidOf);
      const c0 = pids.map(cpuTicks);
      run();
      r.loadCpuSec += cpuSec(pids, c0);
      pause(m, true);
    };
    if (ONLY !== 'conns') {
      for (const m of modes) {
        const r = results.get(m.key)!;
        measured(m, r, () => { r.bulkMBps = runClient(m.client, ['bulk', m.host, String(m.port), String(BULK_BYTES)]).MBps as number; });
      }
    }
    for (let round = 0; round < CONN_ROUNDS; round++) {
      for (const m of rotated(round)) {
        const r = results.get(m.key)!;
        measured(m, r, () => { r.connsRounds.push(runClient(m.client, ['conns', m.host, String(m.port), String(CONN_SECONDS)]).perSec as number); });
        if (round === CONN_ROUNDS - 1) await snapshot(m, r, 'after its last conns round');
      }
    }
    for (const r of results.values()) r.connsPerSec = median(r.connsRounds);
    // Latency: rounds, each running every mode once, in a rotated order so no mode always follows the same one.
    for (let round = 0; round < (ONLY === 'conns' ? 0 : ROUNDS); round++) {
      for (const m of rotated(round)) {
        const r = results.get(m.key)!;
        pause(m, false);
        const pids = m.proxies.map(pidOf);
        const c0 = pids.map(cpuTicks);
        const t0 = performance.now();
        const us = (runClient(m.client, ['latency', m.host, String(m.port), String(LAT_SECONDS)]).us as number[]).sort((a, b) => a - b);
        r.latSeconds += (performance.now() - t0) / 1000;
        r.latCpuSec += cpuSec(pids, c0);
        r.lat.push(us);
        pause(m, true);
      }
    }
    for (const w of weirPairs) {
      const r = results.get(w.v.key)!;
      r.pump = [];
      for (const pod of [w.p.client, w.p.server]) r.pump.push((JSON.parse((await c.httpGet(pod, 15000, '/stats')).body) as { pump: Record<string, unknown> }).pump);
    }
    // Idle again: what the proxies keep after the load, sampled until 30 s.
    const loadEnd = Date.now();
    for (const at of AFTER_S) {
      await sleep(Math.max(0, loadEnd + at * 1000 - Date.now()));
      for (const m of modes) {
        if (!m.proxies.length) continue;
        const ms = m.proxies.map((p) => mem(pidOf(p)));
        const r = results.get(m.key)!;
        r.memAfterSeries.push(ms.reduce((a, b) => (b.rss > a.rss ? b : a)));
        r.memAfter = ms;
        if (at === AFTER_S[AFTER_S.length - 1]) await snapshot(m, r, `${at} s after the load`);
      }
    }
    for (const m of modes) pause(m, false);
    // A graceful stop (SIGTERM → drain → exit) so flags such as --cpu-prof in WEIR_PROXY_NODE_FLAGS get to write their output.
    for (const m of modes) if (m.weir) for (const p of m.proxies) process.kill(pidOf(p), 'SIGTERM');
    await sleep(1500);
    report(modes, results, bareMem, (Date.now() - total) / 1000);
  } finally {
    await bc.close();
  }
}

function report(modes: Mode[], results: Map<string, Result>, bare: Mem, seconds: number): void {
  const ms = (us: number) => f(us / 1000, 3);
  const direct = results.get('direct')!;
  const pooled = (r: Result) => r.lat.flat().sort((a, b) => a - b);
  const dPooled = pooled(direct);
  const maxBy = (ms: Mem[], k: keyof Mem) => Math.max(...ms.map((x) => x[k]));

  const throughput = modes.map((m) => {
    const r = results.get(m.key)!;
    const spread = r.connsRounds.length > 1 ? ` (${f(Math.min(...r.connsRounds), 0)}–${f(Math.max(...r.connsRounds), 0)})` : '';
    return `| ${m.label} | ${f(r.bulkMBps)} | ${f(r.connsPerSec, 0)}${spread} | ${m.proxies.length ? f(r.loadCpuSec, 2) : '-'} |`;
  });
  const latency = modes.map((m) => {
    const r = results.get(m.key)!;
    const all = pooled(r);
    const perRound = r.lat.map((l) => quantile(l, 0.99));
    const added = r.lat.map((l, i) => quantile(l, 0.99) - quantile(direct.lat[i], 0.99));
    const cpu = m.proxies.length ? `${f((r.latCpuSec / r.latSeconds) * 100, 0)} %` : '-';
    return `| ${m.label} | ${all.length} | ${ms(quantile(all, 0.5))} | ${ms(quantile(all, 0.99))} | ${ms(quantile(all, 0.999))} | ${ms(Math.min(...perRound))}–${ms(Math.max(...perRound))} | ${m.key === 'direct' ? '-' : `**${ms(quantile(all, 0.99) - quantile(dPooled, 0.99))}** (${ms(Math.min(...added))}–${ms(Math.max(...added))})`} | ${cpu} |`;
  });
  const memRows = [
    `| bare \`node -e 'setTimeout(…)'\` | ${f(bare.rss)} | ${f(bare.anon)} | ${f(bare.file)} | ${f(bare.pss)} | ${f(bare.pssAnon)} | - | - | - |`,
    ...modes.filter((m) => m.proxies.length).map((m) => {
      const r = results.get(m.key)!;
      const series = r.memAfterSeries.map((x) => `${f(x.rss)} / ${f(x.anon)}`).join(' · ');
      const idle = maxBy(r.memFresh, 'rss');
      const last = r.memAfterSeries[r.memAfterSeries.length - 1]?.rss ?? NaN;
      return `| ${m.label} | ${f(idle)} | ${f(maxBy(r.memFresh, 'anon'))} | ${f(maxBy(r.memFresh, 'file'))} | ${f(maxBy(r.memFresh, 'pss'))} | ${f(maxBy(r.memFresh, 'pssAnon'))} | ${series} | ${f((100 * (last - idle)) / idle, 0)} % | ${f(maxBy(r.memAfter, 'hwm'))} |`;
    }),
  ];
  const pumpLines = modes.filter((m) => m.weir).map((m) => {
    const ps = results.get(m.key)!.pump ?? [];
    const polled = ps.reduce((s, p) => s + Number(p.polledBatches ?? 0), 0);
    const blocked = ps.reduce((s, p) => s + Number(p.blockedBatches ?? 0), 0);
    const spin = ps.reduce((s, p) => s + Number(p.spinMs ?? 0), 0);
    const sum = (k: string) => ps.reduce((s, p) => s + Number(p[k] ?? 0), 0);
    return `- ${m.label}: pump event batches found while busy-polling ${polled}, after sleeping ${blocked} (${f((100 * polled) / Math.max(1, polled + blocked), 0)} % of wakeups avoided); time spent spinning ${f(spin / 1000, 2)} s; pipes taken from the pipe pool ${sum('pipesReused')}, created ${sum('pipesCreated')} (both proxies, whole run)`;
  });
  const breakdownRows = modes.filter((m) => m.weir).flatMap((m) => (results.get(m.key)!.breakdown ?? []).map(({ phase, proxy, b }) => {
    const sp = b.v8Spaces;
    const heap = Object.values(sp).reduce((a, x) => a + x, 0);
    return `| ${m.label} | ${proxy} | ${phase} | ${f(b.rss)} | ${f(b.rssAnon ?? NaN)} | ${f(b.rssFile ?? NaN)} | ${f(heap)} (new ${f(sp.new ?? NaN)}, old ${f(sp.old ?? NaN)} of which bytecode ${f(b.bytecode ?? NaN)}, code ${f(sp.code ?? NaN)}, large ${f(sp.large_object ?? NaN)}) | ${f(b.arrayBuffers)} | ${b.malloc ? `${f(b.malloc.arena + b.malloc.mmapped)} / ${f(b.malloc.inUse)} / ${f(b.malloc.free)} in ${b.malloc.freeChunks ?? '?'} chunks` : '-'} |`;
  }));
  const weirDefault = results.get(modes.find((m) => m.weir)!.key)!;
  const hap = results.get('haproxy')!;
  const addedP99 = (r: Result) => quantile(pooled(r), 0.99) - quantile(dPooled, 0.99);
  const md = `# bench/proxy-l4 — weir L4 proxy vs direct vs HAProxy 2.6

${machineLines(seconds, 'The machine was shared: other engineers built and tested on the same vCPUs during the run, so compare modes within this run (rounds are interleaved) and read the spread.')}
Latency ${ONLY === 'conns' ? 'not measured (ONLY=conns)' : `${ROUNDS} rounds × ${LAT_SECONDS} s per mode`}; short connections ${CONN_ROUNDS} rounds × ${CONN_SECONDS} s per mode (median, min–max); modes interleaved (rotated order each round).

Topology (same for every mode, one run): client pod netns and server pod netns on one bridge; each mode has its own pair of pods.
*direct*: no capture, no proxy. *weir*: weir capture rules (nft REDIRECT, uid 1337 exempt) in both pods,
\`weir proxy\` (the esbuild bundle of src/proxy/main.ts, plain node, \`--no-dns --no-access-log\`) as UID 1337 in both (client dials a service VIP that only the proxy resolves).
*HAProxy*: the same rules, HAProxy 2.6 (Debian, nbthread 1) as UID 1337 in both pods, static config
(outbound 15001 → server pod:9000, inbound 15006 → 127.0.0.1:9000 from 127.0.0.6); *busy-polling* adds HAProxy's global \`busy-polling\` (it then spins all the time, so it is SIGSTOPped while other modes run). Load generator: Node, inside the client pod.

## Throughput

| mode | bulk stream MB/s (1 stream, ${BULK_BYTES / 1024 / 1024} MiB) | short conns/s (16 parallel, median of ${CONN_ROUNDS} × ${CONN_SECONDS} s; min–max) | proxy CPU s (both, bulk + conns) |
|---|---|---|---|
${throughput.join('\n')}

## Latency: 64-byte echo at 1000 req/s (10 connections × 100/s)

| mode | samples | p50 ms | p99 ms | p99.9 ms | p99 per round (min–max) | p99 added vs direct, pooled (per round min–max) | proxy CPU during the test (both, % of one vCPU) |
|---|---|---|---|---|---|---|---|
${latency.join('\n')}

${pumpLines.join('\n')}

## Memory (MB; max of the two proxies of a mode)

Idle = 12 s after start. VmRSS = RssAnon + RssFile (+ shmem). RssFile is mostly the node (or haproxy) binary's pages: shared with every other process running the same binary, counted in full in each one's VmRSS. Pss divides shared pages among the processes mapping them (here several Node processes run, so the node binary is split between them); RssAnon / Pss_Anon is the process's own memory.

| process | idle VmRSS | RssAnon | RssFile | Pss | Pss_Anon | after the load, at ${AFTER_S.join(' · ')} s: VmRSS / RssAnon | VmRSS at ${AFTER_S[AFTER_S.length - 1]} s vs idle | peak VmRSS (VmHWM) |
|---|---|---|---|---|---|---|---|---|
${memRows.join('\n')}

### Where a weir proxy's memory is (its own account: \`/stats\` memoryRelief.now)

V8 = physical pages of its heap spaces; malloc = glibc's arenas (mallinfo2): held from the kernel / in use / free but kept (what malloc_trim could return).

| mode | proxy | when | VmRSS | RssAnon | RssFile | V8 heap | ArrayBuffers | malloc held / in use / free |
|---|---|---|---|---|---|---|---|---|
${breakdownRows.join('\n')}

## Against the goals (issue #5)
- throughput weir / HAProxy: **${f(weirDefault.bulkMBps / hap.bulkMBps, 2)}×** (goal ≥ 1.0)
- conns/s weir / HAProxy: **${f(weirDefault.connsPerSec / hap.connsPerSec, 2)}×** (issue #12 goal ≥ 1.0; per round: ${weirDefault.connsRounds.map((x, i) => f(x / hap.connsRounds[i], 2)).join(', ')})
- VmRSS ${AFTER_S[AFTER_S.length - 1]} s after the load vs idle, weir: **${f((100 * (weirDefault.memAfterSeries[weirDefault.memAfterSeries.length - 1]?.rss - maxBy(weirDefault.memFresh, 'rss'))) / maxBy(weirDefault.memFresh, 'rss'), 0)} %** (issue #12 goal ≤ 20 %)
- p99 added by two weir proxies (default settings): **${ms(addedP99(weirDefault))} ms** (goal ≤ 0.3 ms); by two HAProxies: ${ms(addedP99(hap))} ms${results.has('haproxy-bp') ? `, with busy-polling ${ms(addedP99(results.get('haproxy-bp')!))} ms` : ''}
- idle VmRSS per weir proxy: **${f(maxBy(weirDefault.memFresh, 'rss'))} MB** (goal ≤ 40 MB), of which the weir process's own (RssAnon) ${f(maxBy(weirDefault.memFresh, 'anon'))} MB; a bare Node process in the same run: ${f(bare.rss)} MB (RssAnon ${f(bare.anon)} MB); HAProxy ${f(maxBy(hap.memFresh, 'rss'))} MB

The load generator, the proxies and the servers share the machine's vCPUs, so tail latencies depend on scheduling and on how fast an idle vCPU wakes (guest_halt_poll_ns above); compare modes within one run, and see the per-round spread.
`;
  writeFileSync(OUT, md);
  process.stdout.write(md);
}

main().catch((err: unknown) => { console.error(err); process.exit(1); });
