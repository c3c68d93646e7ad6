// This proxy's mesh identity over its life: once the agent has said who the
// pod is (welcome: namespace + service account, decided from the kernel),
// make a key, get the first certificate through the agent (retrying with
// backoff while the CA is down: running pods keep their certificates, only
// new ones wait), then let WorkloadIdentity renew at half-life ± jitter.
// `--cert-rotation` forces renewals more often (tests, bench). A renewal
// swaps the TLS context for new handshakes only; open connections keep theirs.
import type { Logger } from '../../common/log.js';
import type { PodIdentity } from '../../controlplane/protocol.js';
import { WorkloadIdentity } from '../../mtls/workload-identity.js';
import type { RegistryClient } from '../registry-client.js';
import { agentSigner } from './agent-signer.js';

export interface MeshIdentityOptions {
  client: RegistryClient;
  trustDomain: string;
  logger: Logger;
  /** Forced renewal interval in ms (0: half-life only). */
  rotationMs: number;
  onRotated?: (serial: string, notAfter: Date) => void;
}

export function spiffeIdFor(trustDomain: string, id: Pick<PodIdentity, 'namespace' | 'serviceAccount'>): string {
  return `spiffe://${trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount ?? 'default'}`;
}

export class MeshIdentity {
  private wi?: WorkloadIdentity;
  private starting = false;
  private stopped = false;
  private retryMs = 500;
  private rotateTimer?: NodeJS.Timeout;
  private retryTimer?: NodeJS.Timeout;
  lastError?: string;
  rotations = 0;

  constructor(private readonly o: MeshIdentityOptions) {
    o.client.on('connected', (id: PodIdentity) => this.begin(id));
    if (o.client.identity) this.begin(o.client.identity);
  }

  /** The identity with a current certificate, or undefined (no certificate yet). */
  current(): WorkloadIdentity | undefined {
    return this.wi && this.hasCert ? this.wi : undefined;
  }

  get spiffeId(): string | undefined { return this.id || undefined; }

  private hasCert = false;
  private id = '';

  private begin(identity: PodIdentity): void {
    if (this.stopped || this.starting || this.wi) return;
    if (!this.o.client.certificatesOffered) { this.lastError = 'the node agent issues no certificates (no --ca-url)'; return; }
    this.id = spiffeIdFor(this.o.trustDomain, identity);
    const wi = new WorkloadIdentity({ spiffeId: this.id, sign: agentSigner(this.o.client) });
    wi.on('rotated', (c) => { this.rotations++; this.o.onRotated?.(c.serial, c.notAfter); this.o.logger.info({ spiffeId: this.id, serial: c.serial, notAfter: c.notAfter.toISOString() }, 'workload certificate installed'); });
    wi.on('error', (e) => { this.lastError = e.message; this.o.logger.warn({ err: e.message }, 'workload certificate renewal failed; keeping the current one'); });
    this.starting = true;
    const attempt = () => {
      wi.start().then(() => {
        this.starting = false;
        this.wi = wi;
        this.hasCert = true;
        this.lastError = undefined;
        if (this.o.rotationMs > 0) {
          this.rotateTimer = setInterval(() => { void wi.rotateNow().catch(() => undefined); }, this.o.rotationMs);
          this.rotateTimer.unref();
        }
      }, (e: Error) => {
        this.lastError = e.message;
        this.o.logger.warn({ err: e.message, retryMs: this.retryMs }, 'no workload certificate yet; retrying');
        if (this.stopped) return;
        this.retryTimer = setTimeout(attempt, this.retryMs);
        this.retryTimer.unref();
        this.retryMs = Math.min(this.retryMs * 2, 30_000);
      });
    };
    attempt();
  }

  close(): void {
    this.stopped = true;
    clearInterval(this.rotateTimer);
    clearTimeout(this.retryTimer);
    this.wi?.close();
  }
}
