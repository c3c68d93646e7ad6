// What the proxy benches share: the two-pod netns topology (client pod and
// server pod on one bridge, weir's capture rules in both), the proxies under
// test started the same way in every bench (weir's shipped bundle, HAProxy
// and nginx as UID 1337 with static configs), and the measurements (CPU and
// memory from /proc, quantiles, the machine line of a result file).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
// @ts-expect-error plain .mjs build helper, no types
import { buildProxyBundle } from '../../cni/proxy-bundle.mjs';
import { Cluster, REPO, waitForLine, service, slice, type Pod } from '../../test/integration/proxy-harness.js';
import type { ControlPlaneDeps } from '../../src/controlplane/server.js';
import { PROXY_NODE_FLAGS } from '../../src/proxy/node-flags.js';

export { REPO, waitForLine, type Pod };

export const HZ = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function cpuTicks(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return Number(f[11]) + Number(f[12]); // utime + stime, all threads
}
export const cpuSec = (pids: number[], before: number[]) => pids.reduce((s, pid, i) => s + (cpuTicks(pid) - before[i]) / HZ, 0);
/** utime+stime (clock ticks) of every thread of a process, by thread id, with the thread's name. */
export function threadCpu(pid: number): Map<number, { comm: string; ticks: number }> {
  const m = new Map<number, { comm: string; ticks: number }>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      m.set(Number(tid), { comm, ticks: Number(f[11]) + Number(f[12]) });
    } catch { /* thread gone */ }
  }
  return m;
}

/** Memory of one process, MB: what `ps` shows (VmRSS) split into anonymous and file pages, and Pss (shared pages divided among the processes mapping them). */
export interface Mem { rss: number; anon: number; file: number; pss: number; pssAnon: number; pssFile: number; hwm: number }
export function mem(pid: number): Mem {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const kb = (text: string, key: string) => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(text)?.[1] ?? NaN) / 1024;
  return {
    rss: kb(status, 'VmRSS'), anon: kb(status, 'RssAnon'), file: kb(status, 'RssFile') + kb(status, 'RssShmem'), hwm: kb(status, 'VmHWM'),
    pss: kb(rollup, 'Pss'), pssAnon: kb(rollup, 'Pss_Anon'), pssFile: kb(rollup, 'Pss_File'),
  };
}

export function quantile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}
/** The middle value; with an even count the mean of the two middle ones (2 rounds: their mean, not the larger). */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
}
export const fmt = (n: number, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : '-');

export function readOr(file: string): string {
  try { return readFileSync(file, 'utf8').trim(); } catch { return '?'; }
}

/** The header lines every result file starts with: when, on what, and that the machine was shared. */
export function machineLines(seconds: number, shared: string): string {
  const kernel = execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim();
  const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  return `Date: ${new Date().toISOString()}  
Machine: ${execFileSync('nproc', { encoding: 'utf8' }).trim()} vCPU Firecracker VM (cpuidle: haltpoll, guest_halt_poll_ns ${readOr('/sys/module/haltpoll/parameters/guest_halt_poll_ns')}), ${cpus()[0]?.model ?? 'unknown'}, kernel ${kernel}, Node ${process.version}; load average at the end ${load}  
${shared}  
Run: ${fmt(seconds, 0)} s of measurement.`;
}

/** Runs `script` (node -e) inside the client pod as root, so capture applies; returns its last stdout line as JSON. */
export function runNodeIn(pod: Pod, script: string, args: string[], timeoutMs = 600_000): Record<string, unknown> {
  const out = execFileSync('ip', ['netns', 'exec', pod.ns.name, process.execPath, '-e', script, ...args], { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 << 20, cwd: REPO });
  return JSON.parse(out.trim().split('\n').pop()!) as Record<string, unknown>;
}

/** A client pod and a server pod of one mode. */
export interface PodPair { client: Pod; server: Pod }

/**
 * The cluster of a bench run: control plane, the proxy bundle exactly as it
 * ships (dist/weir-proxy.mjs is the same build: cni/proxy-bundle.mjs, plain
 * node, not tsx — tsx's compiler would dominate RSS) and the temp dir for
 * configs. `close()` kills what was started and removes every netns.
 */
