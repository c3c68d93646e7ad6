// Mesh mTLS end to end on the real kernel: two pods with weir proxies, the
// node control plane forwarding the proxies' CSRs to a real `weir ca`
// (TokenReview and pods from the test API server), and a third pod with no
// proxy playing the outsider with openssl and plain sockets.
//   server (ns a, sa server-sa): STRICT, AuthorizationPolicy allows only ns a
//   client (ns a, sa client-sa): talks to the server through its proxy
//   outsider: no proxy, no capture
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import type net from 'node:net';
import { CaClient } from '../../src/ca/client.js';
import { startMeshCa, type MeshCa } from '../support/mesh-ca.js';
import { createWorkloadCsr } from '../../src/ca/csr.js';
import { rewriteProbes } from '../../src/injector/probes.js';
import { execFileSync, type ChildProcess } from 'node:child_process';
import { Cluster, readLine, service, slice, waitForLine, type Pod } from './proxy-harness.js';

const dir = mkdtempSync(join(tmpdir(), 'weir-mesh-'));
chmodSync(dir, 0o755); // the proxies run as UID 1337 and read the policy file
const VIP = `10.96.${1 + Math.floor(Math.random() * 200)}.${1 + Math.floor(Math.random() * 200)}`;
let mca: MeshCa;
let c: Cluster;
let server: Pod;
let client: Pod;
let outsider: Pod;
let roots = '';
let httpApp: ChildProcess | undefined;

const SECURITY = `
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: a}
spec: {mtls: {mode: STRICT}}
---
# The server keeps two ports open to non-mesh clients: 8081 (plaintext) and 8443 (its own TLS).
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: server-public-ports, namespace: a}
spec:
  selector: {matchLabels: {app: server}}
  portLevelMtls: {"8081": {mode: PERMISSIVE}, "8443": {mode: PERMISSIVE}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: same-namespace-only, namespace: a}
spec:
  action: ALLOW
  rules:
    - from: [{source: {namespaces: [a]}}]
    - to: [{operation: {ports: ["8081", "8443"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-admin, namespace: a}
spec:
  action: DENY
  rules: [{to: [{operation: {ports: ["9080"], paths: ["/admin*"]}}]}]
`;

/** The server's HTTP app: says what it saw (method, path, and whether its socket was TLS: it must never be). */
const HTTP_APP = `require('node:http').createServer((q, s) => s.end(q.method + ' ' + q.url + ' tls=' + !!q.socket.encrypted + ' ' + q.httpVersion)).listen(9080, '::', () => console.log('http ready'));
require('node:tls').createServer({ key: require('node:fs').readFileSync(process.argv[1] + '/app.key'), cert: require('node:fs').readFileSync(process.argv[1] + '/app.crt'), ALPNProtocols: ['h2', 'http/1.1'] }, (s) => s.end('app tls says hi\\n')).listen(8443, '::');`;

function run(pod: Pod, cmd: string, args: string[], input = '', timeoutMs = 10_000): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = pod.ns.spawn(cmd, args);
    let out = '';
    p.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
    p.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
    const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('close', (code) => { clearTimeout(t); resolve({ code, out }); });
    // s_client reads stdin: send a line, then keep it open briefly so an answer can arrive before EOF closes the connection.
    p.stdin!.write(input);
    setTimeout(() => p.stdin!.end(), 1500);
  });
}

function sClient(args: string[]): Promise<{ code: number | null; out: string }> {
  return run(outsider, 'openssl', ['s_client', '-connect', `${server.ip4}:8080`, '-tls1_3', '-CAfile', join(dir, 'roots.pem'), '-alpn', 'istio-peer-exchange,istio', '-showcerts', ...args], 'ping\n');
}

/** One exchange through the client pod's capture: greeting from the server app, then an echo. */
async function exchange(s: net.Socket, payload: string): Promise<string> {
  const greeting = await readLine(s);
  s.resume();
  s.write(payload + '\n');
  const echo = await readLine(s);
  return `${greeting}|${echo}`;
}

