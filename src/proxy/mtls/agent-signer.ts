// A WorkloadIdentity signer over the node-local control-plane connection:
// the CSR goes to the agent as a `csr` message with a fresh nonce, and the
// answer with the same nonce (certificate or error) settles it. While the
// agent is unreachable the request waits for the next connection, up to the
// timeout; the caller (mesh-identity.ts) retries with backoff.
import { randomBytes } from 'node:crypto';
import { certificateAnswer } from '../../controlplane/csr-messages.js';
import type { Signer } from '../../mtls/workload-identity.js';
import type { RegistryClient } from '../registry-client.js';

export class SignerError extends Error {}

export function agentSigner(client: RegistryClient, timeoutMs = 15_000): Signer {
  return (csrPem) => new Promise((resolve, reject) => {
    const nonce = randomBytes(12).toString('base64url');
    let sent = false;
    const cleanup = () => { clearTimeout(timer); client.off('certificate-answer', onAnswer); client.off('connected', trySend); };
    const onAnswer = (msg: Parameters<typeof certificateAnswer>[0]) => {
      const a = certificateAnswer(msg);
      if (!a || a.nonce !== nonce) return;
      cleanup();
      if (a.chain && a.roots) resolve({ certChain: a.chain, roots: a.roots });
      else reject(new SignerError(a.reason ?? 'refused'));
    };
    const trySend = () => { if (!sent) sent = client.send({ type: 'csr', nonce, pem: csrPem }); };
    const timer = setTimeout(() => { cleanup(); reject(new SignerError(sent ? `no answer to the certificate request within ${timeoutMs} ms` : 'not connected to the node agent')); }, timeoutMs);
    timer.unref();
    client.on('certificate-answer', onAnswer);
    client.on('connected', trySend);
    trySend();
  });
}