export class BenchCluster {
  readonly c = new Cluster();
  readonly tmp = mkdtempSync(path.join(tmpdir(), 'wx-bench-'));
  private readonly started: ChildProcess[] = [];
  private closing = false;

  async start(cp: Partial<ControlPlaneDeps> = {}): Promise<void> {
    chmodSync(this.tmp, 0o755);
    await this.c.startControlPlane(cp);
    const bundle = await buildProxyBundle(path.join(this.tmp, 'weir-proxy.mjs'), { sourcemap: false });
    chmodSync(bundle, 0o644);
    process.env.WEIR_NATIVE_ADDON = path.join(REPO, 'native/build/Release/weir_native.node');
    // The shipped V8 flags unless WEIR_PROXY_NODE_FLAGS says otherwise ("" = none).
    const flags = process.env.WEIR_PROXY_NODE_FLAGS !== undefined ? process.env.WEIR_PROXY_NODE_FLAGS.split(' ').filter(Boolean) : PROXY_NODE_FLAGS;
    this.c.proxyCommand = [process.execPath, ...flags, bundle];
  }

  async pair(key: string, opts: { capture?: boolean } = {}): Promise<PodPair> {
    const p = { client: await this.c.addPod(`${key}-c`, 'bench', opts), server: await this.c.addPod(`${key}-s`, 'bench', opts) };
    for (const pod of [p.client, p.server]) shortConnectionSysctls(pod);
    return p;
  }

  /** A process in a pod's netns that close() kills. */
  spawnIn(pod: Pod, cmd: string, args: string[], asProxy = false): ChildProcess {
    const proc = asProxy ? pod.ns.spawn('setpriv', ['--reuid', '1337', '--regid', '1337', '--clear-groups', cmd, ...args]) : pod.ns.spawn(cmd, args);
    this.started.push(proc);
    // Kept so a process that dies mid-run says why (the bench would only see its pid vanish).
    let tail = '';
    const keep = (d: Buffer) => { tail = (tail + d.toString()).slice(-2000); };
    proc.stdout?.on('data', keep);
    proc.stderr?.on('data', keep);
    proc.on('exit', (code, signal) => { if (!this.closing && signal !== 'SIGKILL') process.stderr.write(`bench: ${cmd} in ${pod.name} exited (${code ?? signal}): ${tail}\n`); });
    return proc;
  }

  /** Any process outside the pods that close() kills (a bare Node for comparison, …). */
  track(proc: ChildProcess): ChildProcess {
    this.started.push(proc);
    return proc;
  }

  /**
   * weir in both pods of `p`: a Service `svc` (VIP `vip`, `ports` name/port →
   * targetPort on the server pod), then `weir proxy` as UID 1337 in each pod.
   */
  async weir(p: PodPair, svc: string, vip: string, ports: { name: string; port: number; targetPort: number }[], flags: string[], env?: NodeJS.ProcessEnv): Promise<void> {
    this.c.cp!.apply((b) => b.upsertService(service(svc, 'bench', vip, ports.map(({ name, port }) => ({ name, port })))));
    this.c.cp!.apply((b) => b.upsertEndpointSlice(slice(svc, 'bench', `${svc}-a`, [{ pod: p.server }], ports.map(({ name, targetPort }) => ({ name, port: targetPort })))));
    await this.c.startProxy(p.client, ['--no-access-log', '--no-dns', ...flags], env);
    await this.c.startProxy(p.server, ['--no-access-log', '--no-dns', ...flags], env);
  }

  /** HAProxy (Debian) as UID 1337 in a pod, with this config; replaces a previous one in that pod. */
  async haproxy(pod: Pod, config: string): Promise<void> {
    await this.stopProxy(pod);
    const cfg = this.writeConfig(`${pod.name}.haproxy.cfg`, config);
    pod.proxy = this.spawnIn(pod, 'haproxy', ['-db', '-f', cfg], true);
    await sleep(300);
    if (pod.proxy.exitCode !== null) throw new Error(`haproxy in ${pod.name} exited at once`);
  }