before(async () => {
  mca = await startMeshCa(dir);
  roots = mca.rootsPem;
  writeFileSync(join(dir, 'roots.pem'), roots);
  writeFileSync(join(dir, 'security.yaml'), SECURITY);
  writeFileSync(join(dir, 'server-labels'), 'app="server"\n');
  const caOpts = mca.caOpts;

  c = new Cluster();
  server = await c.addPod('server', 'a');
  client = await c.addPod('client', 'a');
  outsider = await c.addPod('outsider', 'b', { capture: false });
  for (const [p, sa] of [[server, 'server-sa'], [client, 'client-sa'], [outsider, 'other-sa']] as const) {
    p.serviceAccount = sa;
    p.uid = mca.addPod(p.namespace, p.name, sa);
  }
  const bySa = new Map(c.pods.map((p) => [`${p.namespace}/${p.name}`, p]));
  await c.startControlPlane({
    onCsr: mca.onCsr,
    // As the pod informer will (h13a): the endpoint's service account and its mesh marker.
    builder: { endpointMeta: (ns, name) => { const p = bySa.get(`${ns}/${name}`); return p && p !== outsider ? { serviceAccount: p.serviceAccount, tlsMode: 'istio' } : undefined; } },
  });
  const ports = [{ name: 'tcp-echo', port: 8080 }, { name: 'tcp-sum', port: 8081 }, { name: 'http', port: 9080 }];
  c.cp!.apply((b) => b.upsertService(service('echo', 'a', VIP, ports)));
  c.cp!.apply((b) => b.upsertEndpointSlice(slice('echo', 'a', 'echo-1', [{ pod: server }], ports)));
  await c.startApp(server);
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=app-own-tls', '-keyout', join(dir, 'app.key'), '-out', join(dir, 'app.crt')], { stdio: 'ignore' });
  httpApp = server.ns.spawn(process.execPath, ['-e', HTTP_APP, dir]);
  await waitForLine(httpApp, /http ready/, 5000);
  const probers = rewriteProbes([{ name: 'app', readinessProbe: { tcpSocket: { port: 8081 } } }], 'spec.containers');
  await Promise.all([
    c.startProxy(server, [...(process.env.WX_DEBUG ? ['--access-log', 'json'] : []), '--static-security', join(dir, 'security.yaml'), '--pod-labels', join(dir, 'server-labels'), '--cert-rotation', '2s'], { ISTIO_KUBE_APP_PROBERS: JSON.stringify(probers) }),
    c.startProxy(client, [...(process.env.WX_DEBUG ? ['--access-log', 'json'] : []), '--cert-rotation', '2s']),
  ]);
  // A mesh certificate of another namespace, issued by the same CA for the outsider pod (its key stays in this process).
  const key = await createWorkloadCsr('spiffe://cluster.local/ns/b/sa/other-sa');
  const issued = await new CaClient(caOpts).sign({ namespace: 'b', name: 'outsider' }, key.csrPem);
  writeFileSync(join(dir, 'other.pem'), issued.certChain.join(''));
  writeFileSync(join(dir, 'other.key'), key.keyPem);
  const ck = await createWorkloadCsr('spiffe://cluster.local/ns/a/sa/client-sa');
  const ci = await new CaClient(caOpts).sign({ namespace: 'a', name: 'client' }, ck.csrPem);
  writeFileSync(join(dir, 'client.pem'), ci.certChain.join(''));
  writeFileSync(join(dir, 'client.key'), ck.keyPem);
});

after(async () => {
  httpApp?.kill('SIGKILL');
  await c?.destroy();
  await mca?.close();
  rmSync(dir, { recursive: true, force: true });
});

test('the app pair talks through mTLS: the server app sees the exact plaintext, metrics say mutual_tls with both principals', async () => {
  const s = await c.connect(client, VIP, 8080);
  assert.equal(await exchange(s, 'ping through the mesh'), 'hello from server|ping through the mesh', c.logs());
  s.destroy();
  // 8081 answers the sha256 of what the app received: the app saw our bytes, not TLS records.
  const payload = Buffer.alloc(256 * 1024, 'mesh-bytes-');
  const s2 = await c.connect(client, VIP, 8081);
  s2.end(payload);
  const line = await readLine(s2);
  assert.equal(line, `server ${payload.length} ${createHash('sha256').update(payload).digest('hex')}`);
  s2.destroy();
  const peer = { connection_security_policy: 'mutual_tls', source_principal: 'spiffe://cluster.local/ns/a/sa/client-sa', destination_principal: 'spiffe://cluster.local/ns/a/sa/server-sa' };
  assert.ok(await c.metric(server, 'istio_tcp_connections_opened_total', { reporter: 'destination', ...peer }) >= 2, c.logs());
  assert.ok(await c.metric(client, 'istio_tcp_connections_opened_total', { reporter: 'source', source_principal: peer.source_principal, destination_principal: peer.destination_principal }) >= 2, c.logs());
});

