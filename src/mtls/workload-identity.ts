// The proxy's own workload certificate: a key made here (it never leaves the
// process), a CSR sent through `sign` (the node-local control plane in
// production), renewal at half-life with jitter, and TLS options for both
// roles built from whatever is current. Rotation swaps the context for new
// handshakes only: established connections keep theirs and are never cut.
import { EventEmitter } from 'node:events';
import { createSecureContext, type SecureContext, type SecureContextOptions } from 'node:tls';
// The PKI code (@peculiar/x509 and its ASN.1 stack: ~11 MB of RSS in the proxy once loaded) is
// imported when the first certificate is requested, not at start: a proxy whose agent issues no
// certificates never needs it.
const pki = () => Promise.all([import('../ca/csr.js'), import('../ca/pki.js')]);
import { expectSpiffe } from './spiffe.js';

export interface SignedChain { certChain: string[]; roots: string[] }
export type Signer = (csrPem: string) => Promise<SignedChain>;

export interface WorkloadIdentityOptions {
  spiffeId: string;
  sign: Signer;
  /** Renew when this fraction of the lifetime has passed (Istio: 0.5), ± jitter. */
  renewAt?: number;
  jitter?: number;
  /** Retry delays after a failed renewal (doubling, capped). */
  minRetryMs?: number;
  maxRetryMs?: number;
}

export interface CurrentCredentials { key: string; cert: string; ca: string; notAfter: Date; serial: string }

export class WorkloadIdentity extends EventEmitter<{ rotated: [CurrentCredentials]; error: [Error] }> {
  private current?: CurrentCredentials;
  private context?: SecureContext;
  private timer?: NodeJS.Timeout;
  private retryMs: number;
  private closed = false;

  constructor(private readonly opts: WorkloadIdentityOptions) {
    super();
    this.retryMs = opts.minRetryMs ?? 1000;
  }

  /** Gets the first certificate (rejects if it cannot); renewals then run by themselves. */
  async start(): Promise<CurrentCredentials> {
    await this.renew();
    return this.current!;
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
  }

  credentials(): CurrentCredentials {
    if (!this.current) throw new Error('workload identity: no certificate yet');
    return this.current;
  }

  /** Forces a renewal now (tests; and an operator's "rotate" action). */
  async rotateNow(): Promise<void> { await this.renew(); }

  private tlsBase(): SecureContextOptions {
    const c = this.credentials();
    return { key: c.key, cert: c.cert, ca: c.ca, minVersion: 'TLSv1.3' };
  }

  secureContext(): SecureContext {
    return (this.context ??= createSecureContext(this.tlsBase()));
  }

  /** Options for tls.createServer: client certificates required and verified against the mesh roots. */
  serverOptions(alpn: string[]): SecureContextOptions & { requestCert: true; rejectUnauthorized: true; ALPNProtocols: string[] } {
    return { ...this.tlsBase(), requestCert: true, rejectUnauthorized: true, ALPNProtocols: alpn };
  }

  /** Options for tls.connect to a mesh peer that must be one of `expected` (SPIFFE URIs). */
  clientOptions(expected: string[], alpn: string[], servername?: string) {
    return { secureContext: this.secureContext(), rejectUnauthorized: true, checkServerIdentity: expectSpiffe(expected), ALPNProtocols: alpn, servername, minVersion: 'TLSv1.3' as const };
  }

  private async renew(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    try {
      const [{ createWorkloadCsr }, { x509 }] = await pki();
      const { csrPem, keyPem } = await createWorkloadCsr(this.opts.spiffeId);
      const signed = await this.opts.sign(csrPem);
      const leaf = new x509.X509Certificate(signed.certChain[0]);
      const sans = leaf.getExtension(x509.SubjectAlternativeNameExtension)?.names.items.filter((n) => n.type === 'url').map((n) => n.value) ?? [];
      // Never install a certificate for someone else, whatever the signer returned.
      if (sans.length !== 1 || sans[0] !== this.opts.spiffeId) throw new Error(`signer returned a certificate for ${sans.join(', ') || 'no URI'}, not ${this.opts.spiffeId}`);
      this.current = { key: keyPem, cert: signed.certChain.join(''), ca: signed.roots.join(''), notAfter: leaf.notAfter, serial: leaf.serialNumber };
      this.context = undefined;
      this.retryMs = this.opts.minRetryMs ?? 1000;
      this.emit('rotated', this.current);
      this.schedule(leaf.notBefore, leaf.notAfter);
    } catch (e) {
      const err = e instanceof Error ? e : new Error(String(e));
      if (!this.current) throw err; // the first certificate: the caller decides (readiness waits)
      this.emit('error', err);
      if (!this.closed) {
        this.timer = setTimeout(() => { void this.renew().catch(() => undefined); }, this.retryMs).unref();
        this.retryMs = Math.min(this.retryMs * 2, this.opts.maxRetryMs ?? 30_000);
      }
    }
  }

  private schedule(notBefore: Date, notAfter: Date): void {
    if (this.closed) return;
    const life = notAfter.getTime() - notBefore.getTime();
    const frac = (this.opts.renewAt ?? 0.5) + ((Math.random() * 2 - 1) * (this.opts.jitter ?? 0.1));
    const at = notBefore.getTime() + life * Math.min(0.9, Math.max(0.1, frac));
    this.timer = setTimeout(() => { void this.renew().catch(() => undefined); }, Math.max(0, Math.min(at - Date.now(), 2 ** 31 - 1))).unref();
  }
}
