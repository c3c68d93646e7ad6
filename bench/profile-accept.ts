// Where the proxy's JavaScript thread spends a short connection: one client
// proxy under `node --cpu-prof` while a client in its pod opens short TCP
// connections (16 in parallel, connect → 2 bytes → first reply byte → close,
// as bench/proxy-l4's conns workload) to a declared-TCP service through both
// proxies, for a few seconds. Prints self time by category and the top
// functions. Short on purpose (the bench machine is shared):
//   SECONDS=5 npx tsx bench/profile-accept.ts
// SIDE=server profiles the server proxy (inbound 15006) instead of the client's.
// PROXY=haproxy runs HAProxy (static config, the bench's) in both pods instead,
// for the per-connection CPU it needs on the same path. The proxies' pids are
// printed before the load starts, for perf trace / strace to attach to.
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { Cluster, REPO, service, slice } from '../test/integration/proxy-harness.js';
import { bundleModuleStarts, formatSummary, summarise } from './lib/cpuprofile.js';
import { HZ, shortConnectionSysctls, threadCpu } from './lib/two-pod.js';

const SECONDS = Number(process.env.SECONDS ?? 5);
const SIDE = process.env.SIDE === 'server' ? 'server' : 'client';
const HAPROXY = process.env.PROXY === 'haproxy';
const VIP = '10.96.59.10';
const LOAD = `
const net = require('node:net');
const [host, port, seconds] = process.argv.slice(1);
const end = Date.now() + Number(seconds) * 1000; let done = 0, errors = 0, active = 0;
function one() {
  if (Date.now() > end) { if (--active === 0) { console.log(JSON.stringify({ done, errors, perSec: done / Number(seconds) })); process.exit(0); } return; }
  const s = net.connect({ host, port: Number(port) }); s.setNoDelay(true);
  s.on('connect', () => s.write('Ex')); s.on('data', () => { done++; s.destroy(); one(); });
  s.on('error', () => { errors++; s.destroy(); one(); });
}
for (let i = 0; i < 16; i++) { active++; one(); }
`;

// The bench's HAProxy (bench/proxy-l4.ts): one thread, static backends, no original-destination lookup.
function haproxyConfig(outbound: string): string {
  return ['global', '  maxconn 9000', '  nbthread 1', 'defaults', '  mode tcp', '  timeout connect 5s', '  timeout client 1h', '  timeout server 1h',
    'frontend outbound', '  bind :::15001 v4v6', '  default_backend out', 'backend out', `  server s1 ${outbound}`,
    'frontend inbound', '  bind :::15006 v4v6', '  default_backend in', 'backend in', '  server app 127.0.0.1:8080 source 127.0.0.6', ''].join('\n');
}

const c = new Cluster();
const profDir = mkdtempSync(path.join(tmpdir(), 'wx-cpuprof-'));
chmodSync(profDir, 0o777);
try {
  await c.startControlPlane();
  const client = await c.addPod('client', 'bench');
  const server = await c.addPod('server', 'bench');
  for (const p of [client, server]) shortConnectionSysctls(p);
  c.cp!.apply((b) => b.upsertService(service('echo', 'bench', VIP, [{ name: 'tcp-echo', port: 80 }])));
  c.cp!.apply((b) => b.upsertEndpointSlice(slice('echo', 'bench', 'echo-a', [{ pod: server }], [{ name: 'tcp-echo', port: 8080 }])));
  await c.startApp(server);
  // The shipped bundle's code, built unminified so the profile names weir's functions.
  const { buildProxyBundle } = await import(path.join(REPO, 'cni/proxy-bundle.mjs')) as { buildProxyBundle(out: string, o: { sourcemap: boolean; minify: boolean }): Promise<string> };
  const bundle = await buildProxyBundle(path.join(profDir, 'weir-proxy.mjs'), { sourcemap: false, minify: false });
  chmodSync(bundle, 0o644);
  const plain = c.proxyCommand;
  const profiled = [process.execPath, '--cpu-prof', '--cpu-prof-dir', profDir, bundle];
  for (const pod of [server, client]) {
    if (HAPROXY) {
      const cfg = path.join(profDir, `${pod.name}.haproxy.cfg`);
      writeFileSync(cfg, haproxyConfig(`${server.ip4}:8080`));
      chmodSync(cfg, 0o644);
      pod.proxy = pod.ns.spawn('setpriv', ['--reuid', '1337', '--regid', '1337', '--clear-groups', 'haproxy', '-db', '-f', cfg]);
      continue;
    }
    c.proxyCommand = (pod === server) === (SIDE === 'server') ? profiled : plain;
    await c.startProxy(pod, ['--no-dns']);
  }
  if (HAPROXY) await new Promise((r) => setTimeout(r, 300));
  else await c.cp!.waitAcked(c.cp!.stats().version as number, 5000);
  const proxies = [['client proxy', client.proxy!.pid!], ['server proxy', server.proxy!.pid!]] as const;
  console.log(`pids: ${proxies.map(([name, pid]) => `${name} ${pid}`).join(', ')}`);
  const cpu0 = proxies.map(([, pid]) => threadCpu(pid));
  const out = execFileSync('ip', ['netns', 'exec', client.ns.name, process.execPath, '-e', LOAD, VIP, '80', String(SECONDS)], { encoding: 'utf8', timeout: (SECONDS + 30) * 1000 });
  console.log(`load: ${out.trim()}`);
  // CPU time each thread really got (utime+stime), per connection: unlike the
  // sampler's wall-clock attribution, a preempted thread is not charged.
  const done = (JSON.parse(out.trim()) as { done: number }).done;
  proxies.forEach(([name, pid], i) => {
    const cpu1 = threadCpu(pid);
    const rows = [...cpu1].map(([tid, t]) => ({ tid, comm: t.comm, ms: ((t.ticks - (cpu0[i].get(tid)?.ticks ?? 0)) * 1000) / HZ })).filter((r) => r.ms > 0);
    const total = rows.reduce((a, r) => a + r.ms, 0);
    const js = rows.find((r) => r.tid === pid)?.ms ?? 0;
    console.log(`${name} CPU per connection: total ${((total * 1000) / done).toFixed(0)} µs, JS thread ${((js * 1000) / done).toFixed(0)} µs; by thread: ${rows.sort((a, b) => b.ms - a.ms).map((r) => `${r.tid === pid ? 'JS' : r.comm}(${r.tid}) ${((r.ms * 1000) / done).toFixed(0)}`).join(', ')}`);
  });
  if (HAPROXY) process.exit(0);
  const profiledPod = SIDE === 'server' ? server : client;
  profiledPod.proxy!.kill('SIGTERM');
  await once(profiledPod.proxy!, 'exit');
  console.log(`JavaScript profile of the ${SIDE} proxy:`);
  const file = readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
  if (!file) throw new Error('no profile written');
  // Bundle frames named by their source module (esbuild's markers in the unminified bundle).
  console.log(formatSummary(summarise(path.join(profDir, file), bundleModuleStarts(readFileSync(bundle, 'utf8')))));
} finally {
  await c.destroy();
  rmSync(profDir, { recursive: true, force: true });
}
