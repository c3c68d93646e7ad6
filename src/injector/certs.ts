// Certificates for the webhook's HTTPS endpoint: a CA of its own (its
// certificate is the caBundle the API server trusts) and short-lived serving
// certificates it signs, as PEM. The X.509 work is the mesh CA's
// (src/ca/pki.ts, @peculiar/x509 on WebCrypto): one implementation of
// roots and leaves in weir.
import { webcrypto } from 'node:crypto';
import { WORKLOAD_KEY, certToPem, certsFromPem, generateRoot, keyFromPem, keyToPem, signLeaf } from '../ca/pki.js';

export interface KeyPairPem { certPem: string; keyPem: string }

export interface IssuedCert extends KeyPairPem { notBefore: Date; notAfter: Date }

export async function createCA(commonName: string, lifetimeMs: number, now = new Date()): Promise<IssuedCert> {
  const ca = await generateRoot({ trustDomain: 'weir-injector', commonName, lifetimeDays: lifetimeMs / 86_400_000, now });
  return { certPem: certToPem(ca.cert), keyPem: await keyToPem(ca.key), notBefore: ca.cert.notBefore, notAfter: ca.cert.notAfter };
}

/** A serving certificate for `dnsNames` (the Service's names), signed by `ca`; never outlives the CA. */
export async function issueServingCert(ca: KeyPairPem, dnsNames: string[], lifetimeMs: number, now = new Date()): Promise<IssuedCert> {
  if (dnsNames.length === 0) throw new Error('a serving certificate needs at least one DNS name');
  const [cert] = certsFromPem(ca.certPem, 'injector CA certificate');
  const key = await keyFromPem(ca.keyPem, 'injector CA key');
  const keys = (await webcrypto.subtle.generateKey(WORKLOAD_KEY, true, ['sign', 'verify'])) as unknown as CryptoKeyPair;
  const leaf = await signLeaf({ cert, key, chain: [], roots: [cert] }, { publicKey: keys.publicKey, dnsNames, notAfter: new Date(now.getTime() + lifetimeMs), now });
  return { certPem: certToPem(leaf), keyPem: await keyToPem(keys.privateKey), notBefore: leaf.notBefore, notAfter: leaf.notAfter };
}

export function certValidity(pem: string): { notBefore: Date; notAfter: Date } {
  const [c] = certsFromPem(pem, 'certificate');
  return { notBefore: c.notBefore, notAfter: c.notAfter };
}

/** The names a Service answers to inside the cluster. */
export function serviceDnsNames(service: string, namespace: string, clusterDomain = 'cluster.local'): string[] {
  return [service, `${service}.${namespace}`, `${service}.${namespace}.svc`, `${service}.${namespace}.svc.${clusterDomain}`];
}
