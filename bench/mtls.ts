// bench/mtls: what mesh mTLS costs, two pods each way, in one run:
//   direct         — client to server app, no proxy, no capture (the latency baseline);
//   weir plaintext — weir proxies on both sides, the endpoint has no mesh marker;
//   weir mTLS      — the same with auto mTLS (tlsMode istio, server STRICT), certificates
//                    from a real weir CA through the agent's csr path; opaque TCP, so the
//                    native TLS relay (src/proxy/mtls/native-tls.ts) carries it;
//   weir mTLS, node:tls — the same with --mtls-engine node (the stream relay it replaced);
//   HAProxy TLS    — HAProxy as both proxies, TLS 1.3 with client certificates on the hop
//                    (the same CA's certificates), plaintext to the app.
// Workloads (bench/lib/l4-load.ts): one bulk stream, short connections (each a
// new handshake on the hop), small echoes at 1000 req/s (p50/p99). Proxy CPU from /proc.
// Run: node --import tsx bench/mtls.ts (root). Writes bench/results/mtls.md.
// Env: BULK_MB (default 256), LAT_SECONDS (default 5), CONN_SECONDS (default 3), ROTATE (weir
// --cert-rotation during the run, e.g. 60s), BENCH_OUT.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { CaClient } from '../src/ca/client.js';
import { createWorkloadCsr } from '../src/ca/csr.js';
import { startMeshCa } from '../test/support/mesh-ca.js';
import { CLIENT, SERVER } from './lib/l4-load.js';
import { BenchCluster, REPO, cpuSec, cpuTicks, fmt as f, machineLines, quantile, runNodeIn, waitForLine, type Pod, type PodPair } from './lib/two-pod.js';

const BULK_BYTES = Number(process.env.BULK_MB ?? 256) * 1024 * 1024;
const LAT_SECONDS = Number(process.env.LAT_SECONDS ?? 5);
const CONN_SECONDS = Number(process.env.CONN_SECONDS ?? 3);
const OUT = process.env.BENCH_OUT ?? path.join(REPO, 'bench/results/mtls.md');

interface Mode { label: string; pair: PodPair; host: string; port: number }
interface Row { label: string; MBps: number; bulkCpu: number; conns: number; connsCpu: number; p50: number; p99: number; latCpu: number }

/** Samples (µs) of the 1000 rps echo with no proxy at all: what the rows' latency is added to. */
function directLatency(pair: PodPair): number[] {
  return runNodeIn(pair.client, CLIENT, ['latency', pair.server.ip4, '9000', String(LAT_SECONDS)]).us as number[];
}

function haproxyTls(side: 'client' | 'server', upstream: string, crt: string, ca: string): string {
  const common = `global
  maxconn 9000
  nbthread 1
  ssl-default-bind-options ssl-min-ver TLSv1.3
  ssl-default-server-options ssl-min-ver TLSv1.3
defaults
  mode tcp
  timeout connect 5s
  timeout client 1h
  timeout server 1h
`;
  return side === 'client'
    ? `${common}frontend outbound
  bind :::15001 v4v6
  default_backend to_server
backend to_server
  server s1 ${upstream}:9000 ssl verify required ca-file ${ca} crt ${crt} alpn istio-peer-exchange,istio
`
    : `${common}frontend inbound
  bind :::15006 v4v6 ssl crt ${crt} ca-file ${ca} verify required alpn istio-peer-exchange,istio
  default_backend to_app
backend to_app
  server app 127.0.0.1:9000 source 127.0.0.6
`;
}

