// Remote clusters, configured as Istio users already do it: a Secret per
// remote cluster in the agent's namespace, labelled `istio/multiCluster: "true"`
// (what `istioctl create-remote-secret` writes) or `weir.io/remote-cluster: "true"`,
// each data key a cluster name and its value a kubeconfig. Each cluster gets
// its own informers (its API being slow or down never stalls the local
// cluster or the other remotes); its Services and EndpointSlices merge into
// the registry by namespace/name. A cluster whose informers lost their API
// keeps its last data (served stale, flagged in status and a metric) until
// its Secret goes; removing the Secret removes everything it contributed.
// Kubeconfig contents are never logged.
import { createHash } from 'node:crypto';
import { CoreV1Api, KubeConfig, type V1Secret } from '@kubernetes/client-node';
import { Gauge, type Registry as MetricsRegistry } from 'prom-client';
import type { Logger } from '../common/log.js';
import { ResilientInformer, type KubeListLike } from '../kube/informer.js';
import { kubeRegistrySource, type RegistrySource } from './kube-source.js';
import type { RegistryBuilder } from './registry-builder.js';
import type { RegistryDelta } from './types.js';
import { NETWORK_LABEL } from './networks.js';
import { isClusterName } from '../common/cluster-name.js';

export const ISTIO_MULTICLUSTER_LABEL = 'istio/multiCluster';
export const WEIR_REMOTE_LABEL = 'weir.io/remote-cluster';

type Apply = (change: (b: RegistryBuilder) => RegistryDelta | undefined) => void;

export interface RemoteClusterStatus {
  cluster: string;
  secret: string;
  /** synced: live watches; stale: data served without a live watch; error: its kubeconfig is unusable (nothing served). */
  state: 'synced' | 'syncing' | 'stale' | 'error';
  network?: string;
  services: number;
  endpoints: number;
  synced: boolean;
  /** The cluster's watches have not heard from its API for staleAfterMs (or never did): data served may be old. */
  stale: boolean;
  lastError?: string;
  lastEventAt?: string;
}

interface Remote { cluster: string; secret: string; digest: string; source: RegistrySource; synced: boolean; startedAt: number; network?: string; lastFailureAt: number }
/** A cluster whose Secret entry cannot be used: reported, never served. */
interface Broken { cluster: string; secret: string; digest: string; error: string }

/**
 * Parses one Secret entry's kubeconfig; a problem is an error naming the
 * Secret and the data key, never quoting the content (it holds credentials).
 */
export function loadRemoteKubeconfig(text: string, where: string): KubeConfig {
  const kc = new KubeConfig();
  try {
    kc.loadFromString(text);
  } catch {
    throw new Error(`${where}: not a kubeconfig (YAML or JSON did not parse)`);
  }
  const ctx = kc.getCurrentContext();
  if (!ctx) throw new Error(`${where}: current-context is not set`);
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error(`${where}: current-context ${JSON.stringify(ctx)} names no cluster in clusters[]`);
  let url: URL;
  try { url = new URL(cluster.server); } catch { throw new Error(`${where}: clusters[${JSON.stringify(cluster.name)}].cluster.server is not a URL`); }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new Error(`${where}: clusters[${JSON.stringify(cluster.name)}].cluster.server must be https:// (or http://)`);
  if (!kc.getCurrentUser()) throw new Error(`${where}: current-context ${JSON.stringify(ctx)} names no user in users[]`);
  return kc;
}

export interface RemoteClustersOptions {
  kubeConfig: KubeConfig;
  namespace: string;
  apply: Apply;
  logger: Logger;
  metrics?: MetricsRegistry;
  /** A remote whose watches saw nothing for this long is stale. Default 120 s (bookmarks come about once a minute). */
  staleAfterMs?: number;
  watchdogMs?: number;
  localClusterName?: string;
}

export class RemoteClusters {
  private readonly remotes = new Map<string, Remote>();
  private readonly broken = new Map<string, Broken>();
  private readonly secrets: ResilientInformer<V1Secret>[] = [];
  private readonly staleGauge?: Gauge;

