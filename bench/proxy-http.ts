// bench/proxy-http: HTTP through the two-pod topology of bench/proxy-l4.ts
// (bench/lib/two-pod.ts), in one run:
//   direct   — client pod → server pod, no capture, no proxy;
//   HAProxy  — mode http, both hops (bench/lib/http-proxies.ts);
//   nginx    — both hops;
//   weir     — `weir proxy` in both pods, whatever it is in this checkout: the
//              row says "L4 relay" or "HTTP proxy" from what weir itself
//              reports (istio_requests_total counts requests only when it
//              proxies HTTP), so the bench needs no change when weir's HTTP
//              chain lands.
// Protocols: HTTP/1.1 keep-alive and HTTP/2 (h2load, Debian nghttp2-client),
// gRPC unary (h2load sending gRPC calls to a node:http2 gRPC echo app). For each: saturation rps
// (ratio to HAProxy), then a fixed 1000 rps: p50/p99 added vs direct, proxy
// CPU per 1000 rps, proxy RSS. Rounds interleave the modes (rotated order).
// Run: node --import tsx bench/proxy-http.ts   (root). Writes bench/results/proxy-http.md.
// Env: ROUNDS (default 2), SAT_SECONDS (default 4), LAT_SECONDS (default 5),
//      PROTOCOLS=h1,h2,grpc, WX_NS_PREFIX, BENCH_OUT.
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { BenchCluster, REPO, cpuSec, cpuTicks, fmt as f, machineLines, median, quantile, sleep, waitForLine, type Pod, type PodPair } from './lib/two-pod.js';
import { APP_GRPC, APP_NGINX, APP_PORT, grpcRequestBody, haproxyHttp, nginxHttp, type Protocol } from './lib/http-proxies.js';

const ROUNDS = Number(process.env.ROUNDS ?? 2);
const SAT_SECONDS = Number(process.env.SAT_SECONDS ?? 4);
const LAT_SECONDS = Number(process.env.LAT_SECONDS ?? 5);
const RATE = 1000;
const PROTOCOLS = (process.env.PROTOCOLS ?? 'h1,h2,grpc').split(',') as Protocol[];
const OUT = process.env.BENCH_OUT ?? path.join(REPO, 'bench/results/proxy-http.md');
const VIP = '10.96.98.10';
const SVC_PORT: Record<Protocol, number> = { h1: 80, h2: 81, grpc: 82 };
const PROTO_LABEL: Record<Protocol, string> = { h1: 'HTTP/1.1 keep-alive', h2: 'HTTP/2 (h2c)', grpc: 'gRPC unary' };

type Kind = 'direct' | 'haproxy' | 'nginx' | 'weir';
interface Mode { kind: Kind; label: string; pair: PodPair }
interface Cell {
  sat: number[];        // rps per round
  lat: number[][];      // µs per round, sorted
  cpuSec: number;       // both proxies, fixed-rate runs
  latSeconds: number;
  achieved: number;     // requests answered in the fixed-rate runs
  rssMB: number[];      // max of the two proxies, at the end of each fixed-rate run
  errors: number;
}

/** One h2load run inside the client pod; returns req/s and, with a log file, each request's µs. */
function h2load(pod: Pod, protocol: Protocol, url: string, args: string[], logFile?: string): { rps: number; failed: number; us: number[] } {
  const out = execFileSync('ip', ['netns', 'exec', pod.ns.name, 'h2load', ...(protocol === 'h1' ? ['--h1'] : []), ...args, ...(logFile ? [`--log-file=${logFile}`] : []), url], { encoding: 'utf8', timeout: 120_000 });
  const rps = Number(/finished in [\d.]+s, ([\d.]+) req\/s/.exec(out)?.[1] ?? NaN);
  const failed = Number(/(\d+) failed/.exec(out)?.[1] ?? 0) + Number(/(\d+) errored/.exec(out)?.[1] ?? 0);
  const non2xx = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(out);
  const bad = non2xx ? Number(non2xx[3]) + Number(non2xx[4]) : 0;
  const us = logFile ? readFileSync(logFile, 'utf8').trim().split('\n').filter(Boolean).map((l) => Number(l.split('\t')[2])) : [];
  return { rps, failed: failed + bad, us };
}

