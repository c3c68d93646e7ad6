// DestinationRule trafficPolicy.tls on the real kernel, applied through the
// node control plane (compiled clusters, v2 push) to the client pod's weir
// proxy; the app in the client pod writes plaintext:
//   SIMPLE / MUTUAL  → `openssl s_server` (no proxy) is the destination: what
//                      it saw (the SNI, the client certificate for MUTUAL) and
//                      that a subjectAltNames mismatch is refused
//   ISTIO_MUTUAL     → a proxied server whose endpoint carries no mesh marker
//                      gets mesh mTLS (plaintext before the DestinationRule)
//   DISABLE          → a proxied, marked server gets plaintext (mTLS before)
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { execFileSync, type ChildProcess } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { skipUnlessRoot } from '../support/netns.js';
import { until as poll } from '../support/poll.js';
import { startMeshCa, type MeshCa } from '../support/mesh-ca.js';
import { IstioConfigStore } from '../../src/controlplane/istio-source.js';
import { istioCompiledSource } from '../../src/controlplane/v2/compiled-source.js';
import { Cluster, readLine, service, slice, type Pod } from './proxy-harness.js';

const skip = skipUnlessRoot();
const dir = mkdtempSync(join(tmpdir(), 'weir-drtls-'));
const net3 = () => `10.96.${1 + Math.floor(Math.random() * 200)}.${1 + Math.floor(Math.random() * 200)}`;
const VIP = { ext: net3(), unmarked: net3(), marked: net3() };
let mca: MeshCa;
let c: Cluster;
let client: Pod;
let ext: Pod;
let unmarked: Pod;
let marked: Pod;
const store = new IstioConfigStore();
const servers: { p: ChildProcess; log: string[] }[] = [];

function openssl(args: string[]): void { execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' }); }

function sServer(port: number, extra: string[]): { p: ChildProcess; log: string[] } {
  // stdbuf: s_server's stdout is a pipe here, and what it saw must be readable before it exits.
  const p = ext.ns.spawn('stdbuf', ['-o0', '-e0', 'openssl', 's_server', '-accept', String(port), '-cert', join(dir, 'srv.pem'), '-key', join(dir, 'srv.key'), '-www', '-tlsextdebug', ...extra]);
  const s = { p, log: [] as string[] };
  for (const st of [p.stdout!, p.stderr!]) st.on('data', (d: Buffer) => s.log.push(...d.toString().split('\n')));
  servers.push(s);
  return s;
}

/** The hostname in the SNI extension as s_server -tlsextdebug dumps it (hex dump lines: the ASCII column). */
function sniSeen(log: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < log.length; i++) {
    if (!/TLS client extension "server name"/.test(log[i])) continue;
    let ascii = '';
    for (let j = i + 1; j < log.length && /^\d{4} - /.test(log[j]); j++) ascii += log[j].slice(log[j].lastIndexOf('   ') + 3);
    out.push(ascii.replace(/^\.+/, ''));
  }
  return out;
}

/** Plaintext HTTP/1.0 from the client app (captured, through its proxy) and everything until close. */
async function get(ip: string, port: number): Promise<string> {
  const s = await c.connect(client, ip, port);
  s.end('GET / HTTP/1.0\r\n\r\n');
  const chunks: Buffer[] = [];
  s.on('data', (d: Buffer) => chunks.push(d));
  await new Promise((r) => { s.once('close', r); setTimeout(r, 5000); });
  s.destroy();
  return Buffer.concat(chunks).toString();
}

async function echo(ip: string): Promise<string> {
  const s = await c.connect(client, ip, 8080);
  const greeting = await readLine(s);
  s.resume();
  s.write('x\n');
  const back = await readLine(s);
  s.destroy();
  return `${greeting}|${back}`;
}


const dr = (name: string, host: string, trafficPolicy: object) => ({ apiVersion: 'networking.istio.io/v1', kind: 'DestinationRule', metadata: { name, namespace: 'shop' }, spec: { host, trafficPolicy } });
const inbound = (p: Pod, outcome: string) => c.metric(p, 'weir_inbound_mtls_total', { outcome });

/** The shared poller with this suite's deadline, cadence and the proxies' logs on timeout. */
const waitFor = (what: string, f: () => Promise<boolean>) => poll(what, f, { ms: 15_000, everyMs: 200, detail: () => c.logs() });

