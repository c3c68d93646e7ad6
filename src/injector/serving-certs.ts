// The webhook's serving certificate: issued by the injector's CA (from its
// Secret), renewed at two thirds of its life, and the caBundle kept in the
// MutatingWebhookConfiguration. No manual certificate step.
import type { Logger } from '../common/log.js';
import { reconcileCaBundle } from './ca-bundle.js';
import { loadOrCreateCA, type CaState } from './ca-store.js';
import { createCA, issueServingCert, type IssuedCert } from './certs.js';
import type { KubeRest } from './kube-rest.js';

export interface ServingCertOptions {
  /** Without an API (tests, `weir injector --no-kube`), the CA lives only in memory. */
  api?: KubeRest;
  namespace: string;
  caSecretName: string;
  /** The MutatingWebhookConfiguration whose caBundle is kept right; empty = do not touch it. */
  webhookConfigName: string;
  dnsNames: string[];
  leafLifetimeMs: number;
  /** caBundle drift check interval (someone re-applied the manifests). */
  reconcileMs: number;
  logger: Logger;
}

export class ServingCerts {
  private ca?: CaState;
  private leaf?: IssuedCert;
  private renewTimer?: NodeJS.Timeout;
  private reconcileTimer?: NodeJS.Timeout;
  private listeners: ((c: IssuedCert) => void)[] = [];
  renewals = 0;

  constructor(private readonly o: ServingCertOptions) {}

  get current(): IssuedCert {
    if (!this.leaf) throw new Error('serving certificate not issued yet (start() first)');
    return this.leaf;
  }

  get caBundlePem(): string { return this.ca?.bundlePem ?? ''; }

  onRenew(fn: (c: IssuedCert) => void): void { this.listeners.push(fn); }

  async start(): Promise<IssuedCert> {
    await this.issue();
    if (this.o.api && this.o.webhookConfigName) {
      this.reconcileTimer = setInterval(() => { void this.reconcile(); }, this.o.reconcileMs);
      this.reconcileTimer.unref();
    }
    return this.current;
  }

  stop(): void {
    clearTimeout(this.renewTimer);
    clearInterval(this.reconcileTimer);
  }

  /** Load (or rotate) the CA, issue a fresh leaf, publish the caBundle, schedule the next renewal. */
  async issue(): Promise<IssuedCert> {
    this.ca = this.o.api
      ? await loadOrCreateCA(this.o.api, this.o.namespace, this.o.caSecretName)
      : this.ca ?? await memoryCA();
    // caBundle before the new leaf is served: the API server must trust its CA first.
    if (this.o.api && this.o.webhookConfigName) await reconcileCaBundle(this.o.api, this.o.webhookConfigName, this.ca.bundlePem);
    this.leaf = await issueServingCert(this.ca.current, this.o.dnsNames, this.o.leafLifetimeMs);
    const life = this.leaf.notAfter.getTime() - this.leaf.notBefore.getTime();
    const renewAt = this.leaf.notBefore.getTime() + (life * 2) / 3;
    this.schedule(Math.max(1000, renewAt - Date.now()));
    this.o.logger.info({ notAfter: this.leaf.notAfter.toISOString(), dnsNames: this.o.dnsNames }, 'serving certificate issued');
    for (const l of this.listeners) l(this.leaf);
    return this.leaf;
  }

  private schedule(ms: number): void {
    clearTimeout(this.renewTimer);
    // setTimeout's limit is ~24.8 days; longer waits re-arm.
    const step = Math.min(ms, 2 ** 31 - 1);
    this.renewTimer = setTimeout(() => {
      if (step < ms) { this.schedule(ms - step); return; }
      this.issue().then(() => { this.renewals++; }, (err: unknown) => {
        // The old certificate is still valid for a third of its life: retry soon.
        this.o.logger.error({ err: String(err) }, 'serving certificate renewal failed; retrying in 30 s');
        this.schedule(30_000);
      });
    }, step);
    this.renewTimer.unref();
  }

  private async reconcile(): Promise<void> {
    if (!this.o.api || !this.ca) return;
    try {
      const n = await reconcileCaBundle(this.o.api, this.o.webhookConfigName, this.ca.bundlePem);
      if (n) this.o.logger.warn({ webhooks: n }, 'caBundle had drifted (manifests re-applied?); patched back');
    } catch (err) {
      this.o.logger.error({ err: String(err) }, 'caBundle reconcile failed');
    }
  }
}

async function memoryCA(): Promise<CaState> {
  const ca = await createCA('weir-injector-ca', 365 * 86_400_000);
  return { current: ca, bundlePem: ca.certPem };
}