function load(m: Mode, protocol: Protocol, kind: 'sat' | 'fixed', tmp: string): { rps: number; failed: number; us: number[] } {
  const direct = m.kind === 'direct';
  const host = direct ? m.pair.server.ip4 : VIP;
  const port = direct ? APP_PORT[protocol] : SVC_PORT[protocol];
  // gRPC: h2load sending gRPC unary calls (POST of one length-prefixed message, application/grpc, te: trailers).
  const grpc = protocol === 'grpc' ? ['-d', path.join(tmp, 'grpc-request.bin'), '-H', 'content-type: application/grpc', '-H', 'te: trailers'] : [];
  const url = `http://${host}:${port}/${protocol === 'grpc' ? 'bench.Echo/Echo' : ''}`;
  if (kind === 'sat') {
    // HTTP/1.1: 16 connections, one request at a time each; HTTP/2: 4 connections × 16 streams.
    const conc = protocol === 'h1' ? ['-c', '16', '-m', '1'] : ['-c', '4', '-m', '16'];
    return h2load(m.pair.client, protocol, url, [...conc, ...grpc, '-D', String(SAT_SECONDS)]);
  }
  // 10 connections × 100 req/s each = 1000 req/s.
  const log = path.join(tmp, `h2load-${m.kind}-${protocol}.log`);
  return h2load(m.pair.client, protocol, url, ['-c', '10', '-m', '1', ...grpc, '--rps', String(RATE / 10), '-D', String(LAT_SECONDS)], log);
}

async function main(): Promise<void> {
  const bc = new BenchCluster();
  try {
    await bc.start();
    writeFileSync(path.join(bc.tmp, 'grpc-request.bin'), grpcRequestBody());
    const modes: Mode[] = [
      { kind: 'direct', label: 'direct', pair: await bc.pair('d', { capture: false }) },
      { kind: 'haproxy', label: 'HAProxy 2.6 (mode http)', pair: await bc.pair('h') },
      { kind: 'nginx', label: 'nginx 1.22', pair: await bc.pair('n') },
      { kind: 'weir', label: 'weir', pair: await bc.pair('w') },
    ];
    for (const m of modes) {
      await bc.nginx(m.pair.server, APP_NGINX, 1, false);
      m.pair.server.app = bc.spawnIn(m.pair.server, process.execPath, ['-e', APP_GRPC]);
      await waitForLine(m.pair.server.app, /grpc app ready/, 15000);
    }
    const weir = modes.find((m) => m.kind === 'weir')!;
    await bc.weir(weir.pair, 'web', VIP, (['h1', 'h2', 'grpc'] as const).map((p) => ({ name: p === 'h1' ? 'http' : p === 'h2' ? 'http2' : 'grpc', port: SVC_PORT[p], targetPort: APP_PORT[p] })), []);

    const cells = new Map<string, Cell>();
    const cell = (p: Protocol, k: Kind) => {
      const key = `${p}/${k}`;
      if (!cells.has(key)) cells.set(key, { sat: [], lat: [], cpuSec: 0, latSeconds: 0, achieved: 0, rssMB: [], errors: 0 });
      return cells.get(key)!;
    };
    const proxied = modes.filter((m) => m.kind !== 'direct');
    const pidsOf = (m: Mode) => (m.kind === 'direct' ? [] : [m.pair.client, m.pair.server].flatMap((p) => bc.proxyPids(p)));
    // What a proxy pod holds in memory: nginx's master and worker together, HAProxy's and weir's one process.
    const rssOf = (m: Mode) => Math.max(bc.proxyRssMB(m.pair.client), bc.proxyRssMB(m.pair.server));
    const started = Date.now();
    for (const protocol of PROTOCOLS) {
      // Per-protocol configs for the static proxies (weir keeps running as it is).
      for (const m of proxied) {
        if (m.kind === 'haproxy') {
          await bc.haproxy(m.pair.client, haproxyHttp(protocol, m.pair.server.ip4, false));
          await bc.haproxy(m.pair.server, haproxyHttp(protocol, '', true));
        } else if (m.kind === 'nginx') {
          await bc.nginx(m.pair.client, nginxHttp(protocol, m.pair.server.ip4, false));
          await bc.nginx(m.pair.server, nginxHttp(protocol, '', true));
        }
      }
      await sleep(500);
      for (let round = 0; round < ROUNDS; round++) {
        for (const m of modes.map((_, i) => modes[(i + round) % modes.length])) {
          const c = cell(protocol, m.kind);
          const s = load(m, protocol, 'sat', bc.tmp);
          c.sat.push(s.rps);
          c.errors += s.failed;
          const pids = pidsOf(m);
          const c0 = pids.map(cpuTicks);
          const t0 = performance.now();
          const r = load(m, protocol, 'fixed', bc.tmp);
          c.latSeconds += (performance.now() - t0) / 1000;
          c.cpuSec += cpuSec(pids, c0);
          if (m.kind !== 'direct') c.rssMB.push(rssOf(m));
          c.achieved += r.us.length;
          c.errors += r.failed;
          c.lat.push(r.us.sort((a, b) => a - b));
        }
      }
    }
    // Which weir was measured: HTTP request metrics exist only when it proxies HTTP itself.
    const requests = await bc.c.metric(weir.pair.client, 'istio_requests_total').catch(() => 0);
    weir.label = requests > 0 ? 'weir (HTTP proxy)' : 'weir (L4 relay: relays the bytes, no HTTP parsing)';
    report(modes, cells, (Date.now() - started) / 1000, requests);
  } finally {
    await bc.close();
  }
}

