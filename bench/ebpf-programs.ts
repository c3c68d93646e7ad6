// bench/ebpf-programs: what weir's eBPF programs cost per connection, two
// builds of bpf/weir.bpf.c side by side in ONE process and ONE set of pins:
// rounds alternate the candidate (this checkout's build) and a baseline
// object (BASELINE_OBJECT, e.g. main's native/build/Release/weir.bpf.o) by
// re-pointing the pinned links, as an agent upgrade does, so both see the
// same load. Per round: CONNS connections from a captured pod (connect4
// redirects them to a "proxy" listener on 15001 that asks SO_ORIGINAL_DST
// like weir's, echoes one byte, closes) and as many in an uncaptured netns
// (what every other socket on a node pays); the kernel's per-program stats
// (BPF_ENABLE_STATS) give ns and runs per connection.
// Run: BASELINE_OBJECT=/path/weir.bpf.o node --import tsx bench/ebpf-programs.ts (root).
// Env: ROUNDS (6), CONNS (400), PARALLEL (8). Writes bench/results/ebpf-programs.md.
import { once } from 'node:events';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fmt, machineLines, median, REPO } from './lib/two-pod.js';
import { createBpfSandbox } from '../test/support/bpf-sandbox.js';
import { createPodPair, podPairAddresses, type Netns } from '../test/support/netns.js';
import { originalDst, socketFd, socketInNetns } from '../src/native/addon.js';
import { bpfAddon, bpfObjectPath } from '../src/native/bpf-loader.js';
import { sandboxAt } from '../src/netns/backend-types.js';
import { EbpfBackend } from '../src/netns/ebpf-backend.js';
import { enableBpfStats, programTotals, type ProgramTotals } from '../src/netns/ebpf-stats.js';
import { buildPlan } from '../src/redirect/plan.js';

const ROUNDS = Number(process.env.ROUNDS ?? 6);
const CONNS = Number(process.env.CONNS ?? 400);
const PARALLEL = Number(process.env.PARALLEL ?? 8);
const BASELINE = process.env.BASELINE_OBJECT ?? '';
const OUT = process.env.BENCH_OUT ?? path.join(REPO, 'bench/results/ebpf-programs.md');
if (!BASELINE || !existsSync(BASELINE)) throw new Error('BASELINE_OBJECT: path of the weir.bpf.o to compare with (e.g. a main checkout\'s native/build/Release/weir.bpf.o)');

/** A listener that does what weir's does with an accepted socket: asks the original destination, then serves. */
async function proxyLike(ns: Netns, port: number, orig: boolean): Promise<net.Server> {
  const fd = await socketInNetns(ns.path, { kind: 'tcp-listen', family: 6, address: '::', port });
  const srv = net.createServer((s) => {
    s.on('error', () => {});
    if (orig) originalDst(socketFd(s));
    s.once('data', (d) => s.end(d));
  });
  srv.listen({ fd });
  await once(srv, 'listening');
  return srv;
}

async function connections(ns: Netns, address: string, port: number, n: number): Promise<void> {
  let next = 0;
  const one = async (): Promise<void> => {
    while (next++ < n) {
      const fd = await socketInNetns(ns.path, { kind: 'tcp-connect', family: net.isIPv6(address) ? 6 : 4, address, port, timeoutMs: 5000 });
      const s = new net.Socket({ fd, readable: true, writable: true });
      s.on('error', () => {});
      s.write('x');
      s.resume();
      await once(s, 'close');
    }
  };
  await Promise.all(Array.from({ length: PARALLEL }, one));
}

type Cost = Map<string, ProgramTotals>;
function perConn(before: Cost, after: Cost, n: number): Cost {
  const out: Cost = new Map();
  for (const [k, a] of after) { const b = before.get(k) ?? { ns: 0, runs: 0 }; out.set(k, { ns: (a.ns - b.ns) / n, runs: (a.runs - b.runs) / n }); }
  return out;
}

const loadavg = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');

