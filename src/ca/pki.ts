// X.509 for the mesh CA: the root, workload certificates, PEM in and out.
// Everything goes through @peculiar/x509 (on WebCrypto): no hand-written
// ASN.1. Keys are ECDSA P-256 (Istio's default for workloads); a plug-in CA
// may bring an RSA or P-384 signing key, which is read through node:crypto.
import { createPrivateKey, randomBytes, webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

export const WORKLOAD_KEY: EcKeyGenParams = { name: 'ECDSA', namedCurve: 'P-256' };
const ECDSA_SHA256 = { name: 'ECDSA', hash: 'SHA-256' };

/** A signing CA: its certificate and key, the chain above it, and the roots a peer must trust. */
export interface CaMaterial {
  cert: x509.X509Certificate;
  key: CryptoKey;
  /** Intermediates between `cert` and the root, nearest first (empty when `cert` is the root). */
  chain: x509.X509Certificate[];
  roots: x509.X509Certificate[];
}

export class PkiError extends Error {
  constructor(message: string) { super(message); this.name = 'PkiError'; }
}

/** A positive 128-bit serial (RFC 5280 allows at most 20 octets; the top bit must be 0). */
function serialNumber(): string {
  const b = randomBytes(16);
  b[0] &= 0x7f;
  if (b[0] === 0) b[0] = 1;
  return b.toString('hex');
}

function signingAlgorithmFor(key: CryptoKey): Algorithm & { hash: string } {
  if (key.algorithm.name === 'ECDSA') {
    const curve = (key.algorithm as EcKeyAlgorithm).namedCurve;
    return { name: 'ECDSA', hash: curve === 'P-384' ? 'SHA-384' : 'SHA-256' };
  }
  if (key.algorithm.name === 'RSASSA-PKCS1-v1_5') return { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
  throw new PkiError(`unsupported CA key algorithm ${key.algorithm.name}`);
}

/** A new self-signed mesh root (10 years, as Istio's self-signed root). `commonName` names other roots (the injector's webhook CA). */
export async function generateRoot(opts: { trustDomain: string; lifetimeDays?: number; now?: Date; commonName?: string }): Promise<CaMaterial> {
  const keys = await webcrypto.subtle.generateKey(WORKLOAD_KEY, true, ['sign', 'verify']) as CryptoKeyPair;
  const now = opts.now ?? new Date();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialNumber(),
    name: [{ O: [opts.trustDomain] }, { CN: [opts.commonName ?? 'weir mesh root'] }],
    notBefore: new Date(now.getTime() - 60_000),
    notAfter: new Date(now.getTime() + (opts.lifetimeDays ?? 3650) * 86_400_000),
    keys: keys as unknown as CryptoKeyPair,
    signingAlgorithm: ECDSA_SHA256,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey as unknown as CryptoKey),
    ],
  });
  return { cert, key: keys.privateKey as unknown as CryptoKey, chain: [], roots: [cert] };
}

export interface LeafRequest {
  /** The requester's public key (from a verified CSR). */
  publicKey: CryptoKey;
  /** URI SANs, e.g. spiffe://cluster.local/ns/default/sa/sleep. */
  uris?: string[];
  dnsNames?: string[];
  ips?: string[];
  notAfter: Date;
  now?: Date;
}

/** Signs an end-entity certificate for both TLS roles (mesh peers are clients and servers). */
export async function signLeaf(ca: CaMaterial, req: LeafRequest): Promise<x509.X509Certificate> {
  const names: x509.JsonGeneralName[] = [
    ...(req.uris ?? []).map((value) => ({ type: 'url' as const, value })),
    ...(req.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value })),
    ...(req.ips ?? []).map((value) => ({ type: 'ip' as const, value })),
  ];
  if (names.length === 0) throw new PkiError('a certificate needs at least one subject alternative name');
  const now = req.now ?? new Date();
  // Never outlive the signer: a chain that expires in the middle fails every handshake at once.
  const notAfter = req.notAfter.getTime() > ca.cert.notAfter.getTime() ? ca.cert.notAfter : req.notAfter;
  return x509.X509CertificateGenerator.create({
    serialNumber: serialNumber(),
    // Empty subject, identity only in the SAN (as Istio's workload certificates); the SAN is then critical (RFC 5280 4.2.1.6).
    subject: '',
    issuer: ca.cert.subjectName,
    notBefore: new Date(now.getTime() - 60_000),
    notAfter,
    publicKey: req.publicKey,
    signingKey: ca.key,
    signingAlgorithm: signingAlgorithmFor(ca.key),
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension(names, true),
      await x509.AuthorityKeyIdentifierExtension.create(ca.cert, false),
    ],
  });
}

