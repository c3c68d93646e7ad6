// The L4 bench workloads (bench/proxy-l4.ts, bench/mtls.ts): a server app and a
// load generator, both run with node -e inside pods.
// Server app: first byte 'E' → echo, 'S' → sink (answers the byte count on FIN).
export const SERVER = `
const net = require('node:net');
net.createServer({ allowHalfOpen: true }, (s) => {
  s.on('error', () => {});
  s.once('readable', function first() {
    const b = s.read(1); if (!b) return s.once('readable', first);
    if (b[0] === 0x45) { s.pipe(s); return; }
    let n = 0; s.on('data', (d) => { n += d.length; }); s.on('end', () => s.end(String(n)));
  });
}).listen({ port: 9000, host: '::' }, () => console.log('bench server ready'));
`;

// Load generator, run inside the client pod as root (so capture applies).
// latency prints every sample (µs) so rounds can be pooled for p99.9.
export const CLIENT = `
const net = require('node:net');
const [mode, host, port, arg] = process.argv.slice(1);
const P = Number(port);
const now = () => Number(process.hrtime.bigint()) / 1e6;
function bulk(total) {
  const s = net.connect({ host, port: P, allowHalfOpen: true }); const block = Buffer.alloc(256 * 1024, 7);
  const t0 = now(); let sent = 0;
  s.on('connect', () => { s.write('S'); pump(); });
  function pump() { while (sent < total) { sent += block.length; if (!s.write(block)) return s.once('drain', pump); } s.end(); }
  let reply = ''; s.on('data', (d) => { reply += d; });
  s.on('end', () => { const ms = now() - t0; console.log(JSON.stringify({ bytes: Number(reply), ms, MBps: Number(reply) / 1e6 / (ms / 1000) })); process.exit(0); });
}
function conns(seconds) {
  const end = now() + seconds * 1000; let done = 0, errors = 0, active = 0;
  function one() {
    if (now() > end) { if (--active === 0) { console.log(JSON.stringify({ done, errors, perSec: done / seconds })); process.exit(0); } return; }
    const s = net.connect({ host, port: P }); s.setNoDelay(true);
    s.on('connect', () => s.write('Ex')); s.on('data', () => { done++; s.destroy(); one(); });
    s.on('error', () => { errors++; s.destroy(); one(); });
  }
  for (let i = 0; i < 16; i++) { active++; one(); }
}
// One request every 1/rate s, round robin over N connections, each with at
// most one outstanding (a request that finds its connection still waiting is
// counted as late and skipped). Paced from a 1 ms interval timer: a late
// timer sends the requests that fell due meanwhile, on different connections.
function latency(seconds) {
  const N = 10, rate = 1000, lat = []; const socks = []; let ready = 0, late = 0;
  for (let i = 0; i < N; i++) { const s = net.connect({ host, port: P }); s.setNoDelay(true); s.on('connect', () => { s.write('E'); if (++ready === N) go(); }); socks.push(s); }
  const msg = Buffer.alloc(64, 1);
  function go() {
    const st = socks.map((s) => {
      const o = { s, sentAt: 0, busy: false, got: 0 };
      s.on('data', (d) => { o.got += d.length; while (o.got >= 64) { o.got -= 64; lat.push(now() - o.sentAt); o.busy = false; } });
      return o;
    });
    const gap = 1000 / rate, t0 = now(), end = t0 + seconds * 1000; let j = 0;
    const timer = setInterval(() => {
      const t = now();
      if (t > end) {
        clearInterval(timer);
        setTimeout(() => { console.log(JSON.stringify({ late, us: lat.map((x) => Math.round(x * 1000)) })); process.exit(0); }, 300);
        return;
      }
      while (t0 + j * gap <= t) { const o = st[j % N]; j++; if (o.busy) { late++; continue; } o.busy = true; o.sentAt = now(); o.s.write(msg); }
    }, 1);
  }
}
if (mode === 'bulk') bulk(Number(arg)); else if (mode === 'conns') conns(Number(arg)); else latency(Number(arg));
`;