async function main(): Promise<void> {
  const started = Date.now();
  const loadStart = loadavg();
  const bpf = createBpfSandbox('weir-bprog');
  const pair = createPodPair('bp');
  const servers: net.Server[] = [];
  const stopStats = enableBpfStats();
  try {
    const a = podPairAddresses(pair);
    const backend = new EbpfBackend({ pinDir: bpf.pinDir, cgroup: bpf.cgroup });
    await backend.apply(sandboxAt(pair.pod.path), buildPlan({ metadata: { name: 'bp', namespace: 'bench' }, spec: { containers: [{ name: 'app' }, { name: 'weir-proxy' }] } }));
    servers.push(await proxyLike(pair.pod, 15001, true), await proxyLike(pair.peer, 15002, false));
    const builds = [{ name: 'baseline', object: BASELINE }, { name: 'candidate', object: bpfObjectPath() }];
    const kinds = [
      { name: 'captured (pod → peer:8080, redirected to 15001)', ns: pair.pod, address: a.peer4, port: 8080 },
      { name: 'uncaptured netns (no weir_pods entry, loopback)', ns: pair.peer, address: '127.0.0.1', port: 15002 },
    ];
    const res = new Map<string, Cost[]>();
    await connections(pair.pod, a.peer4, 8080, 50); // warm-up
    for (let r = 0; r < ROUNDS; r++) {
      for (const b of r % 2 ? [...builds].reverse() : builds) {
        bpfAddon().bpfEnsure(b.object, bpf.pinDir, bpf.cgroup); // re-points the pinned links, like an agent upgrade
        for (const k of kinds) {
          const t0 = programTotals(bpf.pinDir);
          await connections(k.ns, k.address, k.port, CONNS);
          const key = `${b.name}\0${k.name}`;
          res.set(key, [...(res.get(key) ?? []), perConn(t0, programTotals(bpf.pinDir), CONNS)]);
        }
      }
    }
    const progs = [...new Set([...res.values()].flatMap((rs) => rs.flatMap((c) => [...c].filter(([, x]) => x.runs > 0).map(([n]) => n))))].sort();
    const rows: string[] = [];
    for (const k of kinds) {
      for (const b of builds) {
        const rs = res.get(`${b.name}\0${k.name}`)!;
        const total = rs.map((c) => [...c.values()].reduce((t, x) => t + x.ns, 0));
        const cell = (n: string) => `${fmt(median(rs.map((c) => c.get(n)?.ns ?? 0)), 0)} / ${fmt(median(rs.map((c) => c.get(n)?.runs ?? 0)), 1)}`;
        rows.push(`| ${k.name} | ${b.name} | ${fmt(median(total), 0)} (${fmt(Math.min(...total), 0)}–${fmt(Math.max(...total), 0)}) | ${progs.map(cell).join(' | ')} |`);
      }
    }
    const md = `# bench/ebpf-programs — weir's eBPF programs per connection, baseline vs candidate build

${machineLines((Date.now() - started) / 1000, `The machine was SHARED: other engineers built and tested on the same 2 vCPUs during the run (load average at the start ${loadStart}); both builds run in the same process on the same pins, alternating per round (order reversed every other round)`)}
Baseline: \`${BASELINE}\`; candidate: this checkout's build. ${ROUNDS} rounds × ${CONNS} connections per build and kind, ${PARALLEL} in parallel; each connection: connect, 1 byte, echo, close; the listener asks SO_ORIGINAL_DST on accept (the captured kind) like weir's proxy.
Cells: median over rounds of ns per connection (all programs: median (min–max)); per program: ns / runs per connection. Stats: BPF_ENABLE_STATS (run time of the programs only, not the kernel's hook wrappers; inflated by preemption on a loaded VM).

| connections | build | all programs ns/conn | ${progs.join(' | ')} |
|---|---|---|${progs.map(() => '---|').join('')}
${rows.join('\n')}
`;
    writeFileSync(OUT, md);
    process.stdout.write(md);
  } finally {
    stopStats();
    for (const s of servers) s.close();
    pair.destroy();
    bpf.destroy();
  }
}

await main();