  constructor(private readonly opts: RemoteClustersOptions) {
    if (opts.metrics) {
      this.staleGauge = new Gauge({
        name: 'weir_controlplane_remote_cluster_stale', help: '1 when a remote cluster\'s data is being served without a live watch', labelNames: ['cluster'], registers: [opts.metrics],
        collect: () => { for (const s of this.status()) this.staleGauge!.set({ cluster: s.cluster }, s.stale ? 1 : 0); },
      });
    }
  }

  async start(): Promise<void> {
    const api = this.opts.kubeConfig.makeApiClient(CoreV1Api);
    for (const label of [ISTIO_MULTICLUSTER_LABEL, WEIR_REMOTE_LABEL]) {
      const labelSelector = `${label}=true`;
      const inf = new ResilientInformer<V1Secret>({
        kubeConfig: this.opts.kubeConfig, logger: this.opts.logger, name: `remote-secrets(${label})`,
        path: `/api/v1/namespaces/${this.opts.namespace}/secrets`, labelSelector,
        ...(this.opts.watchdogMs !== undefined ? { watchdogMs: this.opts.watchdogMs } : {}),
        listFn: async () => (await api.listNamespacedSecret({ namespace: this.opts.namespace, labelSelector })) as unknown as KubeListLike<V1Secret>,
      });
      inf.on('add', (s) => this.onSecret(s));
      inf.on('update', (s) => this.onSecret(s));
      inf.on('delete', (s) => this.onSecretGone(s.metadata?.name ?? ''));
      inf.on('error', () => undefined);
      this.secrets.push(inf);
    }
    // The Secrets' first list decides which remotes exist; the remotes themselves sync in the background.
    await Promise.all(this.secrets.map((i) => i.start()));
  }

  async stop(): Promise<void> {
    // Registered per instance: a stopped instance leaves the name free for the next (the agent restarting this part).
    if (this.staleGauge) this.opts.metrics?.removeSingleMetric('weir_controlplane_remote_cluster_stale');
    await Promise.all(this.secrets.map((i) => i.stop()));
    await Promise.all([...this.remotes.values()].map((r) => r.source.stop()));
    this.remotes.clear();
    this.broken.clear();
  }

  status(): RemoteClusterStatus[] {
    const now = Date.now();
    const staleAfter = this.opts.staleAfterMs ?? 120_000;
    const counts = (cluster: string): { services: number; endpoints: number } => {
      let c = { services: 0, endpoints: 0 };
      this.opts.apply((b) => { c = b.clusterCounts(cluster); return undefined; });
      return c;
    };
    const live = [...this.remotes.values()].map((r): RemoteClusterStatus => {
      const h = Object.values(r.source.health?.() ?? {});
      const last = Math.min(...h.map((x) => x.lastEventAt || 0));
      const synced = h.length > 0 && h.every((x) => x.synced);
      const lastError = h.map((x) => x.lastError).find(Boolean);
      const heardFrom = last > 0 ? last : r.startedAt;
      // A list/watch that failed after the last thing heard: the API is down now (no need to wait out staleAfter).
      const stale = !synced || now - heardFrom > staleAfter || r.lastFailureAt > last;
      // A rotated entry that broke: the old watches keep serving, the status says why the new one is not used.
      const rotated = this.broken.get(r.cluster)?.error;
      return {
        cluster: r.cluster, secret: r.secret, state: rotated ? 'error' : !stale ? 'synced' : !r.synced && now - r.startedAt <= staleAfter ? 'syncing' : 'stale',
        ...(r.network ? { network: r.network } : {}), ...counts(r.cluster), synced, lastError: rotated ?? lastError, stale,
        ...(last > 0 ? { lastEventAt: new Date(last).toISOString() } : {}),
      };
    });
    const broken = [...this.broken.values()].filter((x) => !this.remotes.has(x.cluster)).map((x): RemoteClusterStatus => ({
      cluster: x.cluster, secret: x.secret, state: 'error', services: 0, endpoints: 0, synced: false, stale: false, lastError: x.error,
    }));
    return [...live, ...broken].sort((a, b) => a.cluster.localeCompare(b.cluster));
  }

  private clustersOf(secretName: string): string[] {
    return [...this.remotes.values(), ...this.broken.values()].filter((r) => r.secret === secretName).map((r) => r.cluster);
  }

