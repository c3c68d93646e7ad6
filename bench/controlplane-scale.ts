// Control-plane scale: an API server (the test API server, real list/watch)
// with S Services, E endpoints, V VirtualServices, P proxies against the
// agent's control plane in its own process (so its RSS is its own), with and
// without Sidecar scoping (one Sidecar per namespace: "./*" + istio-system).
// The proxies are the real proxy client (RegistryClient: v2 hello, schema
// checks, applying every kind, acks and nacks) in W worker processes over unix
// sockets; worker 0 holds exactly one, so its RSS is what one proxy's client
// state costs (a full `weir proxy` also runs its listeners: not counted).
// Measures: agent RSS, cold start (control plane start → synced, then → every
// proxy holds its whole config), one endpoint change → applied by the proxies
// that see it, and acked by all P per the agent's fan-out accounting (p50/p99),
// bytes pushed per change, what one proxy holds.
//   npx tsx bench/controlplane-scale.ts            reduced scale (S=1000, E=10000, V=100, P=20)
//   WEIR_BENCH_FULL=1 npx tsx bench/controlplane-scale.ts   the issue's scale (10k/100k/1k/100)
//   WEIR_BENCH_AGENT_PROF=DIR: the agent runs with --cpu-prof into DIR
//   WEIR_BENCH_AGENT_FLAGS="--a --b": the agent's V8 flags instead of the DaemonSet's (src/agent/node-flags.ts); diagnostics
//   WEIR_BENCH_AGENT_SPACES=1: the agent prints its V8 heap spaces and smaps_rollup at each measurement (stderr)
//   WEIR_BENCH_AGENT_HEAP=DIR: the agent writes heap snapshots into DIR once every proxy holds its config, and after the changes
import { fork, type ChildProcess } from 'node:child_process';
import { getHeapSpaceStatistics, writeHeapSnapshot } from 'node:v8';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import os, { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { Registry as Metrics } from 'prom-client';
import { TestApiServer } from '../test/support/apiserver.js';
import { loadKubeConfig } from '../src/kube/informers.js';
import { startControlPlane } from '../src/controlplane/server.js';
import { IstioConfigSource, IstioConfigStore } from '../src/controlplane/istio-source.js';
import { istioCompiledSource } from '../src/controlplane/v2/compiled-source.js';
import { RegistryClient } from '../src/proxy/registry-client.js';
import { ISTIO_COMPARISON, NOTES } from './lib/controlplane-scale-notes.js';
import { WireProxy } from './lib/wire-proxy.js';
import { AGENT_NODE_FLAGS } from '../src/agent/node-flags.js';
import { startMemoryRelief } from '../src/common/memory-relief.js';

const FULL = process.env.WEIR_BENCH_FULL === '1';
const S = Number(process.env.WEIR_BENCH_SERVICES ?? (FULL ? 10_000 : 1000));
const E = Number(process.env.WEIR_BENCH_ENDPOINTS ?? (FULL ? 100_000 : 10_000));
const V = Number(process.env.WEIR_BENCH_VS ?? (FULL ? 1000 : 100));
const P = Number(process.env.WEIR_BENCH_PROXIES ?? (FULL ? 100 : 20));
const NS = Math.max(1, Math.round(S / 100)); // 100 services per namespace
const CHANGES = 20;
const rss = (pid: number | 'self', field = 'VmRSS'): number => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;
const mb = (b: number): string => `${(b / 1048576).toFixed(0)} MB`;
const pct = (xs: number[], p: number): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))];

const WORKERS = Math.max(1, Math.min(P, Number(process.env.WEIR_BENCH_WORKERS ?? 5)));
/** Unscoped runs: how many proxies are full RegistryClients; the rest are WireProxy (lib/wire-proxy.ts). Scoped runs: all full. */
const REAL_UNSCOPED = Math.min(P, Number(process.env.WEIR_BENCH_REAL_PROXIES ?? (FULL ? 10 : P)));
const TARGET = 'ns-0/svc-0';

