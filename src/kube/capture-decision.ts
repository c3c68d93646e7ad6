// Which pods weir captures in sidecar mode, and why not. Pure: the agent, the
// repair loop and the CLI all ask the same question and must get one answer.
//
// A drop-in next to istio-cni must capture exactly what istio-cni captures:
// only pods that really run a mesh sidecar. So an istio-proxy counts only
// when the injector marked the pod (sidecar.istio.io/status), a gateway
// (istio-proxy run as `router`) is never captured, a pod with istio-init has
// its rules from that init container already, and DISABLE_ENVOY means there
// is no Envoy to redirect to. weir's own proxy and linkerd-proxy are always
// sidecars.
import type { Pod, Container } from './pod-types.js';
import { containerEnv, DEFAULT_PROXY_CONTAINER_NAMES, findProxyContainer, type ProxyKind } from './proxy-container.js';

export interface CaptureSettings {
  /** Namespaces never captured (the CNI conf's excludeNamespaces plus the agent's). */
  excludeNamespaces: string[];
  /** Container names that mark a pod as having the mesh proxy. */
  proxyContainerNames: string[];
  /** The agent's own pods' label selector value (app.kubernetes.io/name). */
  agentAppLabel?: string;
}

export const DEFAULT_CAPTURE_SETTINGS: CaptureSettings = {
  excludeNamespaces: ['kube-system'],
  proxyContainerNames: [...DEFAULT_PROXY_CONTAINER_NAMES],
  agentAppLabel: 'weir-agent',
};

/**
 * Short machine-friendly reasons: captured | excluded-namespace |
 * host-network | agent-pod | opted-out | no-proxy | not-injected | gateway |
 * istio-init | envoy-disabled
 */
export type CaptureReason =
  | 'captured' | 'excluded-namespace' | 'host-network' | 'agent-pod' | 'opted-out' | 'no-proxy'
  | 'not-injected' | 'gateway' | 'istio-init' | 'envoy-disabled';

export interface CaptureDecision {
  capture: boolean;
  reason: CaptureReason;
  /** The proxy container, when the pod has one. */
  proxy?: Container;
  /** Whose sidecar it is (decides ports, uid, DNS). */
  proxyKind?: ProxyKind;
}

/** Istio's init container that programs the rules itself (no CNI). */
export const ISTIO_INIT_CONTAINER = 'istio-init';
export const ISTIO_STATUS_ANNOTATION = 'sidecar.istio.io/status';

function injectionOff(pod: Pod): boolean {
  // The label wins over the annotation, as in Istio.
  const label = pod.metadata.labels?.['sidecar.istio.io/inject'];
  if (label !== undefined) return label.toLowerCase() === 'false';
  return pod.metadata.annotations?.['sidecar.istio.io/inject']?.toLowerCase() === 'false';
}

/** `proxy router` (gateway) rather than `proxy sidecar`: istio-cni looks for the word among the args. */
function isGateway(c: Container): boolean {
  return Array.isArray(c.args) && c.args.includes('router');
}

export function decideCapture(pod: Pod, settings: CaptureSettings = DEFAULT_CAPTURE_SETTINGS): CaptureDecision {
  const namespace = pod.metadata.namespace ?? 'default';
  if (settings.excludeNamespaces.includes(namespace)) return { capture: false, reason: 'excluded-namespace' };
  if (pod.spec?.hostNetwork) return { capture: false, reason: 'host-network' };
  if (settings.agentAppLabel && pod.metadata.labels?.['app.kubernetes.io/name'] === settings.agentAppLabel) {
    return { capture: false, reason: 'agent-pod' };
  }
  if (injectionOff(pod)) return { capture: false, reason: 'opted-out' };
  const found = findProxyContainer(pod, settings.proxyContainerNames);
  if (!found) return { capture: false, reason: 'no-proxy' };
  const proxy = found.container;
  const skip = (reason: CaptureReason): CaptureDecision => ({ capture: false, reason, proxy, proxyKind: found.kind });
  if (found.kind === 'istio') {
    if (pod.metadata.annotations?.[ISTIO_STATUS_ANNOTATION] === undefined) return skip('not-injected');
    if (isGateway(proxy)) return skip('gateway');
    if (containerEnv(proxy, 'DISABLE_ENVOY')?.trim().toLowerCase() === 'true') return skip('envoy-disabled');
  }
  // Rules from an init container already: capturing again would stack a second redirect on top.
  if ((pod.spec?.initContainers ?? []).some((c) => c.name === ISTIO_INIT_CONTAINER)) return skip('istio-init');
  return { capture: true, reason: 'captured', proxy, proxyKind: found.kind };
}
