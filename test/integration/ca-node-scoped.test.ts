// weir ca over real HTTPS against the test API server (TokenReview, pods,
// Secrets): node agents get certificates only for pods on their own node;
// everything else is refused with the reason, and the CA keeps serving.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'node:https';
import { TestApiServer } from '../support/apiserver.js';
import { startCa, type CaConfig } from '../../src/ca/main.js';
import { CaClient, CaClientError } from '../../src/ca/client.js';
import { createWorkloadCsr } from '../../src/ca/csr.js';
import { createLogger } from '../../src/common/log.js';
import { x509 } from '../../src/ca/pki.js';

const dir = mkdtempSync(join(tmpdir(), 'weir-ca-it-'));
const silent = createLogger({ name: 'ca-test', level: 'silent' });

function pod(ns: string, name: string, node: string, sa: string, phase = 'Running') {
  return { kind: 'Pod', metadata: { namespace: ns, name }, spec: { nodeName: node, serviceAccountName: sa, containers: [{ name: 'c', image: 'x' }] }, status: { phase } };
}
function openssl(args: string[], input?: string): string {
  return execFileSync('openssl', args, { encoding: 'utf8', input, cwd: dir, stdio: ['pipe', 'pipe', 'pipe'] });
}

let api: TestApiServer;
let cfg: CaConfig;
const uids: Record<string, string> = {};

before(async () => {
  api = await TestApiServer.start();
  for (const p of [pod('weir-system', 'agent-a', 'node-a', 'weir-agent'), pod('weir-system', 'agent-b', 'node-b', 'weir-agent'),
    pod('default', 'sleep', 'node-a', 'sleep'), pod('default', 'httpbin', 'node-b', 'httpbin'), pod('default', 'done', 'node-a', 'sleep', 'Succeeded')]) {
    uids[p.metadata.name] = api.put(p).metadata.uid!;
  }
  const sa = 'system:serviceaccount:weir-system:weir-agent';
  // node-a's agent: a token bound to its pod, without node-name (Kubernetes < 1.30): the CA looks the node up.
  api.addToken('tok-a', { username: sa, extra: { 'authentication.kubernetes.io/pod-name': ['agent-a'], 'authentication.kubernetes.io/pod-uid': [uids['agent-a']] } });
  // node-b's agent: a 1.30+ token that names its node.
  api.addToken('tok-b', { username: sa, extra: { 'authentication.kubernetes.io/pod-name': ['agent-b'], 'authentication.kubernetes.io/pod-uid': [uids['agent-b']], 'authentication.kubernetes.io/node-name': ['node-b'] } });
  api.addToken('tok-unbound', { username: sa });
  api.addToken('tok-stale', { username: sa, extra: { 'authentication.kubernetes.io/pod-name': ['agent-a'], 'authentication.kubernetes.io/pod-uid': ['00000000-dead'] } });
  api.addToken('tok-app', { username: 'system:serviceaccount:default:sleep', extra: { 'authentication.kubernetes.io/pod-name': ['sleep'], 'authentication.kubernetes.io/pod-uid': [uids.sleep] } });
  api.addToken('tok-user', { username: 'alice' });
  for (const t of ['tok-a', 'tok-b', 'tok-unbound', 'tok-stale', 'tok-app', 'tok-user', 'tok-bogus']) writeFileSync(join(dir, t), `${t}\n`);
  cfg = {
    kubeconfig: api.writeKubeconfig(dir), namespace: 'weir-system', trustDomain: 'cluster.local', host: '127.0.0.1', port: 0,
    dnsNames: ['localhost'], ips: ['127.0.0.1'], agentServiceAccounts: ['weir-system/weir-agent'],
    certTtlMs: 24 * 3600e3, maxCertTtlMs: 48 * 3600e3, logger: silent,
  };
});
after(async () => { await api.stop(); rmSync(dir, { recursive: true, force: true }); });