/** What the worker asks of either kind of proxy. */
interface BenchProxy { size(): number; whole(): boolean; has(key: string): boolean; firstIp(key: string): string | undefined; generation(): number; stop(): void; client?: RegistryClient }
function benchProxy(socketPath: string, real: boolean): BenchProxy {
  if (real) {
    const c = new RegistryClient({ socketPath, logger: pino({ level: 'silent' }) });
    c.start();
    return { client: c, size: () => c.current()?.services.size ?? -1, whole: () => c.compiled.generation >= 5, has: (k) => c.current()?.services.has(k) === true, firstIp: (k) => c.current()?.services.get(k)?.endpoints[0]?.ip, generation: () => c.compiled.generation, stop: () => c.stop() };
  }
  const w = new WireProxy(socketPath, TARGET);
  w.start();
  return { size: () => w.keys.size, whole: () => w.kindsHeld() >= 6, has: (k) => w.keys.has(k), firstIp: () => w.watched?.endpoints[0]?.ip, generation: () => w.pushes, stop: () => w.stop() };
}
const now = (): number => performance.timeOrigin + performance.now();
type Msg = { q: string; [k: string]: unknown };

// ---- child: the agent's control plane ----
async function agentMain(kubeconfig: string, sockDir: string): Promise<void> {
  const kc = loadKubeConfig(kubeconfig);
  const log = pino({ level: 'silent' });
  const metrics = new Metrics();
  const istio = new IstioConfigSource(kc, new IstioConfigStore(), log);
  // The agent process runs memory relief after bursts (src/agent/agent.ts); so does this one.
  const relief = startMemoryRelief();
  const t0 = performance.now();
  const cp = await startControlPlane({ kubeConfig: kc, logger: log, metrics, clusterDomain: 'cluster.local', compiled: istioCompiledSource({ store: istio.store, rootNamespace: 'istio-system' }), compiledReady: istio.start() });
  while (!cp.ready()) await new Promise((r) => setTimeout(r, 20));
  const syncMs = performance.now() - t0;
  const servers: Server[] = [];
  for (let i = 0; i < P; i++) {
    const srv = createServer((sock) => cp.serve(sock, async () => ({ identity: { namespace: `ns-${i % NS}`, name: `proxy-${i}`, uid: `u${i}`, ips: [] }, pid: 0, via: 'pod-listener' })));
    await new Promise<void>((r) => srv.listen(path.join(sockDir, `p${i}.sock`), r));
    servers.push(srv);
  }
  const bytes = async (): Promise<number> => (await metrics.getSingleMetric('weir_controlplane_push_bytes_total')!.get()).values.reduce((n, v) => n + v.value, 0);
  process.on('message', (m: Msg) => {
    void (async () => {
      if (m.q === 'exit') process.exit(0); // a normal exit writes --cpu-prof
      let fanoutMs: number | undefined;
      // Settled: once the agent was quiet long enough for its memory relief to run after the changes (at most 30 s).
      if (m.q === 'settled') {
        const n = relief.stats().reliefs;
        for (let end = Date.now() + 30_000; Date.now() < end && relief.stats().reliefs === n;) await new Promise((r) => setTimeout(r, 250));
      }
      if (m.q === 'fanout') {
        // Every connected proxy acked the current registry version (scoped proxies: a change outside their scope counts as acked).
        await cp.waitAcked(cp.stats().version as number, 120_000).catch(() => {});
        fanoutMs = (cp.stats() as { fanout: { lastMs?: number } }).fanout.lastMs;
      }
      // WEIR_BENCH_AGENT_HEAP=DIR: a heap snapshot of the agent with every proxy connected (what holds its memory).
      if ((m.q === 'stats' || m.q === 'v1') && process.env.WEIR_BENCH_AGENT_HEAP) writeHeapSnapshot(path.join(process.env.WEIR_BENCH_AGENT_HEAP, `agent-${process.pid}-${m.q}.heapsnapshot`));
      // WEIR_BENCH_AGENT_SPACES=1: where the agent's RSS is (V8 spaces, RSS kinds), on stderr.
      if (process.env.WEIR_BENCH_AGENT_SPACES) console.error(m.q, JSON.stringify({ spaces: getHeapSpaceStatistics().map((x) => [x.space_name, mb(x.space_size), mb(x.space_used_size)]), rollup: readFileSync('/proc/self/smaps_rollup', 'utf8').split('\n').filter((l) => /^(Rss|Anonymous|Private_Dirty|Shared_Clean|Private_Clean):/.test(l)).map((l) => l.replace(/\s+/g, ' ')) }));
      const st = cp.stats() as { views: { compiles: number; lastCompileMs: number; sharedStrings: number } };
      const mu = process.memoryUsage();
      process.send!({ q: m.q, rss: rss('self'), peak: rss('self', 'VmHWM'), heap: mu.heapUsed, external: mu.external, syncMs, bytes: await bytes(), views: st.views, fanoutMs });
    })();
  });
  process.send!({ q: 'ready', syncMs, rss: rss('self') });
}

