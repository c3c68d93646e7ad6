// daemonset/injector/: the webhook's selectors mean what the decision table
// assumes (evaluated here against namespace and pod labels the way the API
// server evaluates label selectors), failurePolicy Fail without ever
// blocking kube-system/kube-public, names and ports that match what
// `weir injector` serves and patches, least-privilege RBAC, and a Pod
// Security "restricted" injector pod.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { validateManifest } from '../support/kube-schema.js';
import { resolveServerSettings } from '../../src/injector/options.js';
import { namespaceSelected } from '../../src/injector/decision.js';

const DIR = path.resolve(import.meta.dirname, '../../daemonset/injector');
const docs = ['rbac.yaml', 'deployment.yaml', 'webhook.yaml'].flatMap((f) => parseAllDocuments(readFileSync(path.join(DIR, f), 'utf8')).map((d) => d.toJS())) as any[];
const byKind = (k: string) => docs.filter((d) => d.kind === k);
const defaults = resolveServerSettings({}, {});

interface Selector { matchLabels?: Record<string, string>; matchExpressions?: { key: string; operator: string; values?: string[] }[] }
/** Kubernetes label selector semantics (metav1.LabelSelectorAsSelector). */
function matches(sel: Selector | undefined, labels: Record<string, string>): boolean {
  if (!sel) return true;
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of sel.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, e.key);
    if (e.operator === 'In' && !(has && e.values!.includes(labels[e.key]))) return false;
    if (e.operator === 'NotIn' && has && e.values!.includes(labels[e.key])) return false;
    if (e.operator === 'Exists' && !has) return false;
    if (e.operator === 'DoesNotExist' && has) return false;
  }
  return true;
}

const webhooks = () => byKind('MutatingWebhookConfiguration')[0].webhooks as { name: string; namespaceSelector: Selector; objectSelector: Selector; failurePolicy: string; clientConfig: any; rules: any[] }[];
function called(nsName: string, nsLabels: Record<string, string>, podLabels: Record<string, string>): string[] {
  const ns = { 'kubernetes.io/metadata.name': nsName, ...nsLabels };
  return webhooks().filter((w) => matches(w.namespaceSelector, ns) && matches(w.objectSelector, podLabels)).map((w) => w.name);
}

test('every injector manifest validates against the Kubernetes schema', () => {
  assert.ok(docs.length >= 9);
  for (const d of docs) assert.ok(validateManifest(d) || ['ServiceAccount', 'Role', 'RoleBinding', 'ClusterRole', 'ClusterRoleBinding', 'Service', 'PodDisruptionBudget'].includes(d.kind), `${d.kind} ${d.metadata.name}`);
});

test('webhooks: pod CREATE only, failurePolicy Fail, admission v1, no side effects, served by the injector Service', () => {
  const svc = byKind('Service')[0];
  assert.equal(byKind('MutatingWebhookConfiguration')[0].metadata.name, defaults.webhookConfig);
  for (const w of webhooks()) {
    assert.equal(w.failurePolicy, 'Fail', w.name);
    assert.deepEqual(w.rules, [{ operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods'], scope: 'Namespaced' }]);
    assert.deepEqual(w.clientConfig.service, { name: svc.metadata.name, namespace: 'weir-system', path: '/inject', port: svc.spec.ports[0].port });
    assert.equal(w.clientConfig.caBundle, undefined, 'the injector fills it in');
  }
  assert.equal(svc.metadata.name, defaults.service);
  const container = byKind('Deployment')[0].spec.template.spec.containers[0];
  assert.equal(svc.spec.ports[0].targetPort, defaults.port);
  assert.equal(container.ports[0].containerPort, defaults.port);
  assert.deepEqual(container.args, ['injector']);
});

test('selectors: the namespace label (Istio\'s or weir\'s) selects, exactly one webhook answers', () => {
  for (const labels of [{ 'istio-injection': 'enabled' }, { 'weir.io/injection': 'enabled' }, { 'istio-injection': 'enabled', 'weir.io/injection': 'enabled' }] as Record<string, string>[]) {
    assert.equal(called('shop', labels, {}).length, 1, JSON.stringify(labels));
    assert.equal(namespaceSelected(labels), true, 'the decision module agrees');
    assert.deepEqual(called('shop', labels, { 'sidecar.istio.io/inject': 'false' }), [], 'the pod label opts out before the call');
  }
  assert.deepEqual(called('shop', {}, {}), [], 'unlabelled namespace, unlabelled pod: not called');
  assert.deepEqual(called('shop', { 'istio-injection': 'disabled' }, {}), []);
  assert.deepEqual(called('shop', {}, { 'sidecar.istio.io/inject': 'true' }), ['object.sidecar-injector.weir.io'], 'the pod label opts in (Istio\'s object selector)');
  assert.deepEqual(called('shop', { 'istio-injection': 'disabled' }, { 'sidecar.istio.io/inject': 'true' }), [], 'a disabled namespace stays disabled');
});

test('selectors: kube-system, kube-public and weir-system are never sent to the webhook, whatever their labels', () => {
  for (const ns of ['kube-system', 'kube-public', 'weir-system']) {
    for (const labels of [{}, { 'istio-injection': 'enabled' }, { 'weir.io/injection': 'enabled' }] as Record<string, string>[]) {
      assert.deepEqual(called(ns, labels, { 'sidecar.istio.io/inject': 'true' }), [], `${ns} ${JSON.stringify(labels)}`);
    }
  }
});

test('RBAC: only the CA secret and the webhook configuration the injector patches', () => {
  const role = byKind('Role')[0];
  assert.deepEqual(role.rules, [
    { apiGroups: [''], resources: ['secrets'], resourceNames: [defaults.caSecret], verbs: ['get', 'patch'] },
    { apiGroups: [''], resources: ['secrets'], verbs: ['create'] },
  ]);
  const cr = byKind('ClusterRole')[0];
  assert.deepEqual(cr.rules, [{ apiGroups: ['admissionregistration.k8s.io'], resources: ['mutatingwebhookconfigurations'], resourceNames: [defaults.webhookConfig], verbs: ['get', 'patch'] }]);
});

test('the injector pod passes Pod Security "restricted" and is never injected itself', () => {
  const tpl = byKind('Deployment')[0].spec.template;
  assert.equal(tpl.metadata.annotations['sidecar.istio.io/inject'], 'false');
  assert.equal(tpl.spec.securityContext.runAsNonRoot, true);
  assert.equal(tpl.spec.securityContext.seccompProfile.type, 'RuntimeDefault');
  const sc = tpl.spec.containers[0].securityContext;
  assert.equal(sc.allowPrivilegeEscalation, false);
  assert.deepEqual(sc.capabilities.drop, ['ALL']);
  assert.ok(!tpl.spec.volumes?.some((v: { hostPath?: unknown }) => v.hostPath));
  assert.ok(!tpl.spec.hostNetwork);
});
