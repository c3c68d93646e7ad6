// What the injector puts into a pod, and the knobs that change it. One
// object shared by the webhook and `weir inject`, so both inject the same pod.
import type { InjectionPolicy } from './decision.js';
import { PROXY_NODE_FLAGS } from '../proxy/node-flags.js';

export interface InjectorConfig {
  /** The weir image (it holds `weir proxy`). */
  proxyImage: string;
  /** How to run weir in that image; the proxy's args follow it. */
  proxyCommand: string[];
  policy: InjectionPolicy;
  /**
   * Native sidecar (init container with restartPolicy Always, Kubernetes ≥ 1.29)
   * or a regular container. The webhook decides from the API server's version;
   * the pod annotation sidecar.istio.io/nativeSidecar overrides per pod.
   */
  nativeSidecars: boolean;
  /** Namespaces never injected on top of kube-system and kube-public. */
  excludeNamespaces: string[];
  /** Proxy resources unless the pod's annotations say otherwise (Istio's defaults). */
  defaultResources: { requests: { cpu: string; memory: string }; limits: { cpu?: string; memory: string } };
  /** Written into sidecar.istio.io/status and service.istio.io/canonical-revision fallbacks. */
  revision: string;
  /** Proxy flags every injected proxy gets (e.g. ["--ready-without-agent", "5s"]). */
  extraProxyArgs: string[];
  /** This cluster's name, injected as ISTIO_META_CLUSTER_ID (the proxy's source_cluster label); unset = not injected. */
  clusterId?: string;
}

export const PROXY_CONTAINER = 'weir-proxy';
export const PROXY_UID = 1337;
export const STATUS_PORT = 15020;
export const READY_PORT = 15021;
export const PROMETHEUS_PORT = 15090;

export const DEFAULT_INJECTOR_CONFIG: InjectorConfig = {
  proxyImage: 'ghcr.io/weir/weir:0.1.0',
  // The proxy-only bundle (same `proxy` / `proxy-wait` arguments as the full CLI): measured idle RSS
  // 56.6 MB against 98.4 MB for `node weir.mjs proxy`, which loads the agent, CNI and Kubernetes client too.
  // V8 flags: src/proxy/node-flags.ts says why.
  proxyCommand: ['node', ...PROXY_NODE_FLAGS, '/usr/local/lib/weir/weir-proxy.mjs'],
  policy: 'enabled',
  nativeSidecars: true,
  excludeNamespaces: ['weir-system'],
  defaultResources: { requests: { cpu: '100m', memory: '128Mi' }, limits: { cpu: '2', memory: '1Gi' } },
  revision: 'default',
  extraProxyArgs: [],
};

/** Native sidecars graduated to on-by-default in Kubernetes 1.29 (KEP-753 beta). */
export function supportsNativeSidecars(major: string, minor: string): boolean {
  const ma = Number.parseInt(major, 10);
  const mi = Number.parseInt(minor.replace(/\D.*$/, ''), 10); // GKE/EKS say "29+"
  if (!Number.isFinite(ma) || !Number.isFinite(mi)) return false;
  return ma > 1 || (ma === 1 && mi >= 29);
}
