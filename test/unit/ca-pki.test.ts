// The CA's X.509: what openssl (not our own parser) sees in the certificates
// weir issues, CSR checks, and plug-in CA material made by openssl.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { webcrypto } from 'node:crypto';
import { certToPem, generateRoot, signLeaf, WORKLOAD_KEY } from '../../src/ca/pki.js';
import { checkCsr, createWorkloadCsr } from '../../src/ca/csr.js';
import { materialFromSecret } from '../../src/ca/root-store.js';
import { FieldError } from '../../src/common/errors.js';

const dir = mkdtempSync(join(tmpdir(), 'weir-ca-pki-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function openssl(args: string[], input?: string): string {
  return execFileSync('openssl', args, { encoding: 'utf8', input, cwd: dir, stdio: ['pipe', 'pipe', 'pipe'] });
}
function file(name: string, text: string): string { writeFileSync(join(dir, name), text); return join(dir, name); }

test('a workload certificate carries the SPIFFE ID as a critical URI SAN, both TLS roles, and verifies against the root', async () => {
  const root = await generateRoot({ trustDomain: 'cluster.local' });
  const keys = await webcrypto.subtle.generateKey(WORKLOAD_KEY, true, ['sign', 'verify']) as CryptoKeyPair;
  const leaf = await signLeaf(root, { publicKey: keys.publicKey as unknown as CryptoKey, uris: ['spiffe://cluster.local/ns/default/sa/sleep'], notAfter: new Date(Date.now() + 24 * 3600e3) });
  const text = openssl(['x509', '-noout', '-text'], certToPem(leaf));
  assert.match(text, /X509v3 Subject Alternative Name: critical\s+URI:spiffe:\/\/cluster\.local\/ns\/default\/sa\/sleep/);
  assert.match(text, /TLS Web Server Authentication, TLS Web Client Authentication/);
  assert.match(text, /CA:FALSE/);
  assert.match(text, /ASN1 OID: prime256v1/);
  const rootText = openssl(['x509', '-noout', '-text'], certToPem(root.cert));
  assert.match(rootText, /CA:TRUE/);
  assert.match(rootText, /Certificate Sign, CRL Sign/);
  const out = openssl(['verify', '-CAfile', file('root.pem', certToPem(root.cert)), file('leaf.pem', certToPem(leaf))]);
  assert.match(out, /leaf\.pem: OK/);
  const hours = (leaf.notAfter.getTime() - Date.now()) / 3600e3;
  assert.ok(hours > 23.9 && hours <= 24, `lifetime ${hours} h`);
});

test('a leaf never outlives its signer', async () => {
  const root = await generateRoot({ trustDomain: 'cluster.local', lifetimeDays: 1 });
  const keys = await webcrypto.subtle.generateKey(WORKLOAD_KEY, true, ['sign', 'verify']) as CryptoKeyPair;
  const leaf = await signLeaf(root, { publicKey: keys.publicKey as unknown as CryptoKey, uris: ['spiffe://x/ns/a/sa/b'], notAfter: new Date(Date.now() + 10 * 86400e3) });
  assert.equal(leaf.notAfter.getTime(), root.cert.notAfter.getTime());
});

test('checkCsr: a proxy-made CSR passes with its requested SPIFFE ID; tampered, RSA, garbage and oversize CSRs name the field', async () => {
  const { csrPem, keyPem } = await createWorkloadCsr('spiffe://cluster.local/ns/a/sa/b');
  assert.match(keyPem, /BEGIN PRIVATE KEY/);
  const ok = await checkCsr(csrPem);
  assert.deepEqual(ok.requestedUris, ['spiffe://cluster.local/ns/a/sa/b']);
  // openssl checks the self-signature too (it prints the verdict on stderr).
  const verdict = execFileSync('sh', ['-c', 'openssl req -noout -verify 2>&1'], { encoding: 'utf8', input: csrPem });
  assert.match(verdict, /self-signature verify OK/);
  // Flip a byte inside the signature (the last bytes of the DER): proof of possession fails.
  const der = Buffer.from(csrPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
  der[der.length - 3] ^= 0x01;
  const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
  await assert.rejects(checkCsr(tampered), (e: unknown) => e instanceof FieldError && e.field === 'csr' && /proof of possession/.test(e.message));
  openssl(['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'rsa.key', '-subj', '/CN=x', '-out', 'rsa.csr']);
  await assert.rejects(checkCsr(readFileSync(join(dir, 'rsa.csr'), 'utf8')), /csr: key must be ECDSA P-256, got RSA/);
  await assert.rejects(checkCsr('hello'), /csr: no PEM "CERTIFICATE REQUEST" block/);
  await assert.rejects(checkCsr(42), /csr: must be a PEM/);
  await assert.rejects(checkCsr('x'.repeat(9000)), /csr: longer than 8192 bytes/);
  await assert.rejects(checkCsr('-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n'), /csr: cannot parse/);
});

function b64(s: string): string { return Buffer.from(s).toString('base64'); }

test('a plug-in CA made by openssl (root → intermediate, SEC1 key) signs leaves that openssl verifies through the chain', async () => {
  openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'root.key']);
  openssl(['req', '-x509', '-new', '-key', 'root.key', '-subj', '/O=corp/CN=corp root', '-days', '30', '-out', 'corp-root.pem',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'int.key']);
  openssl(['req', '-new', '-key', 'int.key', '-subj', '/O=corp/CN=mesh intermediate', '-out', 'int.csr']);
  file('int.ext', 'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n');
  openssl(['x509', '-req', '-in', 'int.csr', '-CA', 'corp-root.pem', '-CAkey', 'root.key', '-CAcreateserial', '-days', '20', '-extfile', 'int.ext', '-out', 'int.pem']);
  const read = (n: string): string => readFileSync(join(dir, n), 'utf8');
  assert.match(read('int.key'), /BEGIN EC PRIVATE KEY/); // SEC1, as many plug-in CAs ship it
  const secret = { metadata: { name: 'cacerts', namespace: 'weir-system' }, data: {
    'ca-cert.pem': b64(read('int.pem')), 'ca-key.pem': b64(read('int.key')),
    'root-cert.pem': b64(read('corp-root.pem')), 'cert-chain.pem': b64(read('int.pem') + read('corp-root.pem')),
  } };
  const ca = await materialFromSecret(secret);
  assert.equal(ca.chain.length, 0, 'cert-chain.pem repeating ca-cert and root adds no intermediate');
  const keys = await webcrypto.subtle.generateKey(WORKLOAD_KEY, true, ['sign', 'verify']) as CryptoKeyPair;
  const leaf = await signLeaf(ca, { publicKey: keys.publicKey as unknown as CryptoKey, uris: ['spiffe://cluster.local/ns/a/sa/b'], notAfter: new Date(Date.now() + 3600e3) });
  const out = openssl(['verify', '-CAfile', join(dir, 'corp-root.pem'), '-untrusted', join(dir, 'int.pem'), file('pl.pem', certToPem(leaf))]);
  assert.match(out, /pl\.pem: OK/);
  // The wrong key for the certificate stops the CA at start.
  const wrong = { ...secret, data: { ...secret.data, 'ca-key.pem': b64(read('root.key')) } };
  await assert.rejects(materialFromSecret(wrong), /data|key does not match/);
  const notCa = { ...secret, data: { ...secret.data, 'ca-cert.pem': b64(certToPem(leaf)) } };
  await assert.rejects(materialFromSecret(notCa), /CA:TRUE/);
  const missing = { metadata: { name: 'cacerts', namespace: 'weir-system' }, data: { 'ca-cert.pem': secret.data['ca-cert.pem'] } };
  await assert.rejects(materialFromSecret(missing), /Secret weir-system\/cacerts: data\.ca-key\.pem is missing/);
});
