// One bulk TCP stream over loopback through four paths, side by side in one
// run: direct (no relay), a Node pipe() relay (what src/proxy/relay.ts does),
// weir's native splice pump, and HAProxy 2.6 (tcp mode) as the relay.
// Source and sink live in one child process, the same for every path, so the
// relay is all that differs. Rounds alternate the paths; medians reported.
//   tsx bench/pump-throughput.ts [--mib 1024] [--rounds 3]
import net from 'node:net';
import { once } from 'node:events';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { startSplicePump } from '../src/native/splice-pump.js';
import { BULK_STREAM_ENDPOINTS } from '../test/support/bulk-stream-endpoints.js';

const args = process.argv.slice(2);
const arg = (name: string, dflt: number): number => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const MIB = arg('mib', 1024);
const ROUNDS = arg('rounds', 3);
const BYTES = MIB * (1 << 20);


async function listen(server: net.Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as net.AddressInfo).port;
}

function pipeRelay(target: number): net.Server {
  return net.createServer({ allowHalfOpen: true }, (down) => {
    const up = net.connect({ host: '127.0.0.1', port: target, allowHalfOpen: true, noDelay: true });
    down.pipe(up);
    up.pipe(down);
  });
}

function spliceRelay(target: number): net.Server {
  return net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (down) => {
    const up = net.connect({ host: '127.0.0.1', port: target, allowHalfOpen: true, noDelay: true });
    up.once('connect', () => { void startSplicePump(down, up).done; });
  });
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  const port = await listen(s);
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

async function startHaproxy(dir: string, target: number): Promise<{ port: number; child: ChildProcess }> {
  const port = await freePort();
  const cfg = path.join(dir, 'haproxy.cfg');
  writeFileSync(cfg, [
    'global', '  nbthread 1', '  maxconn 1000',
    'defaults', '  mode tcp', '  timeout connect 5s', '  timeout client 60s', '  timeout server 60s',
    `listen relay`, `  bind 127.0.0.1:${port}`, `  server s 127.0.0.1:${target}`, '',
  ].join('\n'));
  const child = spawn('haproxy', ['-f', cfg, '-db'], { stdio: ['ignore', 'ignore', 'inherit'] });
  for (let i = 0; i < 50; i++) {
    await new Promise((r) => setTimeout(r, 100));
    const ok = await new Promise<boolean>((r) => {
      const c = net.connect(port, '127.0.0.1', () => { c.destroy(); r(true); });
      c.on('error', () => r(false));
    });
    if (ok) return { port, child };
  }
  child.kill('SIGKILL');
  throw new Error('haproxy did not start listening');
}

function procCpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; // utime + stime, clock ticks of 10 ms
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'wn-bench-'));
  const children: ChildProcess[] = [];
  const servers: net.Server[] = [];
  try {
    const endpoints = spawn(process.execPath, ['-e', BULK_STREAM_ENDPOINTS], { env: { ...process.env, BYTES: String(BYTES) }, stdio: ['pipe', 'pipe', 'inherit'] });
    children.push(endpoints);
    const lines = createInterface({ input: endpoints.stdout! })[Symbol.asyncIterator]();
    const next = async <T>(): Promise<T> => JSON.parse((await lines.next()).value as string) as T;
    const { sinkPort } = await next<{ sinkPort: number }>();
    const pipe = pipeRelay(sinkPort); servers.push(pipe);
    const splice = spliceRelay(sinkPort); servers.push(splice);
    const haproxy = await startHaproxy(dir, sinkPort); children.push(haproxy.child);
    const paths: Array<{ name: string; port: number; cpu: () => number }> = [
      { name: 'direct', port: sinkPort, cpu: () => 0 },
      { name: 'Node pipe() relay', port: await listen(pipe), cpu: () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; } },
      { name: 'weir splice pump', port: await listen(splice), cpu: () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; } },
      { name: 'HAProxy 2.6 (tcp, 1 thread)', port: haproxy.port, cpu: () => procCpuSeconds(haproxy.child.pid!) },
    ];
    const rates = new Map<string, number[]>(paths.map((p) => [p.name, []]));
    const cpu = new Map<string, number[]>(paths.map((p) => [p.name, []]));
    for (let round = 0; round < ROUNDS; round++) {
      for (const p of paths) {
        const c0 = p.cpu();
        endpoints.stdin!.write(`${p.port}\n`);
        const run = await next<{ bytes: number; ms: number }>();
        if (run.bytes !== BYTES) throw new Error(`${p.name}: sink got ${run.bytes} of ${BYTES} bytes`);
        rates.get(p.name)!.push(MIB / (run.ms / 1000));
        cpu.get(p.name)!.push((p.cpu() - c0) / (MIB / 1024));
        process.stderr.write(`round ${round + 1} ${p.name}: ${(MIB / (run.ms / 1000)).toFixed(0)} MiB/s\n`);
      }
    }
    const med = (name: string) => median(rates.get(name)!);
    const haproxyRate = med('HAProxy 2.6 (tcp, 1 thread)');
    const pipeRate = med('Node pipe() relay');
    const rows = paths.map((p) => `| ${p.name} | ${med(p.name).toFixed(0)} | ${rates.get(p.name)!.map((r) => r.toFixed(0)).join(', ')} | ${p.name === 'direct' ? '-' : median(cpu.get(p.name)!).toFixed(2)} | ${p.name === 'direct' ? '-' : (med(p.name) / haproxyRate).toFixed(2)} | ${p.name === 'direct' ? '-' : (med(p.name) / pipeRate).toFixed(2)} |`);
    const machine = `${cpus().length} CPU (${cpus()[0]?.model ?? '?'}), kernel ${execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim()}, Node ${process.version}`;
    const report = [
      '# L4 pump: one bulk TCP stream over loopback',
      '',
      `Date: ${new Date().toISOString()}  `,
      `Machine: ${machine}  `,
      `Command: \`tsx bench/pump-throughput.ts --mib ${MIB} --rounds ${ROUNDS}\``,
      '',
      `One connection, ${MIB} MiB one way, source and sink in one Node child process (the same for every path),`,
      'client -> relay -> sink on 127.0.0.1. Rounds alternate the paths; the table shows medians.',
      'Relay CPU = CPU seconds the relay process used per GiB (for the two in-process relays: the whole bench',
      'process, i.e. all its threads, the pump thread included; for HAProxy its process). The machine is shared',
      '(2 vCPUs, other jobs running): absolute numbers are noisy, the CPU column is the steadier signal.',
      '',
      '| path | MiB/s (median) | MiB/s (rounds) | relay CPU s/GiB | × HAProxy | × Node pipe() |',
      '|---|---|---|---|---|---|',
      ...rows,
      '',
    ].join('\n');
    mkdirSync(path.join('bench', 'results'), { recursive: true });
    writeFileSync(path.join('bench', 'results', 'pump.md'), report);
    process.stdout.write(report);
  } finally {
    for (const c of children) c.kill('SIGKILL');
    for (const s of servers) s.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
process.exit(0);