before(async () => {
  if (skip) return;
  chmodSync(dir, 0o755);
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/CN=ext-test-ca', '-days', '1', '-keyout', 'ca.key', '-out', 'ca.pem']);
  writeFileSync(join(dir, 'san.cnf'), 'subjectAltName=DNS:ext.example.com\n');
  for (const [n, cn, san] of [['srv', 'ext.example.com', true], ['cli', 'weir-client', false]] as const) {
    openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', `/CN=${cn}`, '-keyout', `${n}.key`, '-out', `${n}.csr`]);
    openssl(['x509', '-req', '-in', `${n}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1', ...(san ? ['-extfile', 'san.cnf'] : []), '-out', `${n}.pem`]);
  }
  for (const f of readdirSync(dir)) chmodSync(join(dir, f), 0o644); // the proxy runs as UID 1337 and reads them

  mca = await startMeshCa(dir);
  c = new Cluster();
  client = await c.addPod('client', 'shop');
  ext = await c.addPod('ext', 'shop', { capture: false });
  unmarked = await c.addPod('unmarked', 'shop');
  marked = await c.addPod('marked', 'shop');
  for (const p of c.pods) { p.serviceAccount = p.name; p.uid = mca.addPod(p.namespace, p.name, p.name); }
  const byName = new Map(c.pods.map((p) => [p.name, p]));
  await c.startControlPlane({
    onCsr: mca.onCsr,
    compiled: istioCompiledSource({ store, rootNamespace: 'istio-system' }),
    // Only `marked` carries the mesh marker (security.istio.io/tlsMode); `unmarked` runs a proxy all the same.
    builder: { endpointMeta: (_ns, name) => { const p = byName.get(name); return p && p !== ext ? { serviceAccount: p.serviceAccount, ...(p === marked ? { tlsMode: 'istio' } : {}) } : undefined; } },
  });
  const extPorts = [{ name: 'tcp-simple', port: 8443 }, { name: 'tcp-mutual', port: 8444 }, { name: 'tcp-wrong-san', port: 8445 }];
  c.cp!.apply((b) => b.upsertService(service('ext', 'shop', VIP.ext, extPorts)));
  c.cp!.apply((b) => b.upsertEndpointSlice(slice('ext', 'shop', 'ext-1', [{ pod: ext }], extPorts)));
  for (const p of [unmarked, marked]) {
    c.cp!.apply((b) => b.upsertService(service(p.name, 'shop', VIP[p.name as 'marked'], [{ name: 'tcp-echo', port: 8080 }])));
    c.cp!.apply((b) => b.upsertEndpointSlice(slice(p.name, 'shop', `${p.name}-1`, [{ pod: p }], [{ name: 'tcp-echo', port: 8080 }])));
    await c.startApp(p);
  }
  // SIMPLE: the server checks the SNI (-servername_fatal aborts on another name). MUTUAL: a client certificate of its CA is required.
  sServer(8443, ['-servername', 'ext.example.com', '-servername_fatal', '-cert2', join(dir, 'srv.pem'), '-key2', join(dir, 'srv.key')]);
  sServer(8444, ['-Verify', '1', '-CAfile', join(dir, 'ca.pem')]);
  sServer(8445, []);
  await poll('openssl s_server listening', () => servers.every((s) => s.log.includes('ACCEPT')), { ms: 10_000, detail: () => servers.map((s) => s.log.join('\n')).join('\n---\n') });
  await Promise.all([client, unmarked, marked].map((p) => c.startProxy(p, ['--no-dns'])));
});

after(async () => {
  if (skip) return;
  for (const s of servers) s.p.kill('SIGKILL');
  await c?.destroy();
  await mca?.close();
  rmSync(dir, { recursive: true, force: true });
});

test('ISTIO_MUTUAL forces mesh mTLS to an endpoint without the mesh marker; DISABLE forces plaintext to a marked one', { skip }, async () => {
  // Before: auto mTLS follows the marker.
  assert.equal(await echo(VIP.unmarked), 'hello from unmarked|x', c.logs());
  assert.equal(await echo(VIP.marked), 'hello from marked|x');
  assert.equal(await inbound(unmarked, 'mtls'), 0);
  assert.ok(await inbound(unmarked, 'plaintext') >= 1);
  assert.ok(await inbound(marked, 'mtls') >= 1);
  const markedPlain = await inbound(marked, 'plaintext');

  store.upsert(dr('unmarked', 'unmarked', { tls: { mode: 'ISTIO_MUTUAL' } }));
  store.upsert(dr('marked', 'marked.shop.svc.cluster.local', { tls: { mode: 'DISABLE' } }));
  await waitFor('ISTIO_MUTUAL to the unmarked server', async () => (await echo(VIP.unmarked)) === 'hello from unmarked|x' && (await inbound(unmarked, 'mtls')) >= 1);
  assert.ok(await c.metric(unmarked, 'istio_tcp_connections_opened_total', { reporter: 'destination', connection_security_policy: 'mutual_tls', source_principal: 'spiffe://cluster.local/ns/shop/sa/client' }) >= 1);
  await waitFor('DISABLE to the marked server', async () => (await echo(VIP.marked)) === 'hello from marked|x' && (await inbound(marked, 'plaintext')) > markedPlain);
  const mtlsBefore = await inbound(marked, 'mtls');
  for (let i = 0; i < 5; i++) assert.equal(await echo(VIP.marked), 'hello from marked|x');
  assert.equal(await inbound(marked, 'mtls'), mtlsBefore, 'no more mTLS to the marked server under DISABLE');
});

test('SIMPLE and MUTUAL originate TLS to openssl s_server: it sees the SNI and, for MUTUAL, the proxy\'s client certificate; a SAN mismatch is refused', { skip }, async () => {
  store.upsert(dr('ext', 'ext', {
    tls: { mode: 'SIMPLE', sni: 'ext.example.com', caCertificates: join(dir, 'ca.pem') },
    portLevelSettings: [
      { port: { number: 8444 }, tls: { mode: 'MUTUAL', caCertificates: join(dir, 'ca.pem'), clientCertificate: join(dir, 'cli.pem'), privateKey: join(dir, 'cli.key'), subjectAltNames: ['ext.example.com'] } },
      { port: { number: 8445 }, tls: { mode: 'SIMPLE', caCertificates: join(dir, 'ca.pem'), subjectAltNames: ['other.example.com'] } },
      // A Secret as the credential: not supported, reported (config_dump's ignored list, weir analyze).
      { port: { number: 8446 }, tls: { mode: 'MUTUAL', credentialName: 'ext-client-certs' } },
    ],
  }));
  let page = '';
  await waitFor('TLS origination on 8443', async () => { page = await get(VIP.ext, 8443); return /New, TLSv1\.3/.test(page); });
  assert.match(page, /^HTTP\/1\.0 200 ok/);
  assert.match(page, /no client certificate available/i, page.slice(-400));
  assert.ok(sniSeen(servers[0].log).includes('ext.example.com'), servers[0].log.join('\n'));

  const mutual = await get(VIP.ext, 8444);
  assert.match(mutual, /New, TLSv1\.3/, mutual.slice(0, 300) + c.logs());
  assert.match(mutual, /Client certificate[\s\S]*Subject: CN\s?=\s?weir-client/, mutual.slice(-1500));
  assert.ok(servers[1].log.some((l) => /depth=0 CN\s?=\s?weir-client/.test(l)), servers[1].log.join('\n'));

  // The server's certificate names ext.example.com only: subjectAltNames [other.example.com] → no connection.
  const wrong = await get(VIP.ext, 8445);
  assert.equal(wrong, '', wrong);
  assert.ok(await c.metric(client, 'weir_proxy_upstream_connect_failures_total', { direction: 'outbound', reason: 'ETLS' }) >= 1, c.logs());
  // What the proxy holds: the compiled clusters carry the tls settings (config_dump).
  const dump = JSON.parse((await c.httpGet(client, 15000, '/config_dump')).body) as { compiled: { clusters: { name: string; tls: { mode: string } }[]; ignored: { resource: string; field: string; message: string }[] } };
  const cred = dump.compiled.ignored.find((i) => i.field.endsWith('tls.credentialName'));
  assert.ok(cred && cred.resource === 'DestinationRule shop/ext' && /not supported/.test(cred.message), JSON.stringify(dump.compiled.ignored));
  const modes = Object.fromEntries(dump.compiled.clusters.filter((cl) => cl.name.endsWith('|ext.shop.svc.cluster.local')).map((cl) => [cl.name, cl.tls.mode]));
  assert.deepEqual(modes, { 'outbound|8443||ext.shop.svc.cluster.local': 'SIMPLE', 'outbound|8444||ext.shop.svc.cluster.local': 'MUTUAL', 'outbound|8445||ext.shop.svc.cluster.local': 'SIMPLE' });
});