async function measure(bc: BenchCluster, m: Mode): Promise<Row> {
  const pids = [m.pair.client, m.pair.server].map((p) => p.proxy!.pid!);
  const during = (fn: () => Record<string, unknown>) => { const t0 = pids.map(cpuTicks); const r = fn(); return { r, cpu: cpuSec(pids, t0) }; };
  const bulk = during(() => runNodeIn(m.pair.client, CLIENT, ['bulk', m.host, String(m.port), String(BULK_BYTES)]));
  const conns = during(() => runNodeIn(m.pair.client, CLIENT, ['conns', m.host, String(m.port), String(CONN_SECONDS)]));
  const lat = during(() => runNodeIn(m.pair.client, CLIENT, ['latency', m.host, String(m.port), String(LAT_SECONDS)]));
  const us = (lat.r.us as number[]).sort((a, b) => a - b);
  void bc;
  return {
    label: m.label, MBps: Number(bulk.r.MBps), bulkCpu: bulk.cpu / (BULK_BYTES / 2 ** 30), conns: Number(conns.r.perSec), connsCpu: conns.cpu,
    p50: quantile(us, 0.5) / 1000, p99: quantile(us, 0.99) / 1000, latCpu: lat.cpu / LAT_SECONDS,
  };
}

async function main(): Promise<void> {
  const t0 = Date.now();
  const bc = new BenchCluster();
  const mca = await startMeshCa(bc.tmp);
  const meshPods = new Map<string, Pod>();
  try {
    await bc.start({
      onCsr: mca.onCsr,
      builder: { endpointMeta: (ns, name) => { const p = meshPods.get(`${ns}/${name}`); return p ? { serviceAccount: p.serviceAccount, tlsMode: 'istio' } : undefined; } },
    });
    const ident = (p: Pod, sa: string) => { p.serviceAccount = sa; p.uid = mca.addPod(p.namespace, p.name, sa); };
    const plain = await bc.pair('plain');
    const mtls = await bc.pair('mtls');
    const nodeTls = await bc.pair('nodetls');
    const hap = await bc.pair('hap');
    const direct = await bc.pair('direct', { capture: false });
    for (const pr of [plain, mtls, nodeTls, hap]) { ident(pr.client, 'client'); ident(pr.server, 'server'); }
    meshPods.set(`bench/${mtls.server.name}`, mtls.server);
    meshPods.set(`bench/${nodeTls.server.name}`, nodeTls.server);
    for (const pr of [plain, mtls, nodeTls, hap, direct]) {
      pr.server.app = bc.spawnIn(pr.server, process.execPath, ['-e', SERVER]);
      await waitForLine(pr.server.app, /bench server ready/, 10000);
    }
    const rotate = process.env.ROTATE ? ['--cert-rotation', process.env.ROTATE] : [];
    await bc.weir(plain, 'plain', '10.96.98.10', [{ name: 'tcp', port: 80, targetPort: 9000 }], []);
    const strict = bc.writeConfig('strict.yaml', 'apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: strict, namespace: bench}\nspec: {mtls: {mode: STRICT}}\n');
    await bc.weir(mtls, 'mtls', '10.96.98.11', [{ name: 'tcp', port: 80, targetPort: 9000 }], [...rotate, '--static-security', strict, '--mtls-engine', 'native']);
    await bc.weir(nodeTls, 'nodetls', '10.96.98.13', [{ name: 'tcp', port: 80, targetPort: 9000 }], [...rotate, '--static-security', strict, '--mtls-engine', 'node']);
    // HAProxy's certificates from the same CA (key + chain in one PEM, as HAProxy reads them).
    const ca = bc.writeConfig('roots.pem', mca.rootsPem);
    for (const [p, sa] of [[hap.client, 'client'], [hap.server, 'server']] as const) {
      const key = await createWorkloadCsr(`spiffe://cluster.local/ns/bench/sa/${sa}`);
      const issued = await new CaClient(mca.caOpts).sign({ namespace: 'bench', name: p.name, uid: p.uid }, key.csrPem);
      const crt = bc.writeConfig(`${p.name}.pem`, issued.certChain.join('') + key.keyPem);
      await bc.haproxy(p, haproxyTls(p === hap.client ? 'client' : 'server', hap.server.ip4, crt, ca));
    }
    const modes: Mode[] = [
      { label: 'weir, plaintext', pair: plain, host: '10.96.98.10', port: 80 },
      { label: `weir, mTLS, native relay${rotate.length ? ` (rotation every ${process.env.ROTATE})` : ''}`, pair: mtls, host: '10.96.98.11', port: 80 },
      { label: 'weir, mTLS, node:tls streams (--mtls-engine node)', pair: nodeTls, host: '10.96.98.13', port: 80 },
      { label: 'HAProxy, TLS 1.3 + client certs on the hop', pair: hap, host: '10.96.98.12', port: 80 },
    ];
    const rows: Row[] = [];
    // The baseline before and after the rows, pooled: a shared machine's load moves during the run.
    const directUs = directLatency(direct);
    for (const m of modes) { rows.push(await measure(bc, m)); process.stderr.write(`bench: ${m.label} done\n`); }
    directUs.push(...directLatency(direct));
    directUs.sort((a, b) => a - b);
    const none = { p50: quantile(directUs, 0.5) / 1000, p99: quantile(directUs, 0.99) / 1000 };
    const [base, nat, , hp] = rows;
    const cpuX = nat.bulkCpu / base.bulkCpu;
    const tputX = nat.MBps / hp.MBps;
    const md = `# mTLS bench (bench/mtls.ts)

${machineLines((Date.now() - t0) / 1000, 'shared with other engineers during the run: absolute numbers are noisy, compare rows')}

Bulk: one stream of ${BULK_BYTES / 2 ** 20} MiB. conns/s: ${CONN_SECONDS} s of short connections (16 in parallel; each a full
TLS handshake on the hop for the TLS rows). Latency: 64-byte echoes at 1000 req/s for ${LAT_SECONDS} s; "added" is over the
same echo with no proxy, measured before and after the rows and pooled (direct: p50 ${f(none.p50, 2)} ms, p99 ${f(none.p99, 2)} ms). CPU: both proxies together.

| mode | bulk MB/s (vs HAProxy) | CPU s per GiB (vs plaintext) | conns/s | CPU s during conns | p50 ms (added) | p99 ms (added) | CPU at 1000 rps (cores) |
|---|---|---|---|---|---|---|---|
${rows.map((r) => `| ${r.label} | ${f(r.MBps)} (${f(r.MBps / hp.MBps, 2)}×) | ${f(r.bulkCpu, 2)} (${f(r.bulkCpu / base.bulkCpu, 2)}×) | ${f(r.conns, 0)} | ${f(r.connsCpu, 2)} | ${f(r.p50, 2)} (${f(r.p50 - none.p50, 2)}) | ${f(r.p99, 2)} (${f(r.p99 - none.p99, 2)}) | ${f(r.latCpu, 3)} |`).join('\n')}

Goal (issue #14): mTLS ≤ 1.3 × plaintext CPU for long streams: ${f(cpuX, 2)}× — ${cpuX <= 1.3 ? 'met' : 'missed'};
mTLS ≥ 1.0 × HAProxy TLS throughput: ${f(tputX, 2)}× — ${tputX >= 1 ? 'met' : 'missed'}.

Reading it: weir's plaintext row splices in the kernel (zero copy). The native-relay row reads plaintext
into a buffer and SSL_writes it (and SSL_reads into a buffer and writes it) on the addon's TLS thread with
Node's own OpenSSL: two copies and AES-GCM per byte on each proxy, which the plaintext row does not pay;
kernel TLS (which would keep the splice path) is impossible here (CONFIG_TLS unset, docs/security.md).
The node:tls row is the path opaque TCP took before (Node streams through JavaScript).
`;
    writeFileSync(OUT, md);
    process.stdout.write(md);
  } finally {
    await bc.close();
    await mca.close();
  }
}

main().catch((e: unknown) => { process.stderr.write(`bench failed: ${(e as Error).stack ?? String(e)}\n`); process.exit(1); });