function report(modes: Mode[], cells: Map<string, Cell>, seconds: number, weirRequests: number): void {
  const ms = (us: number) => f(us / 1000, 3);
  const sections = PROTOCOLS.map((p) => {
    const get = (k: Kind) => cells.get(`${p}/${k}`)!;
    const d = get('direct');
    const hap = get('haproxy');
    const added = (c: Cell, q: number) => c.lat.map((l, i) => quantile(l, q) - quantile(d.lat[i], q));
    const rows = modes.map((m) => {
      const c = get(m.kind);
      const satMed = median(c.sat);
      const ratio = m.kind === 'direct' ? '-' : `**${f(satMed / median(hap.sat), 2)}×**`;
      const pooled = c.lat.flat().sort((a, b) => a - b);
      const a50 = added(c, 0.5), a99 = added(c, 0.99);
      const cpuPer1k = c.latSeconds > 0 ? c.cpuSec / c.latSeconds / (c.achieved / c.latSeconds / 1000) / 2 : NaN;
      const proxy = m.kind !== 'direct';
      return `| ${m.label} | ${f(satMed, 0)} (${f(Math.min(...c.sat), 0)}–${f(Math.max(...c.sat), 0)}) | ${ratio} | ${ms(quantile(pooled, 0.5))} / ${ms(quantile(pooled, 0.99))} | ${proxy ? `${ms(median(a50))} (${ms(Math.min(...a50))}–${ms(Math.max(...a50))})` : '-'} | ${proxy ? `**${ms(median(a99))}** (${ms(Math.min(...a99))}–${ms(Math.max(...a99))})` : '-'} | ${proxy ? f(cpuPer1k, 3) : '-'} | ${proxy ? f(Math.max(...c.rssMB)) : '-'} | ${c.errors} |`;
    });
    return `## ${PROTO_LABEL[p]}

| mode | saturation rps (median; min–max) | rps / HAProxy | at 1000 rps: p50 / p99 ms | p50 added vs direct, ms (median of rounds; min–max) | p99 added vs direct, ms | proxy CPU, vCPU per 1000 rps per proxy | proxy RSS at 1000 rps, MB (max of the two) | failed requests |
|---|---|---|---|---|---|---|---|---|
${rows.join('\n')}`;
  });
  const md = `# bench/proxy-http — weir vs HAProxy vs nginx, HTTP/1.1, HTTP/2, gRPC

${machineLines(seconds, 'The machine was SHARED: other engineers built and tested on the same 2 vCPUs during the run; absolute numbers are low and noisy, compare modes within this run (rounds interleave the modes, rotated order) and read the min–max spread.')}
${ROUNDS} rounds per protocol; per round and mode: saturation ${SAT_SECONDS} s, then ${LAT_SECONDS} s at a fixed ${RATE} req/s.

Topology (bench/lib/two-pod.ts, as bench/proxy-l4): per mode a client pod and a server pod (netns) on one bridge, weir's capture rules (nft REDIRECT, uid 1337 exempt) in both pods except *direct*. Every proxy runs as UID 1337, one per pod, single-threaded (HAProxy nbthread 1, nginx worker_processes 1; weir is one Node process plus its pump thread). The app in each server pod: nginx answering \`200 ok\` on 9000 (HTTP/1.1) and 9001 (h2c), a gRPC unary echo on node:http2 on 9002 (grpc-js's server saturated below 1000 calls/s on this VM by itself) — the same for every mode. Load generators in the client pod: \`h2load\` (HTTP/1.1: 16 connections × 1 request in flight; HTTP/2: 4 connections × 16 streams; fixed rate: 10 connections × 100 req/s, latency of each request from \`--log-file\`), gRPC: h2load too, sending unary calls (64-byte message, \`content-type: application/grpc\`, \`te: trailers\`) with the HTTP/2 concurrency above.
- *HAProxy*: mode http, HTTP/1.1 hops for HTTP/1.1, h2 on both hops (\`proto h2\`) for HTTP/2 and gRPC; upstream connections reused (\`http-reuse always\`).
- *nginx*: upstream keep-alive pools; for HTTP/2 the client's hop is h2 but nginx speaks HTTP/1.1 to the next hop (its proxy_pass has no h2 upstream); gRPC with \`grpc_pass\` (h2) on both hops.
- *${modes.find((m) => m.kind === 'weir')!.label}*: \`weir proxy\` as shipped (the bundle, \`--no-dns --no-access-log\`), Service ports named http/http2/grpc. weir's own istio_requests_total after the run: ${weirRequests}${weirRequests > 0 ? '' : ' — so this weir relayed TCP (splice pump) without parsing HTTP: its rows measure an L4 relay against two HTTP proxies, not yet an HTTP proxy'}.

Proxy CPU per 1000 rps = CPU of both proxies (all threads, nginx's worker) during the fixed-rate runs ÷ their duration ÷ (answered req/s ÷ 1000) ÷ 2. RSS = VmRSS (nginx: master + worker).

${sections.join('\n\n')}

## Against the goals (issue #12)
${PROTOCOLS.map((p) => {
    const w = cells.get(`${p}/weir`)!, h = cells.get(`${p}/haproxy`)!, d = cells.get(`${p}/direct`)!;
    const a99 = (c: Cell) => median(c.lat.map((l, i) => quantile(l, 0.99) - quantile(d.lat[i], 0.99)));
    const cpu = w.cpuSec / w.latSeconds / (w.achieved / w.latSeconds / 1000) / 2;
    return `- ${PROTO_LABEL[p]}: rps weir / HAProxy **${f(median(w.sat) / median(h.sat), 2)}×**${p === 'grpc' ? '' : ' (goal ≥ 0.6)'}; CPU **${f(cpu, 3)}** vCPU per 1000 rps per proxy (goal ≤ 0.10); RSS **${f(Math.max(...w.rssMB))} MB** (goal ≤ 60); p99 added **${ms(a99(w))} ms** vs HAProxy's ${ms(a99(h))} ms (goal ≤ 1.5 × HAProxy's: ${a99(w) <= 1.5 * a99(h) ? 'met' : 'not met'})`;
  }).join('\n')}
`;
  writeFileSync(OUT, md);
  process.stdout.write(md);
}

main().catch((err: unknown) => { console.error(err); process.exit(1); });
