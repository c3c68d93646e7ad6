// The certificate exchange on the proxy connection: the proxy's `csr` and the
// agent's answer (a `certificate`, or an `error` carrying the same nonce).
// Kept apart from the registry messages: with control plane v2 the answer
// becomes a pushed `Secret` and only this module changes.
import { MessageError } from './messages.js';
import type { CertificateMsg, CsrMsg, ErrorMsg } from './protocol.js';

/** Real CSRs are ~450 bytes of PEM; the CA refuses above 8 KiB, the agent does not even forward that. */
export const MAX_CSR_MESSAGE_PEM = 8 * 1024;
const NONCE = /^[A-Za-z0-9_-]{1,64}$/;

export function csr(o: Record<string, unknown>): CsrMsg {
  if (typeof o.nonce !== 'string' || !NONCE.test(o.nonce)) throw new MessageError('csr.nonce: must be 1-64 characters of [A-Za-z0-9_-]');
  if (typeof o.pem !== 'string' || o.pem.length === 0) throw new MessageError('csr.pem: must be a PEM "CERTIFICATE REQUEST" string');
  if (o.pem.length > MAX_CSR_MESSAGE_PEM) throw new MessageError(`csr.pem: longer than ${MAX_CSR_MESSAGE_PEM} bytes`);
  if (!o.pem.includes('-----BEGIN CERTIFICATE REQUEST-----')) throw new MessageError('csr.pem: no PEM "CERTIFICATE REQUEST" block');
  return { type: 'csr', nonce: o.nonce, pem: o.pem };
}

/** What the agent does with one csr of an identified proxy (src/agent/csr-forwarder.ts). */
export type CsrHandler = (identity: import('./protocol.js').PodIdentity, msg: CsrMsg) => Promise<CertificateMsg | ErrorMsg>;

/** The proxy's reading of an answer: certificate, or the reason there is none. */
export function certificateAnswer(msg: { type: string; nonce?: unknown; chain?: unknown; roots?: unknown; reason?: unknown }): { nonce: string; chain?: string[]; roots?: string[]; reason?: string } | undefined {
  if (typeof msg.nonce !== 'string') return undefined;
  const strings = (v: unknown) => Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'string');
  if (msg.type === 'certificate') {
    if (!strings(msg.chain) || !strings(msg.roots)) return { nonce: msg.nonce, reason: 'certificate answer lacks chain/roots' };
    return { nonce: msg.nonce, chain: msg.chain as string[], roots: msg.roots as string[] };
  }
  if (msg.type === 'error') return { nonce: msg.nonce, reason: typeof msg.reason === 'string' ? msg.reason : 'refused' };
  return undefined;
}
