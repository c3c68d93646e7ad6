// The agent's half of certificate issuance: a proxy's csr arrives on the
// connection its pod's listener accepted, so WHO it is was decided by the
// kernel (server.ts session identity), never by the CSR. The CSR must name
// exactly that pod's SPIFFE ID (a proxy asking for someone else is refused
// and logged, not silently corrected); then it goes to the weir CA with this
// node's own service-account token, and the CA checks once more that the pod
// runs on this node (src/ca/node-auth.ts).
import { Counter, type Registry as MetricsRegistry } from 'prom-client';
import { CaClient, CaClientError, type CaClientOptions } from '../ca/client.js';
import { checkCsr } from '../ca/csr.js';
import type { Logger } from '../common/log.js';
import type { CsrHandler } from '../controlplane/csr-messages.js';
import type { PodIdentity } from '../controlplane/protocol.js';

export interface CsrForwarderOptions {
  /** Fixed, or read per request (the roots file appears when the CA first publishes it, and may change). */
  ca: CaClientOptions | (() => Promise<CaClientOptions>);
  trustDomain: string;
  logger: Logger;
  metrics: MetricsRegistry;
  /** Requested lifetime (the CA caps it); undefined = the CA's default (24 h). */
  ttlSeconds?: number;
  /** At most this many csr in flight per pod (a looping proxy must not flood the CA). */
  maxInFlightPerPod?: number;
}

export function spiffeIdOf(trustDomain: string, identity: Pick<PodIdentity, 'namespace' | 'serviceAccount'>): string {
  return `spiffe://${trustDomain}/ns/${identity.namespace}/sa/${identity.serviceAccount ?? 'default'}`;
}

export function createCsrForwarder(o: CsrForwarderOptions): CsrHandler {
  let cached: { opts: CaClientOptions; client: CaClient } | undefined;
  const clientFor = async (): Promise<CaClient> => {
    const opts = typeof o.ca === 'function' ? await o.ca() : o.ca;
    if (!cached || cached.opts.rootsPem !== opts.rootsPem || cached.opts.url !== opts.url) cached = { opts, client: new CaClient(opts) };
    return cached.client;
  };
  const log = o.logger.child({ component: 'csr' });
  const counter = new Counter({ name: 'weir_agent_csr_total', help: 'Workload certificate requests from proxies, by outcome', labelNames: ['outcome'], registers: [o.metrics] });
  const inFlight = new Map<string, number>();
  const limit = o.maxInFlightPerPod ?? 2;
  return async (identity, msg) => {
    const pod = `${identity.namespace}/${identity.name}`;
    const refuse = (outcome: string, reason: string) => {
      counter.inc({ outcome });
      log.warn({ pod, nonce: msg.nonce, reason }, 'certificate request refused');
      return { type: 'error' as const, nonce: msg.nonce, reason };
    };
    const expected = spiffeIdOf(o.trustDomain, identity);
    let requested: string[];
    try {
      requested = (await checkCsr(msg.pem, 'csr.pem')).requestedUris;
    } catch (e) {
      return refuse('bad_csr', (e as Error).message);
    }
    if (requested.length !== 1 || requested[0] !== expected) {
      return refuse('wrong_identity', `csr.pem: asks for ${requested.join(', ') || 'no URI SAN'}, but this connection is ${expected}`);
    }
    const n = inFlight.get(pod) ?? 0;
    if (n >= limit) return refuse('busy', `more than ${limit} certificate requests in flight for ${pod}`);
    inFlight.set(pod, n + 1);
    try {
      let client: CaClient;
      try { client = await clientFor(); } catch (e) { return refuse('no_roots', `mesh roots not available yet: ${(e as Error).message}`); }
      const issued = await client.sign({ namespace: identity.namespace, name: identity.name, uid: identity.uid || undefined }, msg.pem, o.ttlSeconds);
      if (issued.spiffeId !== expected) return refuse('ca_mismatch', `CA issued ${issued.spiffeId}, expected ${expected}`);
      counter.inc({ outcome: 'issued' });
      log.info({ pod, spiffeId: issued.spiffeId, notAfter: issued.notAfter }, 'workload certificate issued');
      return { type: 'certificate', nonce: msg.nonce, chain: issued.certChain, roots: issued.roots };
    } catch (e) {
      const reason = e instanceof CaClientError ? `CA: ${e.status} ${e.reason}: ${e.message}` : `CA unreachable: ${String(e)}`;
      return refuse(e instanceof CaClientError ? 'ca_refused' : 'ca_unreachable', reason);
    } finally {
      const left = (inFlight.get(pod) ?? 1) - 1;
      if (left) inFlight.set(pod, left); else inFlight.delete(pod);
    }
  };
}

/** From the agent's settings: the roots file is read per request (tiny; a ConfigMap update then takes effect without a restart). */
export async function csrForwarderFor(ca: NonNullable<import('./config.js').AgentConfig['ca']>, logger: Logger, metrics: MetricsRegistry): Promise<CsrHandler> {
  const { readFile } = await import('node:fs/promises');
  logger.info({ ca: ca.url, trustDomain: ca.trustDomain, roots: ca.rootsFile }, 'forwarding proxies\' certificate requests to the CA');
  const opts = async (): Promise<CaClientOptions> => ({ url: ca.url, rootsPem: await readFile(ca.rootsFile, 'utf8'), tokenFile: ca.tokenFile });
  return createCsrForwarder({ ca: opts, trustDomain: ca.trustDomain, logger, metrics });
}