test('HTTP over mTLS (istio-http/1.1 and istio-h2): the app sees plaintext; AuthorizationPolicy answers 403 "RBAC: access denied"', async () => {
  for (const proto of ['--http1.1', '--http2-prior-knowledge']) {
    const ok = await run(client, 'curl', ['-s', proto, '-w', ' %{http_code}', `http://${VIP}:9080/details/1`]);
    assert.match(ok.out, /^GET \/details\/1 tls=false \S+ 200$/, `${proto}: ${ok.out}\n${c.logs()}`);
    const denied = await run(client, 'curl', ['-s', proto, '-w', ' %{http_code}', `http://${VIP}:9080/admin/users`]);
    assert.equal(denied.out, 'RBAC: access denied 403', proto);
  }
  assert.ok(await c.metric(server, 'istio_requests_total', { reporter: 'destination', connection_security_policy: 'mutual_tls', source_principal: 'spiffe://cluster.local/ns/a/sa/client-sa', response_code: '200' }) >= 2, c.logs());
  assert.ok(await c.metric(server, 'weir_authorization_denied_total', { protocol: 'http', policy: 'a/no-admin' }) >= 2);
  assert.ok(await c.metric(server, 'weir_inbound_mtls_total', { outcome: 'mtls' }) >= 1, 'the requests came over mesh mTLS connections (pooled between the proxies)');
});

test('openssl: the server proxy presents its SPIFFE certificate; no client certificate → refused; another namespace → refused by AuthorizationPolicy; same namespace → the app answers', async () => {
  const none = await sClient([]);
  assert.doesNotMatch(none.out, /hello from server/, none.out);
  assert.match(none.out, /alert|error|errno/i, none.out);
  // The certificate the server proxy presented, read back with openssl x509 -text.
  const pem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(none.out)?.[0];
  assert.ok(pem, none.out);
  const text = await run(outsider, 'openssl', ['x509', '-noout', '-text'], pem + '\n');
  assert.match(text.out, /URI:spiffe:\/\/cluster\.local\/ns\/a\/sa\/server-sa/, text.out);

  const foreign = await sClient(['-cert', join(dir, 'other.pem'), '-key', join(dir, 'other.key')]);
  assert.match(foreign.out, /Verify return code: 0/, foreign.out);
  assert.doesNotMatch(foreign.out, /hello from server/, foreign.out);
  const allowed = await sClient(['-cert', join(dir, 'client.pem'), '-key', join(dir, 'client.key')]);
  assert.match(allowed.out, /hello from server/, allowed.out);
  assert.ok(await c.metric(server, 'weir_authorization_denied_total', { protocol: 'tcp' }) >= 1);
});

test('STRICT: 0 of 1,000 plaintext connections reach the app; kubelet-style plaintext probes on :15020 keep working', async () => {
  let admitted = 0;
  let refused = 0;
  for (let batch = 0; batch < 20; batch++) {
    await Promise.all(Array.from({ length: 50 }, async () => {
      let s: net.Socket;
      try { s = await c.connect(outsider, server.ip4, 8080); } catch { refused++; return; }
      s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
      const got = await new Promise<string>((resolve) => {
        let buf = '';
        s.on('data', (d: Buffer) => { buf += d.toString(); });
        s.once('close', () => resolve(buf));
        setTimeout(() => { s.destroy(); resolve(buf); }, 3000);
      });
      if (got.includes('hello from')) admitted++; else refused++;
    }));
  }
  assert.equal(admitted, 0);
  assert.equal(refused, 1000);
  assert.ok(await c.metric(server, 'weir_inbound_mtls_total', { mode: 'STRICT', outcome: 'refused_plaintext' }) >= 1000);
  // The kubelet's view: plaintext HTTP to the status port, which probes the app from inside the pod.
  const probe = await run(outsider, 'curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', `http://${server.ip4}:15020/app-health/app/readyz`]);
  assert.equal(probe.out, '200', probe.out);
});

