// Contracts between the agent's parts, so that the CNI server, the
// Kubernetes side and the repair loop can be built and tested separately.
import type { Pod } from '../kube/pod-types.js';

/** Finds the Pod object for a sandbox. Kubernetes-backed in the agent (informer cache, then a direct GET with bounded retries); static in some tests. */
export interface PodResolver {
  getPod(namespace: string, name: string, uid?: string): Promise<Pod | undefined>;
}

/** What the agent remembers about each sandbox it saw (persisted under the run dir so DEL, GC and repair work across agent restarts). */
export interface SandboxRecord {
  containerId: string;
  ifName: string;
  netns: string;
  podNamespace?: string;
  podName?: string;
  podUid?: string;
  ips: string[];
  captured: boolean;
  reason: string;
  backend?: string;
  planHash?: string;
  /** ms since epoch */
  updatedAt: number;
}

/** Emitted by the capture controller for status annotations, Events and metrics. */
export interface CaptureEvent {
  kind: 'programmed' | 'skipped' | 'failed' | 'removed' | 'drift' | 'repaired';
  containerId?: string;
  podNamespace?: string;
  podName?: string;
  podUid?: string;
  backend?: string;
  durationMs?: number;
  error?: string;
}