// ---- child: a worker holding some of the proxies (real RegistryClients) ----
function workerMain(): void {
  let clients: BenchProxy[] = [];
  let expect: number[] = [];
  const poll = async (f: () => boolean): Promise<void> => { while (!f()) await new Promise((r) => setTimeout(r, 2)); };
  process.on('message', (m: Msg) => {
    void (async () => {
      const reply = (o: Record<string, unknown>) => process.send!({ q: m.q, rss: rss('self'), ...o });
      if (m.q === 'start') {
        const before = rss('self');
        expect = m.expect as number[];
        const real = m.real as boolean[];
        clients = (m.socks as string[]).map((socketPath, i) => benchProxy(socketPath, real[i]));
        reply({ before });
      } else if (m.q === 'ready') {
        await poll(() => clients.every((c, i) => c.size() === expect[i] && c.whole()));
        const c0 = clients[0].client;
        reply({ t: now(), held: c0 ? JSON.stringify(c0.compiled.snapshot()).length : 0, heldRegistry: c0 ? JSON.stringify([...c0.current()!.services.values()]).length : 0 });
      } else if (m.q === 'wait') {
        const seeing = clients.filter((c) => c.has(m.target as string));
        await poll(() => seeing.every((c) => c.firstIp(m.target as string) === m.ip));
        reply({ t: now(), n: seeing.length });
      } else if (m.q === 'gens') {
        reply({ gens: clients.map((c) => c.generation()) });
      } else if (m.q === 'stop') {
        for (const c of clients) c.stop();
        reply({});
        process.exit(0);
      }
    })();
  });
  process.send!({ q: 'up' });
}

// ---- parent ----
function ask<T = Record<string, unknown>>(child: ChildProcess, q: string, extra: Record<string, unknown> = {}): Promise<T & { rss: number }> {
  return new Promise((resolve) => {
    const on = (m: Msg) => { if (m.q === q) { child.off('message', on); resolve(m as never); } };
    child.on('message', on);
    child.send({ q, ...extra });
  });
}
const once = (child: ChildProcess, q: string): Promise<Msg> => new Promise((r) => { const on = (m: Msg) => { if (m.q === q) { child.off('message', on); r(m); } }; child.on('message', on); });

/**
 * The agent and workers run as plain node on a bundle of this file built as
 * dist/weir.mjs is (cni/proxy-bundle.mjs buildCliBundle: the DaemonSet runs
 * that), so their RSS is not tsx's loader and the agent's heap holds its
 * source the way the DaemonSet's agent does.
 */
async function bundleSelf(dir: string): Promise<string> {
  const { buildCliBundle } = await import(path.join(path.dirname(fileURLToPath(import.meta.url)), '../cni/proxy-bundle.mjs')) as { buildCliBundle(out: string, o: { sourcemap: boolean; entry: string }): Promise<string> };
  return buildCliBundle(path.join(dir, 'controlplane-scale.mjs'), { sourcemap: false, entry: fileURLToPath(import.meta.url) });
}
let BUNDLE = '';

