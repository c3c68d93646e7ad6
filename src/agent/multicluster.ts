// The agent's multi-cluster part, started from agent.ts once the proxies'
// control plane runs: tells the registry how clusters relate (network,
// local-first) and watches the remote-cluster Secrets (RemoteClusters), whose
// Services and endpoints then reach every proxy and DNS proxy on the node
// through the same registry as the local ones. Kept in its own module so the
// agent's wiring stays one call.
import type { KubeConfig } from '@kubernetes/client-node';
import type { Registry as MetricsRegistry } from 'prom-client';
import type { Logger } from '../common/log.js';
import type { AgentConfig } from './config.js';
import type { RegistryBuilder } from '../controlplane/registry-builder.js';
import type { RegistryDelta } from '../controlplane/types.js';
import { RemoteClusters, type RemoteClusterStatus } from '../controlplane/remote-clusters.js';

export interface MulticlusterView {
  clusterId: string;
  network?: string;
  secretNamespace?: string;
  remotes(): RemoteClusterStatus[];
  close(): Promise<void>;
}

export interface MulticlusterDeps {
  config: Pick<AgentConfig, 'clusterId' | 'network' | 'remoteSecretNamespace' | 'preferLocalCluster'>;
  kubeConfig: KubeConfig;
  apply(change: (b: RegistryBuilder) => RegistryDelta | undefined): void;
  logger: Logger;
  metrics: MetricsRegistry;
  /** Tests: how soon a remote without a live watch is stale, and the watch watchdog. */
  staleAfterMs?: number;
  watchdogMs?: number;
}

export async function startMulticluster(d: MulticlusterDeps): Promise<MulticlusterView> {
  const clusterId = d.config.clusterId ?? 'Kubernetes';
  const log = d.logger.child({ component: 'multicluster' });
  d.apply((b) => b.setTopology({ ...(d.config.network ? { localNetwork: d.config.network } : {}), preferLocal: d.config.preferLocalCluster ?? false }));
  let remotes: RemoteClusters | undefined;
  const ns = d.config.remoteSecretNamespace;
  if (ns) {
    remotes = new RemoteClusters({
      kubeConfig: d.kubeConfig, namespace: ns, apply: d.apply, logger: log, metrics: d.metrics, localClusterName: clusterId,
      ...(d.staleAfterMs !== undefined ? { staleAfterMs: d.staleAfterMs } : {}),
      ...(d.watchdogMs !== undefined ? { watchdogMs: d.watchdogMs } : {}),
    });
    // A missing permission or namespace is not fatal: the Secret informers retry and the local cluster is served meanwhile.
    remotes.start().catch((e: unknown) => log.error({ namespace: ns, err: (e as Error).message }, 'watching remote-cluster Secrets failed'));
    log.info({ clusterId, network: d.config.network, secretNamespace: ns }, 'watching remote-cluster Secrets');
  }
  return {
    clusterId,
    ...(d.config.network ? { network: d.config.network } : {}),
    ...(ns ? { secretNamespace: ns } : {}),
    remotes: () => remotes?.status() ?? [],
    close: async () => { await remotes?.stop(); },
  };
}
