// Which container of a pod is the mesh proxy: the one answer both the
// capture decision (does this pod get captured?) and the planner (whose
// securityContext gives the proxy's uid/gid?) rely on, so they can never
// disagree about which container they looked at. It also says whose sidecar
// it is, which decides ports, uid and DNS capture (see redirect/plan.ts).
import type { Container, Pod } from './pod-types.js';

/** weir's own, Istio's and Linkerd's sidecar names. */
export const DEFAULT_PROXY_CONTAINER_NAMES: readonly string[] = ['weir-proxy', 'istio-proxy', 'linkerd-proxy'];

/** Which mesh's sidecar a proxy container is. */
export type ProxyKind = 'weir' | 'istio' | 'linkerd';

/** Names with a known mesh; any other configured name is treated as weir's own proxy. */
const PROXY_KIND_BY_NAME: Record<string, ProxyKind> = { 'weir-proxy': 'weir', 'istio-proxy': 'istio', 'linkerd-proxy': 'linkerd' };

export interface ProxyContainer {
  container: Container;
  /** Where it is in the pod, for errors that name the field: "spec.containers[1]". */
  where: string;
  kind: ProxyKind;
}

/** The proxy container: a regular container or a native sidecar (init container with restartPolicy Always). */
export function findProxyContainer(pod: Pod, names: readonly string[] = DEFAULT_PROXY_CONTAINER_NAMES): ProxyContainer | undefined {
  const kind = (c: Container): ProxyKind => PROXY_KIND_BY_NAME[c.name] ?? 'weir';
  const containers = pod.spec?.containers ?? [];
  const i = containers.findIndex((c) => names.includes(c.name));
  if (i >= 0) return { container: containers[i], where: `spec.containers[${i}]`, kind: kind(containers[i]) };
  const inits = pod.spec?.initContainers ?? [];
  const j = inits.findIndex((c) => names.includes(c.name) && c.restartPolicy === 'Always');
  if (j >= 0) return { container: inits[j], where: `spec.initContainers[${j}]`, kind: kind(inits[j]) };
  return undefined;
}

/** A literal env value of the container (valueFrom is not resolvable here). */
export function containerEnv(container: Container | undefined, name: string): string | undefined {
  const e = container?.env?.find((v) => v && v.name === name);
  return typeof e?.value === 'string' ? e.value : undefined;
}
