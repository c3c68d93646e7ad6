// Control-plane scale: an API server (the test API server, real list/watch)
// with S Services, E endpoints, V VirtualServices, P proxies (the real proxy
// client, RegistryClient, over unix sockets) against the agent's control
// plane running in its own process (so its RSS is its own), with and
// without Sidecar scoping (one Sidecar per namespace: "./*" + istio-system).
// Measures: agent RSS, cold start (control plane start → synced, then → every
// proxy holds the whole config), one endpoint change → applied by all P
// proxies (p50/p99), bytes pushed per change, what one proxy holds.
//   npx tsx bench/controlplane-scale.ts            reduced scale (S=1000, E=10000, V=100, P=20)
//   WEIR_BENCH_FULL=1 npx tsx bench/controlplane-scale.ts   the issue's scale (10k/100k/1k/100): not on a shared machine
import { fork, type ChildProcess } from 'node:child_process';
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

const FULL = process.env.WEIR_BENCH_FULL === '1';
const S = Number(process.env.WEIR_BENCH_SERVICES ?? (FULL ? 10_000 : 1000));
const E = Number(process.env.WEIR_BENCH_ENDPOINTS ?? (FULL ? 100_000 : 10_000));
const V = Number(process.env.WEIR_BENCH_VS ?? (FULL ? 1000 : 100));
const P = Number(process.env.WEIR_BENCH_PROXIES ?? (FULL ? 100 : 20));
const NS = Math.max(1, Math.round(S / 100)); // 100 services per namespace
const CHANGES = 20;
const rss = (pid: number | 'self'): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;
const mb = (b: number): string => `${(b / 1048576).toFixed(0)} MB`;
const pct = (xs: number[], p: number): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))];

// ---- child: the agent's control plane ----
async function agentMain(kubeconfig: string, sockDir: string): Promise<void> {
  const kc = loadKubeConfig(kubeconfig);
  const log = pino({ level: 'silent' });
  const metrics = new Metrics();
  const istio = new IstioConfigSource(kc, new IstioConfigStore(), log);
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
  process.on('message', (m: { q: string }) => {
    void (async () => {
      const st = cp.stats() as { views: { compiles: number; lastCompileMs: number } };
      process.send!({ q: m.q, rss: rss('self'), syncMs, bytes: await bytes(), views: st.views });
    })();
  });
  process.send!({ q: 'ready', syncMs, rss: rss('self') });
}

// ---- parent ----
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
  const child: ChildProcess = fork(fileURLToPath(import.meta.url), ['--agent', kubeconfig, dir], { execArgv: ['--import', 'tsx'], stdio: 'inherit' });
  const ask = (q: string) => new Promise<{ rss: number; syncMs: number; bytes: number; views: { compiles: number; lastCompileMs: number } }>((r) => { const on = (m: { q: string }) => { if (m.q === q) { child.off('message', on); r(m as never); } }; child.on('message', on); if (q !== 'ready') child.send({ q }); });
  const ready = await ask('ready');
  const t0 = performance.now();
  const clients = Array.from({ length: P }, (_, i) => new RegistryClient({ socketPath: path.join(dir, `p${i}.sock`), logger: pino({ level: 'silent' }) }));
  for (const c of clients) c.start();
  const target = `ns-0/svc-0`;
  await until(() => clients.every((c) => c.current()?.services.size === S && c.compiled.generation >= 5));
  const coldMs = performance.now() - t0;
  const afterConnect = await ask('stats');
  const held = JSON.stringify(clients[0].compiled.snapshot()).length;
  const heldRegistry = JSON.stringify([...clients[0].current()!.services.values()]).length;
  const lat: number[] = [];
  const b0 = (await ask('b0')).bytes;
  for (let k = 0; k < CHANGES; k++) {
    const ip = `10.250.${k >> 8}.${k & 255}`;
    const t = performance.now();
    api.put({ apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', addressType: 'IPv4', metadata: { name: 'svc-0-a', namespace: 'ns-0', labels: { 'kubernetes.io/service-name': 'svc-0' } }, endpoints: [{ addresses: [ip], conditions: { ready: true } }], ports: [{ name: 'http', port: 8080, protocol: 'TCP' }] });
    await until(() => clients.every((c) => c.current()?.services.get(target)?.endpoints[0]?.ip === ip));
    lat.push(performance.now() - t);
  }
  const b1 = (await ask('b1')).bytes;
  // One VirtualService change: with scoping only the proxies of its namespace receive it.
  const vsBefore = (await ask('v0')).bytes;
  const gens = clients.map((c) => c.compiled.generation);
  api.put({ apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name: 'vs-1', namespace: 'ns-1' }, spec: { hosts: ['svc-1'], http: [{ timeout: '3s', route: [{ destination: { host: 'svc-1' } }] }] } });
  await new Promise((r) => setTimeout(r, 1500));
  const vsBytes = (await ask('v1')).bytes - vsBefore;
  const reached = clients.filter((c, i) => c.compiled.generation !== gens[i]).length;
  for (const c of clients) c.stop();
  child.kill();
  await api.stop();
  rmSync(dir, { recursive: true, force: true });
  return {
    scoped: scoped ? 'yes' : 'no', agentSyncMs: Math.round(ready.syncMs), coldStartAllProxiesMs: Math.round(coldMs),
    agentRssSynced: mb(ready.rss), agentRssWithProxies: mb(afterConnect.rss), compiles: afterConnect.views.compiles, lastCompileMs: Math.round(afterConnect.views.lastCompileMs),
    endpointChangeP50Ms: pct(lat, 0.5).toFixed(1), endpointChangeP99Ms: pct(lat, 0.99).toFixed(1), bytesPerEndpointChange: Math.round((b1 - b0) / CHANGES),
    vsChangeBytes: vsBytes, vsChangeProxiesReached: reached, compiledHeldPerProxyBytes: held, registryHeldPerProxyBytes: heldRegistry,
  };
}

