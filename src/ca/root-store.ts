// Where the CA's signing material lives, in the order Istio users expect:
//   1. a plug-in CA: Secret `cacerts` (ca-cert.pem, ca-key.pem, root-cert.pem,
//      cert-chain.pem — the layout of Istio's plug-in CA), user supplied;
//   2. else weir's self-signed root in Secret `weir-ca-root`, generated on
//      the first start. Two replicas starting at once race on the create:
//      the loser (409) reads the winner's root, so the mesh has one root.
// The material is checked (key matches, CA:TRUE, not expired, chain reaches
// a root) before the CA serves anything.
import { CoreV1Api, type KubeConfig, type V1Secret } from '@kubernetes/client-node';
import { certToPem, certsFromPem, checkCaMaterial, generateRoot, keyFromPem, keyToPem, type CaMaterial } from './pki.js';

export const PLUGIN_SECRET = 'cacerts';
export const SELF_SIGNED_SECRET = 'weir-ca-root';

export interface RootSource {
  material: CaMaterial;
  /** Where it came from, for logs and `weir ca` status. */
  origin: 'plugin' | 'self-signed-existing' | 'self-signed-created';
}

function decoded(s: V1Secret, key: string): string | undefined {
  const v = s.data?.[key];
  return v === undefined ? undefined : Buffer.from(v, 'base64').toString('utf8');
}

function need(s: V1Secret, key: string): string {
  const v = decoded(s, key);
  if (!v) throw new Error(`Secret ${s.metadata?.namespace}/${s.metadata?.name}: data.${key} is missing`);
  return v;
}

/** Reads CA material from a Secret in the plug-in layout (`cacerts` and weir's own use the same keys). */
export async function materialFromSecret(s: V1Secret): Promise<CaMaterial> {
  const where = `Secret ${s.metadata?.namespace}/${s.metadata?.name}`;
  const [cert] = certsFromPem(need(s, 'ca-cert.pem'), `${where} data.ca-cert.pem`);
  const key = await keyFromPem(need(s, 'ca-key.pem'), `${where} data.ca-key.pem`);
  const roots = certsFromPem(decoded(s, 'root-cert.pem') ?? need(s, 'ca-cert.pem'), `${where} data.root-cert.pem`);
  const chainPem = decoded(s, 'cert-chain.pem');
  const fingerprint = (c: { rawData: ArrayBuffer }): string => Buffer.from(c.rawData).toString('base64');
  const skip = new Set([cert, ...roots].map(fingerprint));
  // cert-chain.pem may repeat ca-cert and the root: keep only what lies between.
  const chain = chainPem ? certsFromPem(chainPem, `${where} data.cert-chain.pem`).filter((c) => !skip.has(fingerprint(c))) : [];
  const material = { cert, key, chain, roots };
  try {
    await checkCaMaterial(material);
  } catch (e) {
    throw new Error(`${where}: ${e instanceof Error ? e.message : String(e)}`);
  }
  return material;
}

async function secretFor(material: CaMaterial, namespace: string): Promise<V1Secret> {
  const b64 = (s: string): string => Buffer.from(s).toString('base64');
  return {
    apiVersion: 'v1', kind: 'Secret', type: 'Opaque',
    metadata: { name: SELF_SIGNED_SECRET, namespace, labels: { 'app.kubernetes.io/part-of': 'weir', 'app.kubernetes.io/component': 'ca' } },
    data: {
      'ca-cert.pem': b64(certToPem(material.cert)),
      'ca-key.pem': b64(await keyToPem(material.key)),
      'root-cert.pem': b64(material.roots.map(certToPem).join('')),
    },
  };
}

function status(e: unknown): number | undefined {
  const c = (e as { code?: unknown }).code;
  return typeof c === 'number' ? c : undefined;
}

export async function loadOrCreateRoot(opts: { kubeConfig: KubeConfig; namespace: string; trustDomain: string }): Promise<RootSource> {
  const core = opts.kubeConfig.makeApiClient(CoreV1Api);
  const read = async (name: string): Promise<V1Secret | undefined> => {
    try {
      return await core.readNamespacedSecret({ namespace: opts.namespace, name });
    } catch (e) {
      if (status(e) === 404) return undefined;
      throw e;
    }
  };
  const plugin = await read(PLUGIN_SECRET);
  if (plugin) return { material: await materialFromSecret(plugin), origin: 'plugin' };
  const existing = await read(SELF_SIGNED_SECRET);
  if (existing) return { material: await materialFromSecret(existing), origin: 'self-signed-existing' };
  const fresh = await generateRoot({ trustDomain: opts.trustDomain });
  try {
    await core.createNamespacedSecret({ namespace: opts.namespace, body: await secretFor(fresh, opts.namespace) });
    return { material: fresh, origin: 'self-signed-created' };
  } catch (e) {
    if (status(e) !== 409) throw e;
    const winner = await read(SELF_SIGNED_SECRET);
    if (!winner) throw new Error(`Secret ${opts.namespace}/${SELF_SIGNED_SECRET}: create conflicted but it cannot be read`);
    return { material: await materialFromSecret(winner), origin: 'self-signed-existing' };
  }
}
