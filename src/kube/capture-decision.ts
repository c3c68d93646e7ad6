// Which pods weir captures in sidecar mode, and why not. Pure: the agent, the
// repair loop and the CLI all ask the same question and must get one answer.
import type { Pod, Container } from './pod-types.js';
import { DEFAULT_PROXY_CONTAINER_NAMES, findProxyContainer } from './proxy-container.js';

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

export interface CaptureDecision {
  capture: boolean;
  /** Short machine-friendly reason: captured | excluded-namespace | host-network | no-proxy | opted-out | agent-pod | terminating */
  reason: string;
  /** The proxy container, when the pod has one. */
  proxy?: Container;
}

function injectionOff(pod: Pod): boolean {
  // The label wins over the annotation, as in Istio.
  const label = pod.metadata.labels?.['sidecar.istio.io/inject'];
  if (label !== undefined) return label.toLowerCase() === 'false';
  return pod.metadata.annotations?.['sidecar.istio.io/inject']?.toLowerCase() === 'false';
}

export function decideCapture(pod: Pod, settings: CaptureSettings = DEFAULT_CAPTURE_SETTINGS): CaptureDecision {
  const namespace = pod.metadata.namespace ?? 'default';
  if (settings.excludeNamespaces.includes(namespace)) return { capture: false, reason: 'excluded-namespace' };
  if (pod.spec?.hostNetwork) return { capture: false, reason: 'host-network' };
  if (settings.agentAppLabel && pod.metadata.labels?.['app.kubernetes.io/name'] === settings.agentAppLabel) {
    return { capture: false, reason: 'agent-pod' };
  }
  if (injectionOff(pod)) return { capture: false, reason: 'opted-out' };
  const proxy = findProxyContainer(pod, settings.proxyContainerNames)?.container;
  if (!proxy) return { capture: false, reason: 'no-proxy' };
  return { capture: true, reason: 'captured', proxy };
}