  private onSecret(s: V1Secret): void {
    const secret = s.metadata?.name ?? '';
    // The network of every cluster in this Secret (Istio reads it off the remote's system namespace; a Secret annotation says the same here).
    const network = s.metadata?.annotations?.[NETWORK_LABEL] || s.metadata?.labels?.[NETWORK_LABEL] || undefined;
    const want = new Map<string, string>();
    for (const [cluster, b64] of Object.entries(s.data ?? {})) {
      if (!isClusterName(cluster)) { this.opts.logger.warn({ secret, key: cluster }, 'remote cluster Secret: data key is not a valid cluster name; skipped'); continue; }
      if (cluster === (this.opts.localClusterName || 'local')) { this.opts.logger.warn({ secret, cluster }, 'remote cluster Secret names the local cluster; skipped'); continue; }
      want.set(cluster, Buffer.from(b64, 'base64').toString('utf8'));
    }
    for (const c of this.clustersOf(secret)) if (!want.has(c)) void this.removeCluster(c);
    for (const [cluster, kubeconfig] of want) {
      const digest = createHash('sha256').update(kubeconfig).digest('hex');
      const have = this.remotes.get(cluster) ?? this.broken.get(cluster);
      if (have && have.secret !== secret) { this.opts.logger.warn({ cluster, secret, owner: have.secret }, 'cluster already configured by another Secret; skipped'); continue; }
      if (have && have.digest === digest) {
        const r = this.remotes.get(cluster);
        if (r && r.network !== network) { r.network = network; this.opts.apply((b) => b.setClusterNetwork(cluster, network)); }
        continue;
      }
      void this.addCluster(cluster, secret, digest, kubeconfig, network);
    }
  }

  private onSecretGone(secret: string): void {
    // Labelled both ways and only one label removed: the other watch still has it, so its clusters stay.
    if (this.secrets.some((i) => i.get(this.opts.namespace, secret))) return;
    for (const c of this.clustersOf(secret)) void this.removeCluster(c);
  }

  private async addCluster(cluster: string, secret: string, digest: string, kubeconfig: string, network: string | undefined): Promise<void> {
    const where = `Secret ${this.opts.namespace}/${secret} data[${JSON.stringify(cluster)}]`;
    let kc: KubeConfig;
    try {
      kc = loadRemoteKubeconfig(kubeconfig, where);
    } catch (e) {
      // This cluster only: the others (and its previous data, if any) are left alone until the entry is fixed.
      const error = (e as Error).message;
      this.broken.set(cluster, { cluster, secret, digest, error });
      this.opts.logger.error({ cluster, secret, err: error }, 'remote cluster skipped: its kubeconfig cannot be used');
      return;
    }
    this.broken.delete(cluster);
    // A rotated kubeconfig: the new watches relist and replace the old data; nothing is dropped in between.
    const old = this.remotes.get(cluster);
    if (old) await old.source.stop();
    this.opts.apply((b) => b.setClusterNetwork(cluster, network));
    const remote: Remote = { cluster, secret, digest, source: undefined as unknown as RegistrySource, synced: false, startedAt: Date.now(), lastFailureAt: 0, ...(network ? { network } : {}) };
    // Only the current remote of this name writes: a stopping source's late events (removal, rotation) never land.
    const apply: Apply = (change) => { if (this.remotes.get(cluster) === remote) this.opts.apply(change); };
    remote.source = kubeRegistrySource(kc, apply, this.opts.logger.child({ cluster }), {
      cluster, onError: () => { remote.lastFailureAt = Date.now(); }, ...(this.opts.watchdogMs !== undefined ? { watchdogMs: this.opts.watchdogMs } : {}),
    });
    const source = remote.source;
    this.remotes.set(cluster, remote);
    this.opts.logger.info({ cluster, secret, network, server: kc.getCurrentCluster()?.server }, 'remote cluster added');
    source.start().then(() => { remote.synced = true; this.opts.logger.info({ cluster }, 'remote cluster synced'); }, () => undefined);
  }

  private async removeCluster(cluster: string): Promise<void> {
    this.broken.delete(cluster);
    const r = this.remotes.get(cluster);
    if (!r) return;
    this.remotes.delete(cluster);
    // At once, before the watches are stopped: a re-add under the same name (its Secret back) must not lose its data to this.
    this.opts.apply((b) => b.deleteCluster(cluster));
    this.opts.logger.info({ cluster, secret: r.secret }, 'remote cluster removed');
    await r.source.stop();
  }
}