function client(port: number, roots: string, token: string): CaClient {
  return new CaClient({ url: `https://127.0.0.1:${port}`, rootsPem: roots, tokenFile: join(dir, token) });
}
async function refused(p: Promise<unknown>, status: number, reason: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof CaClientError, String(e));
    assert.equal(`${e.status} ${e.reason}`, `${status} ${reason}`, e.message);
    return true;
  });
}
function post(port: number, roots: string, body: string, token = 'tok-a'): Promise<{ status: number; json: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/v1/certificates', method: 'POST', ca: roots, servername: 'localhost',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString('utf8')) }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

test('node-scoped issuance: an agent gets certificates only for pods on its own node', async () => {
  const { server, origin } = await startCa(cfg);
  try {
    assert.equal(origin, 'self-signed-created');
    assert.ok(api.get('Secret', 'weir-system', 'weir-ca-root'), 'the root was stored in a Secret');
    const roots = server.rootsPem();
    // The public half for agents, without the key: ConfigMap weir-mesh-roots.
    const cm = api.get('ConfigMap', 'weir-system', 'weir-mesh-roots') as { data?: Record<string, string> } | undefined;
    assert.deepEqual(Object.keys(cm?.data ?? {}), ['root-cert.pem']);
    assert.equal(cm!.data!['root-cert.pem'], roots);
    const sleepKey = await createWorkloadCsr('spiffe://cluster.local/ns/default/sa/sleep');
    const issued = await client(server.port, roots, 'tok-a').sign({ namespace: 'default', name: 'sleep', uid: uids.sleep }, sleepKey.csrPem);
    assert.equal(issued.spiffeId, 'spiffe://cluster.local/ns/default/sa/sleep');
    const text = openssl(['x509', '-noout', '-text'], issued.certChain[0]);
    assert.match(text, /URI:spiffe:\/\/cluster\.local\/ns\/default\/sa\/sleep/);
    writeFileSync(join(dir, 'root.pem'), roots);
    writeFileSync(join(dir, 'sleep.pem'), issued.certChain[0]);
    assert.match(openssl(['verify', '-CAfile', 'root.pem', 'sleep.pem']), /sleep\.pem: OK/);
    // The issued certificate's key is the CSR's: the private key never left the "pod".
    const leaf = new x509.X509Certificate(issued.certChain[0]);
    const kp = openssl(['pkey', '-pubout'], sleepKey.keyPem);
    assert.equal(leaf.publicKey.toString('pem').replace(/\s/g, ''), kp.replace(/\s/g, ''));

    // A CSR without a SAN is fine (the CA decides the identity); node-b's 1.30 token path works for its own pod.
    const hb = await createWorkloadCsr('spiffe://cluster.local/ns/default/sa/httpbin');
    const b = await client(server.port, roots, 'tok-b').sign({ namespace: 'default', name: 'httpbin' }, hb.csrPem);
    assert.equal(b.spiffeId, 'spiffe://cluster.local/ns/default/sa/httpbin');

    // A compromised node-a cannot mint node-b's identities, whatever it claims.
    await refused(client(server.port, roots, 'tok-a').sign({ namespace: 'default', name: 'httpbin' }, hb.csrPem), 403, 'OtherNode');
    // …nor smuggle another identity into its own pod's CSR.
    await refused(client(server.port, roots, 'tok-a').sign({ namespace: 'default', name: 'sleep' }, hb.csrPem), 403, 'CsrIdentityMismatch');
    await refused(client(server.port, roots, 'tok-a').sign({ namespace: 'default', name: 'sleep', uid: 'other-uid' }, sleepKey.csrPem), 403, 'PodUidMismatch');
    await refused(client(server.port, roots, 'tok-a').sign({ namespace: 'default', name: 'done' }, sleepKey.csrPem), 403, 'PodFinished');
    await refused(client(server.port, roots, 'tok-a').sign({ namespace: 'default', name: 'ghost' }, sleepKey.csrPem), 404, 'PodNotFound');
    await refused(client(server.port, roots, 'tok-unbound').sign({ namespace: 'default', name: 'sleep' }, sleepKey.csrPem), 403, 'TokenNotBound');
    await refused(client(server.port, roots, 'tok-stale').sign({ namespace: 'default', name: 'sleep' }, sleepKey.csrPem), 403, 'TokenNotBound');
    await refused(client(server.port, roots, 'tok-app').sign({ namespace: 'default', name: 'sleep' }, sleepKey.csrPem), 403, 'NotAnAgent');
    await refused(client(server.port, roots, 'tok-user').sign({ namespace: 'default', name: 'sleep' }, sleepKey.csrPem), 403, 'NotAnAgent');
    await refused(client(server.port, roots, 'tok-bogus').sign({ namespace: 'default', name: 'sleep' }, sleepKey.csrPem), 401, 'Unauthenticated');

    // Malformed requests name the field and do not disturb the CA.
    const bad = [
      ['{not json', 'body'], ['[]', 'body'], ['{"pod":{"namespace":"default","name":"sleep"}}', 'csr'],
      ['{"csr":"x","pod":{"namespace":"default","name":"Bad_Name"}}', 'pod.name'],
      [JSON.stringify({ csr: 'garbage', pod: { namespace: 'default', name: 'sleep' } }), 'csr'],
      [JSON.stringify({ csr: sleepKey.csrPem, pod: { namespace: 'default', name: 'sleep' }, ttlSeconds: 5 }), 'ttlSeconds'],
    ];
    for (const [body, field] of bad) {
      const r = await post(server.port, roots, body);
      assert.equal(r.status, 400, body);
      assert.equal(r.json.field, field, body);
    }
    const big = await post(server.port, roots, JSON.stringify({ csr: 'x'.repeat(70_000) }));
    assert.equal(big.status, 400);
    assert.equal(big.json.field, 'body');
    const after = await client(server.port, roots, 'tok-a').sign({ namespace: 'default', name: 'sleep' }, sleepKey.csrPem);
    assert.equal(after.spiffeId, 'spiffe://cluster.local/ns/default/sa/sleep');

    const metrics = await new Promise<string>((resolve, reject) => {
      request({ host: '127.0.0.1', port: server.port, path: '/metrics', ca: roots, servername: 'localhost' }, (res) => {
        let s = ''; res.on('data', (c) => { s += c; }); res.on('end', () => resolve(s));
      }).on('error', reject).end();
    });
    assert.match(metrics, /weir_ca_certificates_issued_total 3/);
    assert.match(metrics, /weir_ca_requests_refused_total\{reason="OtherNode"\} 1/);

    // What a TLS client sees of the CA itself: a certificate for its names, chained to the mesh root.
    // (async: the CA runs in this process, a synchronous child would block it from answering)
    const { stdout: sc } = await promisify(execFile)('sh', ['-c', `openssl s_client -connect 127.0.0.1:${server.port} -CAfile root.pem -verify_return_error -verify_hostname localhost -servername localhost </dev/null 2>&1`], { encoding: 'utf8', cwd: dir });
    assert.match(sc, /Verify return code: 0 \(ok\)/);
  } finally {
    await server.close();
  }
});

test('the CA survives a restart with the same root; a plug-in cacerts Secret takes precedence', async () => {
  const first = await startCa(cfg);
  const rootA = first.server.rootsPem();
  await first.server.close();
  const second = await startCa(cfg);
  assert.equal(second.origin, 'self-signed-existing');
  assert.equal(second.server.rootsPem(), rootA, 'one mesh root across restarts');
  // A certificate from before the restart still verifies against the root served after it.
  const csr = await createWorkloadCsr('spiffe://cluster.local/ns/default/sa/sleep');
  const c = await client(second.server.port, rootA, 'tok-a').sign({ namespace: 'default', name: 'sleep' }, csr.csrPem);
  assert.equal(c.roots.join(''), rootA);
  await second.server.close();

  openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'pk.key']);
  openssl(['req', '-x509', '-new', '-key', 'pk.key', '-subj', '/O=corp/CN=plugged root', '-days', '30', '-out', 'pk.pem',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  const read = (n: string): string => execFileSync('cat', [join(dir, n)], { encoding: 'utf8' });
  const b64 = (s: string): string => Buffer.from(s).toString('base64');
  api.put({ kind: 'Secret', metadata: { namespace: 'weir-system', name: 'cacerts' }, data: { 'ca-cert.pem': b64(read('pk.pem')), 'ca-key.pem': b64(read('pk.key')), 'root-cert.pem': b64(read('pk.pem')) } });
  const plugged = await startCa(cfg);
  try {
    assert.equal(plugged.origin, 'plugin');
    const issued = await client(plugged.server.port, read('pk.pem'), 'tok-a').sign({ namespace: 'default', name: 'sleep' }, csr.csrPem);
    writeFileSync(join(dir, 'pl-leaf.pem'), issued.certChain[0]);
    assert.match(openssl(['verify', '-CAfile', 'pk.pem', 'pl-leaf.pem']), /OK/);
    assert.match(openssl(['x509', '-noout', '-issuer'], issued.certChain[0]), /plugged root/);
  } finally {
    await plugged.server.close();
    api.remove('Secret', 'weir-system', 'cacerts');
  }
});
