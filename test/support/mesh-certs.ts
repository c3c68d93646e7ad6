// Workload certificates without a CA server: a throw-away mesh root and
// leaves for any SPIFFE ID (PEM strings, as WorkloadIdentity holds them),
// for suites that test TLS handshakes in-process.
import { webcrypto } from 'node:crypto';
import { certToPem, generateRoot, keyToPem, signLeaf, WORKLOAD_KEY, type CaMaterial } from '../../src/ca/pki.js';

export interface Leaf { cert: string; key: string; roots: string }

export class TestMeshCa {
  private constructor(private readonly ca: CaMaterial, readonly rootsPem: string) {}

  static async create(trustDomain = 'cluster.local'): Promise<TestMeshCa> {
    const ca = await generateRoot({ trustDomain });
    return new TestMeshCa(ca, certToPem(ca.cert));
  }

  async leaf(spiffeId: string | string[]): Promise<Leaf> {
    const keys = await webcrypto.subtle.generateKey(WORKLOAD_KEY, true, ['sign', 'verify']) as CryptoKeyPair;
    const cert = await signLeaf(this.ca, { publicKey: keys.publicKey as unknown as CryptoKey, uris: ([] as string[]).concat(spiffeId), notAfter: new Date(Date.now() + 3600e3) });
    return { cert: certToPem(cert), key: await keyToPem(keys.privateKey as unknown as CryptoKey), roots: this.rootsPem };
  }
}
