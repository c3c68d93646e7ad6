// Node-local control plane: serves the service registry to the proxies on
// this node over a unix socket. (Placeholder until the proxy work lands.)
import type { KubeConfig } from '@kubernetes/client-node';
import type { Registry as MetricsRegistry } from 'prom-client';
import type { Logger } from '../common/log.js';

/** Who a connecting proxy is, decided from the kernel (SO_PEERCRED pid → netns/cgroup → pod). */
export interface PeerPodIdentity {
  namespace: string;
  name: string;
  uid: string;
  ips: string[];
  serviceAccount?: string;
}

export interface ControlPlaneDeps {
  kubeConfig: KubeConfig;
  /** default /var/run/weir/proxy.sock */
  socketPath: string;
  logger: Logger;
  metrics: MetricsRegistry;
  clusterDomain: string;
  /** Provided by the agent: maps a peer pid to the pod it runs in, or undefined. */
  identifyPeer(pid: number): Promise<PeerPodIdentity | undefined>;
}

export interface ControlPlane {
  ready(): boolean;
  stats(): Record<string, unknown>;
  close(): Promise<void>;
}

export async function startControlPlane(_deps: ControlPlaneDeps): Promise<ControlPlane> {
  return { ready: () => true, stats: () => ({ placeholder: true }), close: async () => {} };
}
