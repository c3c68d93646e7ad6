// The injector's CA lives in a Secret so every replica (and every restart)
// serves certificates the same caBundle trusts. The first replica to find
// no Secret creates it; a replica that loses that race (409) reads the
// winner's. The CA is replaced (and the old one kept in the caBundle until
// it expires) when less than a fifth of its life is left.
import { createCA, certValidity, type KeyPairPem } from './certs.js';
import type { KubeRest } from './kube-rest.js';

export const CA_LIFETIME_MS = 10 * 365 * 86_400_000;

interface SecretShape { metadata?: { resourceVersion?: string }; data?: Record<string, string> }

export interface CaState { current: KeyPairPem; /** PEM bundle of every CA still trusted (current first). */ bundlePem: string }

const b64 = (s: string) => Buffer.from(s).toString('base64');
const unb64 = (s: string | undefined) => (s ? Buffer.from(s, 'base64').toString('utf8') : '');

function path(ns: string, name?: string): string {
  return `/api/v1/namespaces/${encodeURIComponent(ns)}/secrets${name ? `/${encodeURIComponent(name)}` : ''}`;
}

function fromSecret(s: SecretShape): CaState | undefined {
  const certPem = unb64(s.data?.['ca.crt']);
  const keyPem = unb64(s.data?.['ca.key']);
  if (!certPem.includes('BEGIN CERTIFICATE') || !keyPem.includes('PRIVATE KEY')) return undefined;
  return { current: { certPem, keyPem }, bundlePem: unb64(s.data?.['ca-bundle.crt']) || certPem };
}

function needsRotation(certPem: string, now: number): boolean {
  const { notBefore, notAfter } = certValidity(certPem);
  return now > notAfter.getTime() - (notAfter.getTime() - notBefore.getTime()) / 5;
}

/** Certificates of `bundle` that are still valid at `now`. */
function unexpired(bundle: string, now: number): string[] {
  return (bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [])
    .filter((pem) => certValidity(pem).notAfter.getTime() > now);
}

export async function loadOrCreateCA(api: KubeRest, namespace: string, name: string, now = Date.now()): Promise<CaState> {
  for (let attempt = 0; attempt < 3; attempt++) {
    const got = await api.request<SecretShape>('GET', path(namespace, name));
    const state = got.body ? fromSecret(got.body) : undefined;
    if (state && !needsRotation(state.current.certPem, now)) return state;
    const ca = await createCA('weir-injector-ca', CA_LIFETIME_MS, new Date(now));
    const bundle = [ca.certPem.trim(), ...(state ? unexpired(state.bundlePem, now) : [])].join('\n') + '\n';
    const data = { 'ca.crt': b64(ca.certPem), 'ca.key': b64(ca.keyPem), 'ca-bundle.crt': b64(bundle) };
    const secret = { apiVersion: 'v1', kind: 'Secret', type: 'Opaque', metadata: { name, namespace, labels: { 'app.kubernetes.io/name': 'weir-injector' } }, data };
    if (!got.body) {
      const created = await api.request('POST', path(namespace), secret);
      if (created.status === 409) continue; // another replica won: read its CA
    } else {
      // resourceVersion in the patch makes it a compare-and-swap: a concurrent rotation wins once.
      const patched = await api.request('PATCH', path(namespace, name), { metadata: { resourceVersion: got.body.metadata?.resourceVersion }, data }, 'application/merge-patch+json');
      if (patched.status === 409) continue;
    }
    return { current: { certPem: ca.certPem, keyPem: ca.keyPem }, bundlePem: bundle };
  }
  throw new Error(`secret ${namespace}/${name}: lost the CA creation race three times`);
}
