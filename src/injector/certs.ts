// Certificates for the webhook's HTTPS endpoint: a CA (its certificate is
// the caBundle the API server trusts) and short-lived serving certificates
// it signs. ECDSA P-256 through WebCrypto; the X.509 encoding is
// @peculiar/x509's, not ours.
// tsyringe (inside @peculiar/x509) needs the Reflect metadata polyfill loaded first.
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

export interface KeyPairPem { certPem: string; keyPem: string }

export interface IssuedCert extends KeyPairPem { notBefore: Date; notAfter: Date }

async function keyPair(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as unknown as CryptoKeyPair;
}

async function keyPem(k: CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey('pkcs8', k as unknown as webcrypto.CryptoKey);
  return x509.PemConverter.encode(der, 'PRIVATE KEY');
}

async function importKey(pem: string): Promise<CryptoKey> {
  const der = x509.PemConverter.decodeFirst(pem);
  return (await webcrypto.subtle.importKey('pkcs8', der, ALG, false, ['sign'])) as unknown as CryptoKey;
}

// Clock skew between the injector and the API server must not make a fresh certificate "not yet valid".
const BACKDATE_MS = 5 * 60_000;

export async function createCA(commonName: string, lifetimeMs: number, now = new Date()): Promise<IssuedCert> {
  const keys = await keyPair();
  const notBefore = new Date(now.getTime() - BACKDATE_MS);
  const notAfter = new Date(now.getTime() + lifetimeMs);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: `CN=${commonName}`, keys, notBefore, notAfter, signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: cert.toString('pem'), keyPem: await keyPem(keys.privateKey), notBefore, notAfter };
}

/** A serving certificate for `dnsNames` (the Service's names), signed by `ca`. */
export async function issueServingCert(ca: KeyPairPem, dnsNames: string[], lifetimeMs: number, now = new Date()): Promise<IssuedCert> {
  if (dnsNames.length === 0) throw new Error('a serving certificate needs at least one DNS name');
  const caCert = new x509.X509Certificate(ca.certPem);
  const keys = await keyPair();
  const notBefore = new Date(now.getTime() - BACKDATE_MS);
  // Never outlive the CA: the API server would stop trusting it mid-life.
  const notAfter = new Date(Math.min(now.getTime() + lifetimeMs, caCert.notAfter.getTime()));
  const cert = await x509.X509CertificateGenerator.create({
    subject: `CN=${dnsNames[0]}`, issuer: caCert.subject, publicKey: keys.publicKey, signingKey: await importKey(ca.keyPem),
    notBefore, notAfter, signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(dnsNames.map((value) => ({ type: 'dns' as const, value }))),
      await x509.AuthorityKeyIdentifierExtension.create(caCert),
    ],
  });
  return { certPem: cert.toString('pem'), keyPem: await keyPem(keys.privateKey), notBefore, notAfter };
}

export function certValidity(pem: string): { notBefore: Date; notAfter: Date } {
  const c = new x509.X509Certificate(pem);
  return { notBefore: c.notBefore, notAfter: c.notAfter };
}

/** The names a Service answers to inside the cluster. */
export function serviceDnsNames(service: string, namespace: string, clusterDomain = 'cluster.local'): string[] {
  return [service, `${service}.${namespace}`, `${service}.${namespace}.svc`, `${service}.${namespace}.svc.${clusterDomain}`];
}