  /**
   * nginx (Debian) as UID 1337 in a pod, in the foreground, with this
   * http{} block (events, pid and temp paths are filled in, under the temp
   * dir so nothing touches /var); replaces a previous one in that pod.
   */
  async nginx(pod: Pod, http: string, workers = 1, asProxy = true): Promise<ChildProcess> {
    if (asProxy) await this.stopProxy(pod);
    const dir = path.join(this.tmp, `nginx-${pod.name}-${asProxy ? 'proxy' : 'app'}`);
    mkdirSync(dir, { recursive: true });
    chmodSync(dir, 0o777);
    const conf = `daemon off;
worker_processes ${workers};
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/fcgi; uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;
${http}
}
`;
    const file = this.writeConfig(`${pod.name}.${asProxy ? 'proxy' : 'app'}.nginx.conf`, conf);
    const proc = this.spawnIn(pod, 'nginx', ['-e', `${dir}/error.log`, '-c', file], asProxy);
    await sleep(300);
    if (proc.exitCode !== null) throw new Error(`nginx in ${pod.name} exited at once: ${readOr(`${dir}/error.log`)}`);
    if (asProxy) pod.proxy = proc;
    return proc;
  }

  /** The pids that do the proxying in a pod: nginx's master only waits, its worker works. */
  proxyPids(pod: Pod): number[] {
    const pid = pod.proxy!.pid!;
    const kids = readOr(`/proc/${pid}/task/${pid}/children`).split(' ').filter(Boolean).map(Number);
    return kids.length > 0 && readOr(`/proc/${pid}/comm`).startsWith('nginx') ? kids : [pid];
  }

  /** VmRSS of a pod's proxy, MB: every process of it (nginx: master and worker). */
  proxyRssMB(pod: Pod): number {
    const pid = pod.proxy!.pid!;
    const pids = new Set([pid, ...this.proxyPids(pod)]);
    return [...pids].reduce((s, p) => s + mem(p).rss, 0);
  }

  async stopProxy(pod: Pod): Promise<void> {
    const p = pod.proxy;
    if (!p || p.exitCode !== null) return;
    await this.kill(p);
    pod.proxy = undefined;
  }

  /** Kills a process and its children (nginx's workers outlive a SIGKILLed master, holding its ports). */
  private async kill(p: ChildProcess): Promise<void> {
    if (p.exitCode !== null || p.signalCode !== null) return;
    const kids = readOr(`/proc/${p.pid}/task/${p.pid}/children`).split(' ').filter(Boolean).map(Number);
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    for (const k of kids) { try { process.kill(k, 'SIGKILL'); } catch { /* gone already */ } }
    await exited;
  }

  writeConfig(name: string, text: string): string {
    const file = path.join(this.tmp, name);
    writeFileSync(file, text);
    chmodSync(file, 0o644);
    return file;
  }

  async close(): Promise<void> {
    this.closing = true;
    await Promise.all(this.started.map((p) => this.kill(p)));
    await this.c.destroy();
    if (process.env.BENCH_KEEP_TMP) process.stderr.write(`bench: kept ${this.tmp}\n`);
    else rmSync(this.tmp, { recursive: true, force: true });
  }

  /** A bare Node process as UID 1337: what any Node program costs before doing anything. */
  bareNode(): ChildProcess {
    return this.track(spawn('setpriv', ['--reuid', '1337', '--regid', '1337', '--clear-groups', process.execPath, '-e', 'setTimeout(() => {}, 1e9)'], { stdio: 'ignore' }));
  }
}

/**
 * A short-connection workload closes ~5,000 connections a second on the
 * side that closes first; with Linux's default (tcp_tw_reuse=2: loopback
 * only) their TIME_WAIT entries use up the ephemeral ports within one 3 s
 * round, and every later connect() waits on the kernel's port search:
 * measured here, two netns on a veth, rounds of 3 s back to back: 4,740
 * conns/s, then 240–530 for the next seven rounds with ~14,000–22,000
 * sockets in TIME_WAIT. That is the load generator's limit, not the proxy's,
 * and it struck whichever mode ran fastest (the spread of every earlier
 * conns/s table). tcp_tw_reuse=1 (per netns) lets connect() reuse a
 * TIME_WAIT port after 1 s (TCP timestamps keep old segments apart): the
 * same rounds then run at 5,500–6,100. Set in every pod of every mode, so
 * each mode's proxies' own upstream connections get it too.
 */
export function shortConnectionSysctls(pod: Pod): void {
  pod.ns.exec('sysctl', ['-qw', 'net.ipv4.tcp_tw_reuse=1']);
}