async function until(f: () => boolean, ms = 600_000): Promise<void> {
  const end = Date.now() + ms;
  while (!f()) { if (Date.now() > end) throw new Error('bench: timed out'); await new Promise((r) => setTimeout(r, 5)); }
}

if (process.argv[2] === '--agent') {
  await agentMain(process.argv[3], process.argv[4]);
} else {
  const rows = [await run(false), await run(true)];
  const keys = Object.keys(rows[0]);
  const table = [`| metric | ${rows.map((r) => `scoped: ${r.scoped}`).join(' | ')} |`, `|---|${rows.map(() => '---').join('|')}|`, ...keys.slice(1).map((k) => `| ${k} | ${rows.map((r) => r[k]).join(' | ')} |`)].join('\n');
  const out = path.resolve(path.dirname(fileURLToPath(import.meta.url)), 'results/controlplane-scale.md');
  writeFileSync(out, `# Control-plane scale (${FULL ? 'full' : 'REDUCED'} scale: ${S} Services, ${E} endpoints, ${V} VirtualServices, ${P} proxies, ${NS} namespaces)

\`npx tsx bench/controlplane-scale.ts\` (${FULL ? 'WEIR_BENCH_FULL=1' : 'reduced: the issue asks for 10k/100k/1k/100; not run at that scale on the shared 2-core machine'}), ${new Date().toISOString().slice(0, 10)}, ${os.cpus().length} vCPUs, load average ${os.loadavg()[0].toFixed(1)}.
The agent's control plane runs in its own process (Services, EndpointSlices, pods and Istio resources by list/watch from the test API server);
the proxies are the real proxy client (RegistryClient + CompiledConfigStore) in the bench process, over unix sockets, v2.
Scoped = one Sidecar per namespace, egress \`./*\` + \`istio-system/*\` (100 services per namespace).

${table}

Reading it:
- agentRss* is the agent process's VmRSS, running under tsx: most of it is the runtime and loader, not the data (see the last line).
- endpointChange*: one EndpointSlice change in the API server → every proxy holds the new endpoint (watch + delta + apply), ${CHANGES} changes.
  An endpoint-only change costs no recompile (compiled kinds never contain endpoints), so it is one registry delta per proxy.
- bytesPerEndpointChange is for all proxies together; the registry kind is node-wide, so scoping does not shrink it (yet: registry scoping is open).
- vsChange*: one VirtualService changed; scoped, only the proxies of its namespace receive anything, and route tables travel per virtual host.
- compiledHeldPerProxyBytes: the JSON of what one proxy holds of the compiled kinds; scoped it is proportional to the namespace, not the mesh.
- For comparison, Istio's published figures (istio.io/v1.13/docs/ops/deployment/performance-and-scalability, Istio 1.13.4): a mesh of 1000 services
  and 2000 sidecars at 70,000 requests/s; istiod uses 1 vCPU and 1.5 GB of memory for it (cluster-wide, all proxies), and an Envoy sidecar 0.35 vCPU
  and 40 MB per 1000 requests/s. weir's agent is per node (only that node's proxies), so its RSS here is not the same quantity; the figure to hold
  against istiod's is the one of the 1000-service row above. Istio documents that without Sidecar scoping every sidecar receives config for every
  service, which the scoped column cuts to the namespace. Weir's unscoped compiled config is ~${Math.round(Number(rows[0].compiledHeldPerProxyBytes) / S)} bytes (JSON) per service, plus the registry.
- agentRss*: 'the tsx loader' estimate comes from a 200-service run measuring ~200 MB as well; a bundled agent was not measured.
`);
  console.log(table);
}
