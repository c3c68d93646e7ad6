// Mutual TLS between two workload identities issued by the mesh CA's code:
// TLS 1.3 both ways, the server's SPIFFE ID checked by the client, the
// client's seen by the server; what openssl sees; rotation under load drops
// nothing.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, createServer, type Server, type TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { certToPem, generateRoot, signLeaf, type CaMaterial } from '../../src/ca/pki.js';
import { checkCsr } from '../../src/ca/csr.js';
import { WorkloadIdentity } from '../../src/mtls/workload-identity.js';
import { peerSpiffeId } from '../../src/mtls/spiffe.js';

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'weir-mtls-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const ALPN = ['istio-peer-exchange', 'istio'];
const SERVER = 'spiffe://cluster.local/ns/a/sa/server';
const CLIENT = 'spiffe://cluster.local/ns/b/sa/client';

/** The CA's own checks and signing, without its HTTP front (tested in ca-node-scoped). */
function signer(ca: CaMaterial, spiffeId: string, ttlMs = 3600e3) {
  return async (csrPem: string) => {
    const csr = await checkCsr(csrPem);
    const leaf = await signLeaf(ca, { publicKey: csr.publicKey, uris: [spiffeId], notAfter: new Date(Date.now() + ttlMs) });
    return { certChain: [certToPem(leaf)], roots: ca.roots.map(certToPem) };
  };
}

async function listen(id: WorkloadIdentity, onPeer: (s: TLSSocket) => void): Promise<{ server: Server; port: number }> {
  const server = createServer(id.serverOptions(ALPN), onPeer);
  server.on('tlsClientError', () => undefined);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as AddressInfo).port };
}

function dial(id: WorkloadIdentity, port: number, expected: string[]): Promise<{ sock: TLSSocket; line: string }> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host: '127.0.0.1', port, ...id.clientOptions(expected, ALPN) }, () => {
      sock.once('data', (d) => resolve({ sock, line: d.toString() }));
    });
    sock.once('error', reject);
  });
}

test('mesh mTLS: TLS 1.3, identities checked both ways, refused without or with a foreign certificate', async () => {
  const ca = await generateRoot({ trustDomain: 'cluster.local' });
  const server = new WorkloadIdentity({ spiffeId: SERVER, sign: signer(ca, SERVER) });
  const client = new WorkloadIdentity({ spiffeId: CLIENT, sign: signer(ca, CLIENT) });
  await server.start(); await client.start();
  let accepted = 0;
  const { server: srv, port } = await listen(server, (s) => {
    accepted++;
    const id = peerSpiffeId(s.getPeerCertificate());
    s.end(`${id instanceof Error ? id.message : id.uri} ${s.getProtocol()} ${s.alpnProtocol}\n`);
  });
  try {
    const { sock, line } = await dial(client, port, [SERVER]);
    assert.equal(line.trim(), `${CLIENT} TLSv1.3 istio-peer-exchange`);
    sock.destroy();
    // The client refuses a server that is not who the destination's service accounts say.
    await assert.rejects(dial(client, port, ['spiffe://cluster.local/ns/a/sa/other']), /server is spiffe:\/\/cluster\.local\/ns\/a\/sa\/server, expected/);

    // What openssl sees: the server's certificate carries its SPIFFE ID; without a client certificate no connection is accepted.
    writeFileSync(join(dir, 'root.pem'), certToPem(ca.cert));
    const before = accepted;
    const noCert = await run('sh', ['-c', `sleep 1 | openssl s_client -connect 127.0.0.1:${port} -CAfile root.pem -alpn istio -showcerts 2>&1; true`], { cwd: dir });
    // (TLS 1.3: the server's refusal is an alert after the client's Finished; stay connected a moment to read it.)
    assert.match(noCert.stdout, /alert certificate required/i);
    const served = noCert.stdout.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/)![0];
    writeFileSync(join(dir, 'served.pem'), served + '\n');
    const x = await run('openssl', ['x509', '-in', 'served.pem', '-noout', '-ext', 'subjectAltName'], { cwd: dir });
    assert.match(x.stdout, /URI:spiffe:\/\/cluster\.local\/ns\/a\/sa\/server/);
    // With the client's mesh certificate openssl gets through.
    const c = client.credentials();
    writeFileSync(join(dir, 'c.pem'), c.cert); writeFileSync(join(dir, 'c.key'), c.key);
    const withCert = await run('sh', ['-c', `openssl s_client -connect 127.0.0.1:${port} -CAfile root.pem -cert c.pem -key c.key -alpn istio -quiet </dev/null 2>/dev/null; true`], { cwd: dir });
    assert.match(withCert.stdout, new RegExp(`${CLIENT} TLSv1.3 istio`));
    // A certificate from another mesh's root is refused.
    const other = await generateRoot({ trustDomain: 'cluster.local' });
    const foreign = new WorkloadIdentity({ spiffeId: CLIENT, sign: signer(other, CLIENT) });
    await foreign.start();
    await assert.rejects(dial(foreign, port, [SERVER]));
    assert.equal(accepted, before + 1, 'only the openssl client with a mesh certificate was accepted');
  } finally {
    srv.close(); server.close(); client.close();
  }
});

test('rotation under load: certificates replaced back to back for 3 s, no failed connection, long-lived stream intact', async () => {
  const ca = await generateRoot({ trustDomain: 'cluster.local' });
  const server = new WorkloadIdentity({ spiffeId: SERVER, sign: signer(ca, SERVER, 60e3) });
  const client = new WorkloadIdentity({ spiffeId: CLIENT, sign: signer(ca, CLIENT, 60e3) });
  await server.start(); await client.start();
  const { server: srv, port } = await listen(server, (s) => s.pipe(s)); // echo
  server.on('rotated', () => srv.setSecureContext(server.serverOptions(ALPN)));
  const serials = new Set<string>([server.credentials().serial]);
  // One rotation at a time on each side, back to back with 200 ms between (a renewal costs a key, a CSR and a signature).
  let rotating = true;
  const rotations = (async () => {
    while (rotating) {
      await Promise.all([server.rotateNow().then(() => serials.add(server.credentials().serial)), client.rotateNow()]);
      await new Promise((r) => setTimeout(r, 200));
    }
  })();
  const long = await new Promise<TLSSocket>((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, ...client.clientOptions([SERVER], ALPN) }, () => resolve(s));
    s.once('error', reject);
  });
  let longEchoed = 0;
  long.on('data', (d) => { longEchoed += d.length; });
  let ok = 0; let failed = 0;
  const end = Date.now() + 3000;
  try {
    while (Date.now() < end) {
      long.write('x'.repeat(64));
      try {
        const r = await new Promise<string>((resolve, reject) => {
          const s = connect({ host: '127.0.0.1', port, ...client.clientOptions([SERVER], ALPN) }, () => s.write('ping'));
          s.once('data', (d) => { resolve(d.toString()); s.destroy(); });
          s.once('error', reject);
        });
        if (r === 'ping') ok++; else failed++;
      } catch { failed++; }
    }
    await new Promise((r) => setTimeout(r, 100));
  } finally {
    rotating = false;
    await rotations;
  }
  const sent = longEchoed;
  long.destroy(); srv.close(); server.close(); client.close();
  process.stdout.write(`# ${ok} connections during ${serials.size} server certificates, ${failed} failed; long stream echoed ${sent} bytes\n`);
  assert.equal(failed, 0);
  assert.ok(ok >= 10, `${ok} connections`);
  assert.ok(serials.size >= 5, `${serials.size} certificates`);
  assert.ok(sent > 0 && !long.errored, 'the long-lived connection kept working');
});
