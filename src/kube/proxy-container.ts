// Which container of a pod is the mesh proxy: the one answer both the
// capture decision (does this pod get captured?) and the planner (whose
// securityContext gives the proxy's uid/gid?) rely on, so they can never
// disagree about which container they looked at.
import type { Container, Pod } from './pod-types.js';

/** Istio's sidecar name and weir's own. */
export const DEFAULT_PROXY_CONTAINER_NAMES: readonly string[] = ['weir-proxy', 'istio-proxy'];

export interface ProxyContainer {
  container: Container;
  /** Where it is in the pod, for errors that name the field: "spec.containers[1]". */
  where: string;
}

/** The proxy container: a regular container or a native sidecar (init container with restartPolicy Always). */
export function findProxyContainer(pod: Pod, names: readonly string[]): ProxyContainer | undefined {
  const containers = pod.spec?.containers ?? [];
  const i = containers.findIndex((c) => names.includes(c.name));
  if (i >= 0) return { container: containers[i], where: `spec.containers[${i}]` };
  const inits = pod.spec?.initContainers ?? [];
  const j = inits.findIndex((c) => names.includes(c.name) && c.restartPolicy === 'Always');
  if (j >= 0) return { container: inits[j], where: `spec.initContainers[${j}]` };
  return undefined;
}
