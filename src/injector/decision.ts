// Whether a pod gets the proxy: the seeds' table (namespace selector ×
// default policy × pod override) and the two safety rules no setting
// overrides (never kube-system/kube-public, never hostNetwork). Pure: the
// webhook and `weir inject` ask the same question and get one answer.
import type { ObjectMeta, PodSpec } from './k8s.js';

export type InjectionPolicy = 'enabled' | 'disabled';

/** Namespaces the proxy never goes into, whatever the labels say. */
export const NEVER_INJECT_NAMESPACES = ['kube-system', 'kube-public'];

/** Namespace labels that select a namespace for injection (Istio's, and weir's own). */
export const NAMESPACE_INJECTION_LABELS = ['istio-injection', 'weir.io/injection'];

export const INJECT_OVERRIDE = 'sidecar.istio.io/inject';

export interface DecisionInput {
  /** The pod's namespace (the AdmissionReview's request.namespace when the pod has none yet). */
  namespace: string;
  /** Did the webhook's namespaceSelector match (the API server evaluated it, or `weir inject` assumes it)? */
  namespaceSelected: boolean;
  policy: InjectionPolicy;
  /** Extra namespaces never injected (e.g. weir-system), on top of NEVER_INJECT_NAMESPACES. */
  excludeNamespaces?: string[];
  metadata: ObjectMeta;
  spec: PodSpec;
}

export type DecisionReason =
  | 'injected'
  | 'protected-namespace'
  | 'host-network'
  | 'namespace-not-selected'
  | 'pod-opted-out'
  | 'policy-disabled'
  | 'pod-opted-in';

export interface Decision { inject: boolean; reason: DecisionReason }

/**
 * The pod's own say: the `sidecar.istio.io/inject` label wins over the
 * annotation (as in Istio); "true"/"false" in any case, anything else is
 * no opinion (Istio ignores it too, and failing a pod CREATE on a typo in
 * an opt-in hint would be worse).
 */
export function podOverride(meta: ObjectMeta): boolean | undefined {
  const raw = meta.labels?.[INJECT_OVERRIDE] ?? meta.annotations?.[INJECT_OVERRIDE];
  if (raw === undefined) return undefined;
  const v = raw.trim().toLowerCase();
  if (v === 'true' || v === 'enabled' || v === 'yes') return true;
  if (v === 'false' || v === 'disabled' || v === 'no') return false;
  return undefined;
}

/**
 * The namespaceSelector as the manifests declare it: a namespace labelled
 * `istio-injection=enabled` or `weir.io/injection=enabled`. (The API server
 * evaluates it before calling the webhook; `weir inject` and tests use this.)
 */
export function namespaceSelected(nsLabels: Record<string, string> | undefined): boolean {
  return NAMESPACE_INJECTION_LABELS.some((l) => nsLabels?.[l] === 'enabled');
}

export function decideInjection(d: DecisionInput): Decision {
  if (NEVER_INJECT_NAMESPACES.includes(d.namespace) || d.excludeNamespaces?.includes(d.namespace)) return { inject: false, reason: 'protected-namespace' };
  // A hostNetwork pod shares the node's netns: capture there would take the node's traffic.
  if (d.spec.hostNetwork) return { inject: false, reason: 'host-network' };
  if (!d.namespaceSelected) return { inject: false, reason: 'namespace-not-selected' };
  const override = podOverride(d.metadata);
  if (override === false) return { inject: false, reason: 'pod-opted-out' };
  if (d.policy === 'disabled') return override === true ? { inject: true, reason: 'pod-opted-in' } : { inject: false, reason: 'policy-disabled' };
  return { inject: true, reason: 'injected' };
}
