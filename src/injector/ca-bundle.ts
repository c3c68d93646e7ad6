// Keeps the MutatingWebhookConfiguration's caBundle equal to the injector's
// CA bundle. Reconciled, not set once: `kubectl apply` of the manifests
// writes an empty caBundle back, and without it every pod CREATE in a
// selected namespace fails (failurePolicy Fail).
import type { KubeRest } from './kube-rest.js';

interface WebhookConfig { metadata?: { resourceVersion?: string }; webhooks?: { name: string; clientConfig?: { caBundle?: string } }[] }

export const WEBHOOK_CONFIG_PATH = '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations';

/** Patch every webhook of `configName` whose caBundle differs; returns how many were patched. */
export async function reconcileCaBundle(api: KubeRest, configName: string, bundlePem: string): Promise<number> {
  const path = `${WEBHOOK_CONFIG_PATH}/${encodeURIComponent(configName)}`;
  const got = await api.request<WebhookConfig>('GET', path);
  if (!got.body) throw new Error(`mutatingwebhookconfiguration ${configName} not found (apply daemonset/injector/ first)`);
  const want = Buffer.from(bundlePem).toString('base64');
  const ops: object[] = [];
  (got.body.webhooks ?? []).forEach((w, i) => {
    if (w.clientConfig?.caBundle === want) return;
    // "test" first: if the list changed under us, the patch fails instead of landing on another webhook.
    ops.push({ op: 'test', path: `/webhooks/${i}/name`, value: w.name });
    ops.push({ op: 'add', path: `/webhooks/${i}/clientConfig/caBundle`, value: want });
  });
  if (ops.length === 0) return 0;
  await api.request('PATCH', path, ops, 'application/json-patch+json');
  return ops.length / 2;
}
