// scratch experiment (not committed): one weir pair + one haproxy pair, conns load, per-thread CPU
import { readdirSync, readFileSync } from 'node:fs';
import { BenchCluster, HZ, mem, runNodeIn, sleep, waitForLine, cpuTicks } from '../lib/two-pod.js';
const SERVER = `require('node:net').createServer((s)=>{s.on('error',()=>{});s.pipe(s);}).listen({port:9000,host:'::'},()=>console.log('bench server ready'));`;
const CLIENT = `
const net = require('node:net'); const [host, port, seconds] = process.argv.slice(1);
const now = () => Number(process.hrtime.bigint()) / 1e6; const end = now() + seconds * 1000; let done = 0, errors = 0, active = 0;
function one() { if (now() > end) { if (--active === 0) { console.log(JSON.stringify({ done, errors, perSec: done / seconds })); process.exit(0); } return; }
  const s = net.connect({ host, port: Number(port) }); s.setNoDelay(true); s.on('connect', () => s.write('Ex')); s.on('data', () => { done++; s.destroy(); one(); }); s.on('error', () => { errors++; s.destroy(); one(); }); }
for (let i = 0; i < 16; i++) { active++; one(); }`;
function threads(pid: number) { const out: Record<string, number> = {}; for (const t of readdirSync(`/proc/${pid}/task`)) { const st = readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8'); const comm = st.slice(st.indexOf('(') + 1, st.lastIndexOf(')')); const f = st.split(') ')[1].split(' '); out[`${comm}#${t}`] = (Number(f[11]) + Number(f[12])) / HZ; } return out; }
const bc = new BenchCluster();
try {
  await bc.start();
  const w = await bc.pair('w'); const h = await bc.pair('h');
  for (const p of [w.server, h.server]) { p.app = bc.spawnIn(p, process.execPath, ['-e', SERVER]); await waitForLine(p.app, /ready/, 10000); }
  await bc.weir(w, 'b0', '10.96.99.10', [{ name: 'tcp', port: 80, targetPort: 9000 }], (process.env.FLAGS ?? '').split(' ').filter(Boolean));
  const cfg = (up: string) => `global\n  maxconn 9000\n  nbthread 1\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 1h\n  timeout server 1h\nfrontend o\n  bind :::15001 v4v6\n  default_backend b\nbackend b\n  server s ${up}:9000\nfrontend i\n  bind :::15006 v4v6\n  default_backend a\nbackend a\n  server a 127.0.0.1:9000 source 127.0.0.6\n`;
  await bc.haproxy(h.client, cfg(h.server.ip4)); await bc.haproxy(h.server, cfg('127.0.0.1'));
  console.log('weir pids', w.client.proxy!.pid, w.server.proxy!.pid);
  await sleep(Number(process.env.WAIT ?? 0));
  for (let r = 0; r < Number(process.env.ROUNDS ?? 2); r++) {
    for (const [name, p] of [['weir', w], ['haproxy', h]] as const) {
      const pids = [p.client.proxy!.pid!, p.server.proxy!.pid!];
      const t0 = pids.map(threads);
      const res = runNodeIn(p.client, CLIENT, ['10.96.99.10', '80', '3']);
      const t1 = pids.map(threads);
      const n = res.done as number;
      const per = pids.map((_, i) => Object.entries(t1[i]).map(([k, v]) => [k.split('#')[0], ((v - (t0[i][k] ?? 0)) * 1e6 / n).toFixed(0)]).filter(([, v]) => v !== '0'));
      console.log(name, 'conns/s', res.perSec, 'µs CPU per conn by thread:', JSON.stringify(per));
    }
  }
  const pids = [w.client.proxy!.pid!, w.server.proxy!.pid!];
  for (const at of [0, 5, 10, 15, 20, 30]) { await sleep(at === 0 ? 0 : 5000); console.log('mem', at, pids.map((p) => { const m = mem(p); return `${m.rss.toFixed(1)}/${m.anon.toFixed(1)}`; }).join(' ')); if (at === 30) break; }
  if (process.env.HOLD) await sleep(Number(process.env.HOLD));
} finally { await bc.close(); }
void cpuTicks;