async function run(scoped: boolean): Promise<Record<string, string | number>> {
  const dir = mkdtempSync(path.join(tmpdir(), 'wx-cpscale-'));
  const api = await TestApiServer.start({ bookmarkIntervalMs: 5000 });
  api.installCrd({ group: 'networking.istio.io', versions: ['v1'], kind: 'VirtualService', plural: 'virtualservices' });
  api.installCrd({ group: 'networking.istio.io', versions: ['v1'], kind: 'Sidecar', plural: 'sidecars' });
  const per = Math.max(1, Math.round(E / S));
  for (let i = 0; i < S; i++) {
    const ns = `ns-${i % NS}`;
    api.put({ apiVersion: 'v1', kind: 'Service', metadata: { name: `svc-${i}`, namespace: ns }, spec: { clusterIP: `10.${96 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`, ports: [{ name: 'http', port: 80, protocol: 'TCP' }] } });
    api.put({
      apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', addressType: 'IPv4', metadata: { name: `svc-${i}-a`, namespace: ns, labels: { 'kubernetes.io/service-name': `svc-${i}` } },
      endpoints: Array.from({ length: per }, (_, j) => ({ addresses: [`10.${128 + ((i * per + j) >> 16)}.${((i * per + j) >> 8) & 255}.${(i * per + j) & 255}`], conditions: { ready: true } })), ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
    });
  }
  for (let i = 0; i < V; i++) {
    api.put({ apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name: `vs-${i}`, namespace: `ns-${i % NS}` }, spec: { hosts: [`svc-${i}`], http: [{ timeout: '2s', route: [{ destination: { host: `svc-${i}` } }] }] } });
  }
  if (scoped) for (let n = 0; n < NS; n++) api.put({ apiVersion: 'networking.istio.io/v1', kind: 'Sidecar', metadata: { name: 'default', namespace: `ns-${n}` }, spec: { egress: [{ hosts: ['./*', 'istio-system/*'] }] } });
  const kubeconfig = api.writeKubeconfig(dir);
  const prof = process.env.WEIR_BENCH_AGENT_PROF;
  // The agent's node flags as the DaemonSet passes them (unless a diagnostic run overrides them).
  const flags = process.env.WEIR_BENCH_AGENT_FLAGS !== undefined ? process.env.WEIR_BENCH_AGENT_FLAGS.split(' ').filter(Boolean) : AGENT_NODE_FLAGS;
  const agent: ChildProcess = fork(BUNDLE, ['--agent', kubeconfig, dir], { execArgv: [...flags, ...(prof ? ['--cpu-prof', `--cpu-prof-dir=${prof}`] : [])], stdio: 'inherit' });
  const ready = await once(agent, 'ready') as Msg & { syncMs: number; rss: number };
  // Worker 0 holds one proxy (its RSS is one proxy's client state); the others share the rest.
  const groups: number[][] = [[0]];
  for (let i = 1; i < P; i++) { const w = 1 + ((i - 1) % Math.max(1, WORKERS - 1)); (groups[w] ??= []).push(i); }
  const workers = groups.map(() => fork(BUNDLE, ['--worker'], { execArgv: [], stdio: 'inherit' }));
  await Promise.all(workers.map((w) => once(w, 'up')));
  const perNs = Math.ceil(S / NS);
  const expected = (i: number): number => (scoped ? perNs : S);
  const t0 = now();
  const realCount = scoped ? P : REAL_UNSCOPED;
  const started = await Promise.all(workers.map((w, k) => ask<{ before: number }>(w, 'start', { socks: groups[k].map((i) => path.join(dir, `p${i}.sock`)), expect: groups[k].map(expected), real: groups[k].map((i) => i < realCount) })));
  const readies = await Promise.all(workers.map((w) => ask<{ t: number; held: number; heldRegistry: number }>(w, 'ready')));
  const coldMs = Math.max(...readies.map((r) => r.t)) - t0;
  const afterConnect = await ask<{ heap: number; external: number; views: { compiles: number; lastCompileMs: number; sharedStrings: number; layering: { layered: string[]; overlayItems: number } } }>(agent, 'stats');
  const target = TARGET;
  const lat: number[] = [];
  const fan: number[] = [];
  let seenBy = 0;
  const b0 = (await ask<{ bytes: number }>(agent, 'b0')).bytes;
  for (let k = 0; k < CHANGES; k++) {
    const ip = `10.250.${k >> 8}.${k & 255}`;
    const waits = workers.map((w) => ask<{ t: number; n: number }>(w, 'wait', { ip, target }));
    const t = now();
    api.put({ apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', addressType: 'IPv4', metadata: { name: 'svc-0-a', namespace: 'ns-0', labels: { 'kubernetes.io/service-name': 'svc-0' } }, endpoints: [{ addresses: [ip], conditions: { ready: true } }], ports: [{ name: 'http', port: 8080, protocol: 'TCP' }] });
    const seen = await Promise.all(waits);
    lat.push(Math.max(...seen.map((x) => x.t)) - t);
    seenBy = seen.reduce((n, x) => n + x.n, 0);
    const f = (await ask<{ fanoutMs?: number }>(agent, 'fanout')).fanoutMs;
    if (f !== undefined) fan.push(f);
  }
  const b1 = (await ask<{ bytes: number }>(agent, 'b1')).bytes;
  // One VirtualService change: with scoping only the proxies of its namespace receive it.
  const v0 = await ask<{ bytes: number; views: { compiles: number; rounds: number; live: string[] } }>(agent, 'v0');
  const vsBefore = v0.bytes;
  const gens = (await Promise.all(workers.map((w) => ask<{ gens: number[] }>(w, 'gens')))).flatMap((g) => g.gens);
  api.put({ apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name: 'vs-1', namespace: 'ns-1' }, spec: { hosts: ['svc-1'], http: [{ timeout: '3s', route: [{ destination: { host: 'svc-1' } }] }] } });
  // One round: the shared base once and every layered view from it, then each view compiled whole one per event-loop turn;
  // then give the pushes a moment to be applied.
  const tVs = now();
  for (let end = Date.now() + 180_000; Date.now() < end;) {
    if ((await ask<{ views: { rounds: number } }>(agent, 'vs?')).views.rounds > v0.views.rounds) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  const vsRoundMs = now() - tVs;
  await new Promise((r) => setTimeout(r, 2000));
  const vsAfter = await ask<{ bytes: number; peak: number; heap: number; external: number; views: { lastCompileMs: number; compiles: number; baseCompiles: number } }>(agent, 'v1');
  const settled = await ask<{ heap: number; external: number }>(agent, 'settled');
  const gens2 = (await Promise.all(workers.map((w) => ask<{ gens: number[] }>(w, 'gens')))).flatMap((g) => g.gens);
  const reached = gens2.filter((g, i) => g !== gens[i]).length;
  const oneProxyRss = readies[0].rss - started[0].before;
  const others = readies.slice(1);
  const perProxyShared = others.length ? others.reduce((n, r, k) => n + (r.rss - started[k + 1].before) / groups[k + 1].length, 0) / others.length : 0; // mixes full and wire proxies when not all are full
  await Promise.all(workers.map((w) => ask(w, 'stop')));
  agent.send({ q: 'exit' });
  await new Promise((r) => agent.once('exit', r));
  await api.stop();
  rmSync(dir, { recursive: true, force: true });
  return {
    scoped: scoped ? 'yes' : 'no', fullProxies: `${realCount} of ${P}`, agentSyncMs: Math.round(ready.syncMs), coldStartAllProxiesMs: Math.round(coldMs),
    agentRssSynced: mb(ready.rss), agentRssWithProxies: mb(afterConnect.rss), agentHeapUsedWithProxies: `${mb(afterConnect.heap)} (+${mb(afterConnect.external)} external)`, compiles: afterConnect.views.compiles, layeredViews: `${afterConnect.views.layering.layered.length} (${afterConnect.views.layering.overlayItems} own items)`, lastCompileMs: Math.round(afterConnect.views.lastCompileMs), sharedItemTexts: afterConnect.views.sharedStrings,
    endpointChangeSeenByProxies: seenBy, endpointChangeP50Ms: pct(lat, 0.5).toFixed(1), endpointChangeP99Ms: pct(lat, 0.99).toFixed(1),
    ackedByAllP50Ms: fan.length ? pct(fan, 0.5).toFixed(1) : 'n/a', ackedByAllP99Ms: fan.length ? pct(fan, 0.99).toFixed(1) : 'n/a', bytesPerEndpointChange: Math.round((b1 - b0) / CHANGES),
    vsChangeBytes: vsAfter.bytes - vsBefore, vsChangeCompiles: `${vsAfter.views.compiles - v0.views.compiles} (base ${vsAfter.views.baseCompiles - (v0.views as unknown as { baseCompiles: number }).baseCompiles})`, vsChangeRoundMs: Math.round(vsRoundMs), vsChangeProxiesReached: reached, compiledHeldPerProxyBytes: readies[0].held, registryHeldPerProxyBytes: readies[0].heldRegistry,
    oneProxyClientRss: mb(readies[0].rss), oneProxyStateRss: mb(oneProxyRss), ...(realCount === P ? { perProxyStateRssShared: mb(perProxyShared) } : {}),
    agentRssAfterChanges: mb(vsAfter.rss), agentHeapUsedAfterChanges: `${mb(vsAfter.heap)} (+${mb(vsAfter.external)} external)`, agentRssPeak: mb(vsAfter.peak), agentRssSettled: mb(settled.rss), agentHeapUsedSettled: `${mb(settled.heap)} (+${mb(settled.external)} external)`, vsChangeRecompileMs: Math.round(vsAfter.views.lastCompileMs),
  };
}

if (process.argv[2] === '--agent') {
  await agentMain(process.argv[3], process.argv[4]);
} else if (process.argv[2] === '--worker') {
  workerMain();
} else {
  const buildDir = mkdtempSync(path.join(tmpdir(), 'wx-cpscale-bundle-'));
  BUNDLE = await bundleSelf(buildDir);
  // WEIR_BENCH_ONLY=unscoped|scoped: one of the two runs (diagnostics; the result file then has one column).
  const only = process.env.WEIR_BENCH_ONLY;
  const rows = [...(only !== 'scoped' ? [await run(false)] : []), ...(only !== 'unscoped' ? [await run(true)] : [])];
  rmSync(buildDir, { recursive: true, force: true });
  const keys = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const table = [`| metric | ${rows.map((r) => `scoped: ${r.scoped}`).join(' | ')} |`, `|---|${rows.map(() => '---').join('|')}|`, ...keys.slice(1).map((k) => `| ${k} | ${rows.map((r) => r[k] ?? '—').join(' | ')} |`)].join('\n');
  const out = path.resolve(path.dirname(fileURLToPath(import.meta.url)), `results/controlplane-scale${FULL ? '' : '-reduced'}.md`);
  writeFileSync(out, `# Control-plane scale (${FULL ? 'full' : 'REDUCED'} scale: ${S} Services, ${E} endpoints, ${V} VirtualServices, ${P} proxies, ${NS} namespaces)

\`${FULL ? 'WEIR_BENCH_FULL=1 ' : ''}flock /tmp/weir-bench.lock node --import tsx bench/controlplane-scale.ts\`, ${new Date().toISOString().slice(0, 16)}Z, ${os.cpus().length} vCPUs (shared with other work), load average ${os.loadavg().map((x) => x.toFixed(1)).join(' ')} at the end.
The agent's control plane and the proxy workers run as plain node on a bundle built as dist/weir.mjs is (cni/proxy-bundle.mjs), the agent with the node flags \`${process.env.WEIR_BENCH_AGENT_FLAGS ?? AGENT_NODE_FLAGS.join(' ')}\`${process.env.WEIR_BENCH_AGENT_FLAGS !== undefined ? ' (WEIR_BENCH_AGENT_FLAGS, not the DaemonSet\'s)' : ' (the DaemonSet\'s: src/agent/node-flags.ts)'} and memory relief; the control plane runs in its own process (Services, EndpointSlices and Istio resources by list/watch from the test API server).
The ${P} proxies run in ${workers(P)} worker processes over unix sockets; worker 0 holds exactly one (proxy 0). "Full" proxies are the real proxy client
(RegistryClient + V2Applier + CompiledConfigStore: v2 hello, every push schema-checked, applied, acked). The others (fullProxies row) are
bench/lib/wire-proxy.ts: the same hello, envelope and item checks, acks and nacks, keeping only registry keys (${P} full unscoped states
of this mesh do not fit the shared machine). Proxy i is in namespace ns-(i mod ${NS}).
Scoped = one Sidecar per namespace, egress \`./*\` + \`istio-system/*\` (${Math.ceil(S / NS)} services per namespace).

${table}

${NOTES}
${ISTIO_COMPARISON}
`);
  console.log(table);
}

function workers(p: number): number { return Math.min(p, WORKERS); }