export function certToPem(c: x509.X509Certificate): string {
  return c.toString('pem') + '\n';
}

/** Every certificate in a PEM bundle, in order. */
export function certsFromPem(pem: string, field: string): x509.X509Certificate[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new PkiError(`${field}: no PEM certificate found`);
  return blocks.map((b, i) => {
    try {
      return new x509.X509Certificate(b);
    } catch (e) {
      throw new PkiError(`${field}: certificate ${i}: ${e instanceof Error ? e.message : String(e)}`);
    }
  });
}

export async function keyToPem(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key));
  return `-----BEGIN PRIVATE KEY-----\n${der.toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '')}\n-----END PRIVATE KEY-----\n`;
}

/**
 * Reads a signing key in any PEM form a plug-in CA ships (PKCS#8, SEC1
 * "EC PRIVATE KEY", PKCS#1 "RSA PRIVATE KEY"): node:crypto normalises it to
 * PKCS#8, WebCrypto imports that.
 */
export async function keyFromPem(pem: string, field: string): Promise<CryptoKey> {
  let ko;
  try {
    ko = createPrivateKey(pem);
  } catch (e) {
    throw new PkiError(`${field}: not a private key: ${e instanceof Error ? e.message : String(e)}`);
  }
  const der = ko.export({ type: 'pkcs8', format: 'der' });
  if (ko.asymmetricKeyType === 'ec') {
    const curve = ko.asymmetricKeyDetails?.namedCurve;
    const namedCurve = curve === 'prime256v1' ? 'P-256' : curve === 'secp384r1' ? 'P-384' : undefined;
    if (!namedCurve) throw new PkiError(`${field}: EC curve ${curve} not supported (P-256, P-384)`);
    return webcrypto.subtle.importKey('pkcs8', der, { name: 'ECDSA', namedCurve }, true, ['sign']) as Promise<CryptoKey>;
  }
  if (ko.asymmetricKeyType === 'rsa') {
    return webcrypto.subtle.importKey('pkcs8', der, { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, true, ['sign']) as Promise<CryptoKey>;
  }
  throw new PkiError(`${field}: key type ${ko.asymmetricKeyType} not supported (EC, RSA)`);
}

/**
 * Checks that a CA certificate and key belong together and that the cert may
 * sign: a mismatched plug-in Secret must stop the CA at start, not produce
 * certificates nobody can verify.
 */
export async function checkCaMaterial(ca: CaMaterial, now = new Date()): Promise<void> {
  const bc = ca.cert.getExtension(x509.BasicConstraintsExtension);
  if (!bc?.ca) throw new PkiError('CA certificate lacks basicConstraints CA:TRUE');
  if (ca.cert.notAfter.getTime() <= now.getTime()) throw new PkiError(`CA certificate expired at ${ca.cert.notAfter.toISOString()}`);
  const probe = await webcrypto.subtle.generateKey(WORKLOAD_KEY, true, ['sign', 'verify']) as CryptoKeyPair;
  const leaf = await signLeaf(ca, { publicKey: probe.publicKey as unknown as CryptoKey, uris: ['spiffe://probe/self-check'], notAfter: new Date(now.getTime() + 60_000), now });
  if (!(await leaf.verify({ publicKey: ca.cert.publicKey, signatureOnly: true }))) {
    throw new PkiError('CA key does not match the CA certificate');
  }
  const top = ca.chain.length ? ca.chain[ca.chain.length - 1] : ca.cert;
  const anchored = await Promise.all(ca.roots.map((r) => top.verify({ publicKey: r.publicKey, signatureOnly: true }).catch(() => false)));
  if (!anchored.some(Boolean)) throw new PkiError('CA chain does not lead to any of the configured roots');
}

export { x509 };