test('PERMISSIVE ports (portLevelMtls): plaintext is admitted, the app\'s own TLS passes through untouched', async () => {
  const s = await c.connect(outsider, server.ip4, 8081);
  s.end('plain');
  assert.equal(await readLine(s), `server 5 ${createHash('sha256').update('plain').digest('hex')}`);
  s.destroy();
  const own = await run(outsider, 'openssl', ['s_client', '-connect', `${server.ip4}:8443`, '-alpn', 'h2', '-servername', 'shop.example'], '');
  assert.match(own.out, /subject=CN\s*=\s*app-own-tls/, own.out);
  assert.match(own.out, /app tls says hi/, own.out);
  assert.doesNotMatch(own.out, /spiffe/);
  assert.ok(await c.metric(server, 'weir_inbound_mtls_total', { mode: 'PERMISSIVE', outcome: 'passthrough_tls' }) >= 1);
  assert.ok(await c.metric(server, 'weir_inbound_mtls_total', { mode: 'PERMISSIVE', outcome: 'plaintext' }) >= 1);
});

/** The acceptance's run: 24 h certificates forced to rotate every 2 s during this long a load (WEIR_MTLS_ROTATION_S, default 60). */
const ROTATION_S = Number(process.env.WEIR_MTLS_ROTATION_S ?? 60);

test(`rotation every 2 s under ${ROTATION_S} s of load: no failed exchange, long-lived connections survive, new handshakes use new certificates`, async () => {
  const longLived = await c.connect(client, VIP, 8080);
  assert.equal(await readLine(longLived), 'hello from server');
  longLived.resume();
  const rotationsAtStart = { server: server.proxyLog.filter((l) => l.includes('workload certificate installed')).length, client: client.proxyLog.filter((l) => l.includes('workload certificate installed')).length };
  const t0 = Date.now();
  const end = t0 + ROTATION_S * 1000;
  let ok = 0;
  const failures: string[] = [];
  const worker = async () => {
    while (Date.now() < end) {
      try {
        const s = await c.connect(client, VIP, 8080);
        const r = await exchange(s, `n${ok}`);
        s.destroy();
        if (r.startsWith('hello from server|n')) ok++; else failures.push(r);
      } catch (e) { failures.push(String(e)); }
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
  longLived.write('still here\n');
  assert.equal(await readLine(longLived), 'still here');
  longLived.destroy();
  const rotations = (p: Pod) => p.proxyLog.filter((l) => l.includes('workload certificate installed')).length;
  const during = { server: rotations(server) - rotationsAtStart.server, client: rotations(client) - rotationsAtStart.client };
  console.log(`# rotation run: ${((Date.now() - t0) / 1000).toFixed(1)} s, ${ok} exchanges (4 workers, a new mTLS connection each), ${failures.length} failed; rotations during the load: server ${during.server}, client ${during.client}; load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  assert.deepEqual(failures, []);
  assert.ok(ok > 50, `only ${ok} exchanges`);
  // Every ~2 s (±10 % jitter) on each side: at least a third of that, on a loaded machine.
  const want = Math.floor(ROTATION_S / 6);
  assert.ok(during.server >= want && during.client >= want, `rotations during the load: server ${during.server}, client ${during.client} (want >= ${want})`);
  // New handshakes get the current certificate: two handshakes a rotation apart see different serials.
  const serial = async () => {
    const out = (await sClient(['-cert', join(dir, 'client.pem'), '-key', join(dir, 'client.key')])).out;
    const pem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(out)![0];
    return (await run(outsider, 'openssl', ['x509', '-noout', '-serial'], pem + '\n')).out.trim();
  };
  const first = await serial();
  await new Promise((r) => setTimeout(r, 3000));
  assert.notEqual(await serial(), first);
});

