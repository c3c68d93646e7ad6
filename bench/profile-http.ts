// Where the proxies' JavaScript threads spend an HTTP request: the client
// pod's and the server pod's weir proxy (the shipped bundle's code, built
// unminified so functions keep their names) under `node --cpu-prof`, while
// h2load in the client pod drives the bench/proxy-http topology (nginx app,
// Service ports named http/http2) at saturation: HTTP/1.1 16 connections × 1
// request in flight, HTTP/2 4 connections × 16 streams. Prints, per proxy,
// CPU ms per request (from /proc, all threads), RSS, self time by category,
// file and function, and whether upstream connections were reused (sockets
// left in TIME-WAIT and connections the app accepted, counted in the pods).
// PROFILE=0 runs the shipped (minified) bundle without the profiler, for
// CPU per request without the sampler's overhead (WEIR_PROXY_NODE_FLAGS: V8
// flags for the proxies, as bench/lib/two-pod.ts passes them).
//   flock /tmp/weir-bench.lock node --import tsx bench/profile-http.ts
// Env: PROTOCOLS=h1,h2 SECONDS=5 PROFILE=1 TOP=30 CALLERS=fnA,fnB (who calls them)
//      BASELINE=<commit> (profile that commit's proxy instead of this checkout's)
import { chmodSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
// @ts-expect-error plain .mjs build helper, no types
import { buildProxyBundle } from '../cni/proxy-bundle.mjs';
import { BenchCluster, cpuTicks, HZ, mem, REPO, sleep, waitForLine, type Pod } from './lib/two-pod.js';
import { APP_NGINX, APP_PORT, type Protocol } from './lib/http-proxies.js';
import { bundleModuleStarts, formatSummary, summarise } from './lib/cpuprofile.js';
import { NODE_FLOOR_PROXY } from './lib/node-floor-proxy.js';

const SECONDS = Number(process.env.SECONDS ?? 5);
const PROFILE = process.env.PROFILE !== '0';
/** FLOOR=1: bench/lib/node-floor-proxy.ts in both pods instead of weir (h2 between the proxies, as weir). */
const FLOOR = process.env.FLOOR === '1';
const TOP = Number(process.env.TOP ?? 30);
const PROTOCOLS = (process.env.PROTOCOLS ?? 'h1,h2').split(',') as Protocol[];
const VIP = '10.96.97.10';
const SVC_PORT: Record<Protocol, number> = { h1: 80, h2: 81, grpc: 82 };

const ssCount = (pod: Pod, filter: string[]) =>
  execFileSync('ip', ['netns', 'exec', pod.ns.name, 'ss', '-Htan', ...filter], { encoding: 'utf8' }).split('\n').filter(Boolean).length;

const bc = new BenchCluster();
const seen = new Set<string>();
try {
  await bc.start();
  const p = await bc.pair('pf');
  await bc.nginx(p.server, APP_NGINX, 1, false);
  let bundleStarts: { line: number; name: string }[] | undefined;
  const profDir = path.join(bc.tmp, 'prof');
  if (PROFILE) {
    mkdirSync(profDir);
    chmodSync(profDir, 0o777);
    // BASELINE=<commit>: profile that commit's proxy (its src/ extracted under the repo, so npm deps resolve).
    const base = process.env.BASELINE;
    let srcRoot: string | undefined;
    if (base) {
      srcRoot = path.join(REPO, '.profile-baseline');
      rmSync(srcRoot, { recursive: true, force: true });
      mkdirSync(srcRoot);
      execFileSync('sh', ['-c', `git -C ${REPO} archive ${base} src | tar -x -C ${srcRoot}`]);
      console.log(`profiling the proxy of commit ${base}`);
    }
    const bundle = await buildProxyBundle(path.join(bc.tmp, 'weir-proxy-unminified.mjs'), { sourcemap: false, minify: false, srcRoot }) as string;
    if (srcRoot) rmSync(srcRoot, { recursive: true, force: true });
    chmodSync(bundle, 0o644);
    bundleStarts = bundleModuleStarts(readFileSync(bundle, 'utf8'));
  }
  for (const protocol of PROTOCOLS) {
    const dir = path.join(profDir, protocol);
    if (PROFILE) {
      mkdirSync(dir);
      chmodSync(dir, 0o777);
      bc.c.proxyCommand = [process.execPath, '--cpu-prof', '--cpu-prof-dir', dir, path.join(bc.tmp, 'weir-proxy-unminified.mjs')];
    }
    await bc.stopProxy(p.client);
    await bc.stopProxy(p.server);
    if (FLOOR) {
      const node = (args: string[]) => [...(PROFILE ? ['--cpu-prof', '--cpu-prof-dir', dir] : []), '-e', NODE_FLOOR_PROXY, ...args];
      p.client.proxy = bc.spawnIn(p.client, process.execPath, node(['out', protocol, 'h2', p.server.ip4, String(APP_PORT[protocol]), '']), true);
      p.server.proxy = bc.spawnIn(p.server, process.execPath, node(['in', 'h2', protocol, '127.0.0.1', String(APP_PORT[protocol]), '127.0.0.6']), true);
      await Promise.all([p.client.proxy, p.server.proxy].map((proc) => waitForLine(proc, /floor proxy ready/, 15000)));
    } else {
      await bc.weir(p, 'web', VIP, [{ name: 'http', port: SVC_PORT.h1, targetPort: APP_PORT.h1 }, { name: 'http2', port: SVC_PORT.h2, targetPort: APP_PORT.h2 }], []);
      await bc.c.cp!.waitAcked(bc.c.cp!.stats().version as number, 5000);
    }
    await sleep(300);
    const url = `http://${VIP}:${SVC_PORT[protocol]}/`;
    const idle = [p.client, p.server].map((pod) => mem(pod.proxy!.pid!).rss);
    // Warm-up (JIT, pools), then the measured run.
    execFileSync('ip', ['netns', 'exec', p.client.ns.name, 'h2load', ...(protocol === 'h1' ? ['--h1'] : []), '-c', '4', '-n', '2000', url], { encoding: 'utf8', timeout: 60_000 });
    const pids = [p.client.proxy!.pid!, p.server.proxy!.pid!];
    const tw0 = [ssCount(p.client, ['state', 'time-wait']), ssCount(p.server, ['state', 'time-wait'])];
    const c0 = pids.map(cpuTicks);
    const load0 = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
    const conc = protocol === 'h1' ? ['--h1', '-c', '16', '-m', '1'] : ['-c', '4', '-m', '16'];
    const out = execFileSync('ip', ['netns', 'exec', p.client.ns.name, 'h2load', ...conc, '-D', String(SECONDS), url], { encoding: 'utf8', timeout: (SECONDS + 60) * 1000 });
    const cpu = pids.map((pid, i) => (cpuTicks(pid) - c0[i]) / HZ);
    const rss = pids.map((pid) => mem(pid).rss);
    const tw = [ssCount(p.client, ['state', 'time-wait']) - tw0[0], ssCount(p.server, ['state', 'time-wait']) - tw0[1]];
    const upstreamToApp = ssCount(p.server, ['state', 'established', `( dport = :${APP_PORT[protocol]} )`]);
    const done = Number(/requests: \d+ total, \d+ started, (\d+) done/.exec(out)?.[1] ?? NaN);
    const rps = Number(/finished in [\d.]+s, ([\d.]+) req\/s/.exec(out)?.[1] ?? NaN);
    const codes = /status codes: .*/.exec(out)?.[0] ?? '?';
    console.log(`\n=== ${FLOOR ? 'node floor proxy' : 'weir'}, ${protocol}: ${rps} req/s, ${done} requests (${codes}); load average before ${load0}, after ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
    for (const [i, who] of ['client proxy', 'server proxy'].entries()) {
      console.log(`${who}: CPU ${(cpu[i] * 1000 / done).toFixed(3)} ms per request (${cpu[i].toFixed(2)} s), RSS ${rss[i].toFixed(1)} MB (idle ${idle[i].toFixed(1)}), new TIME-WAIT sockets in its pod ${tw[i]}`);
    }
    console.log(`app connections from the server proxy at the end: ${upstreamToApp} established`);
    if (!PROFILE) continue;
    for (const [i, pod] of [p.client, p.server].entries()) {
      const proc = pod.proxy!;
      // setpriv execs node, so this is node itself; --cpu-prof writes on a normal exit, which both make on SIGTERM.
      proc.kill('SIGTERM');
      await once(proc, 'exit');
      pod.proxy = undefined;
      const file = readdirSync(dir).map((f) => path.join(dir, f)).find((f) => f.endsWith('.cpuprofile') && !seen.has(f));
      if (!file) throw new Error(`no profile written for the ${i === 0 ? 'client' : 'server'} proxy`);
      seen.add(file);
      const s = summarise(file, bundleStarts, (process.env.CALLERS ?? '').split(',').filter(Boolean));
      console.log(`--- ${protocol}, ${i === 0 ? 'client' : 'server'} proxy: busy ${(s.busyUs / 1000 / done).toFixed(3)} ms per request`);
      console.log(formatSummary(s, TOP));
    }
  }
} finally {
  await bc.close();
}

