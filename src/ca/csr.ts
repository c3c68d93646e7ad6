// Certificate signing requests: the proxy makes one in the pod (its private
// key never leaves the pod), the CA checks it. The CA decides the identity
// from the API, never from the CSR: a CSR that asks for anything else than
// the identity being issued is refused, so a confused or hostile requester is
// visible instead of silently corrected.
import { webcrypto } from 'node:crypto';
import { FieldError } from '../common/errors.js';
import { WORKLOAD_KEY, keyToPem, x509 } from './pki.js';

/** A CSR bigger than this is not a P-256 CSR (real ones are ~400 bytes). */
export const MAX_CSR_PEM_BYTES = 8 * 1024;

export interface CheckedCsr {
  publicKey: CryptoKey;
  /** URI SANs the requester asked for (may be empty). */
  requestedUris: string[];
}

/** Parses and verifies a CSR; every failure is a FieldError naming `field`. */
export async function checkCsr(pem: unknown, field = 'csr'): Promise<CheckedCsr> {
  if (typeof pem !== 'string' || pem.length === 0) throw new FieldError(field, 'must be a PEM "CERTIFICATE REQUEST" string');
  if (pem.length > MAX_CSR_PEM_BYTES) throw new FieldError(field, `longer than ${MAX_CSR_PEM_BYTES} bytes`);
  if (!/-----BEGIN CERTIFICATE REQUEST-----/.test(pem)) throw new FieldError(field, 'no PEM "CERTIFICATE REQUEST" block');
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(pem);
  } catch (e) {
    throw new FieldError(field, `cannot parse: ${e instanceof Error ? e.message : String(e)}`);
  }
  const alg = csr.publicKey.algorithm as EcKeyAlgorithm;
  if (alg.name !== 'ECDSA' || alg.namedCurve !== 'P-256') {
    throw new FieldError(field, `key must be ECDSA P-256, got ${alg.name}${alg.namedCurve ? ` ${alg.namedCurve}` : ''}`);
  }
  let ok = false;
  try {
    ok = await csr.verify();
  } catch {
    ok = false;
  }
  // Proof of possession: whoever sent it holds the private key.
  if (!ok) throw new FieldError(field, 'signature does not verify (proof of possession failed)');
  // The CSR class hands back generic extensions: re-read the SAN one as what it is.
  const sanRaw = csr.getExtension('2.5.29.17');
  const san = sanRaw ? new x509.SubjectAlternativeNameExtension(sanRaw.rawData) : undefined;
  const requestedUris = san ? san.names.items.filter((n) => n.type === 'url').map((n) => n.value) : [];
  const publicKey = await csr.publicKey.export(WORKLOAD_KEY, ['verify']);
  return { publicKey, requestedUris };
}

export interface WorkloadKey {
  csrPem: string;
  keyPem: string;
}

/**
 * The proxy's side: a fresh P-256 key and a CSR for `spiffeId`. The key PEM
 * is for node:tls in this process only; it is never written or sent.
 */
export async function createWorkloadCsr(spiffeId: string): Promise<WorkloadKey> {
  const keys = await webcrypto.subtle.generateKey(WORKLOAD_KEY, true, ['sign', 'verify']) as CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    keys: keys as unknown as CryptoKeyPair,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: spiffeId }], true)],
  });
  return { csrPem: csr.toString('pem') + '\n', keyPem: await keyToPem(keys.privateKey as unknown as CryptoKey) };
}
