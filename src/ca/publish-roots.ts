// The mesh roots, public half only, in ConfigMap weir-mesh-roots
// (root-cert.pem) next to the CA: node agents mount it to verify the CA's
// serving certificate, and anyone may read it to verify mesh certificates.
// Never the Secret: a node that can read the root Secret holds the root key.
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';

export const ROOTS_CONFIGMAP = 'weir-mesh-roots';

const status = (e: unknown): number | undefined => {
  const c = (e as { code?: unknown }).code;
  return typeof c === 'number' ? c : undefined;
};

/** Creates the ConfigMap, or brings its root-cert.pem up to date; returns what it did. */
export async function publishRoots(kubeConfig: KubeConfig, namespace: string, rootsPem: string): Promise<'created' | 'updated' | 'unchanged'> {
  const core = kubeConfig.makeApiClient(CoreV1Api);
  const data = { 'root-cert.pem': rootsPem };
  let existing;
  try {
    existing = await core.readNamespacedConfigMap({ namespace, name: ROOTS_CONFIGMAP });
  } catch (e) {
    if (status(e) !== 404) throw e;
  }
  if (!existing) {
    await core.createNamespacedConfigMap({ namespace, body: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: ROOTS_CONFIGMAP, namespace, labels: { 'app.kubernetes.io/part-of': 'weir', 'app.kubernetes.io/component': 'ca' } }, data } });
    return 'created';
  }
  if (existing.data?.['root-cert.pem'] === rootsPem) return 'unchanged';
  await core.patchNamespacedConfigMap({ namespace, name: ROOTS_CONFIGMAP, body: [{ op: 'add', path: '/data', value: data }] });
  return 'updated';
}
