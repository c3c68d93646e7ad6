// What local endpoints carry of their pod: labels (DestinationRule subsets
// and sourceLabels select on them), service account (the SPIFFE identity)
// and tlsMode (auto mTLS). Fed by the cluster-wide pod informer; kept small
// on purpose, since it holds every pod of the cluster: three fields per pod,
// and the label sets many pods share (one ReplicaSet's) held once.
import type { RegistryEndpoint } from './types.js';

export interface PodInfo { labels?: Record<string, string>; serviceAccount?: string; tlsMode?: string }

const labelId = (labels: Record<string, string>): string => JSON.stringify(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));

export class PodIndex {
  private readonly pods = new Map<string, PodInfo>();
  private readonly labelSets = new Map<string, { labels: Record<string, string>; refs: number }>();
  /** "podNs/podName" → services whose endpoints name that pod (may be stale: a rebuild then changes nothing). */
  private readonly podServices = new Map<string, Set<string>>();

  get size(): number { return this.pods.size; }

  /** Record a pod (undefined: it is gone); returns the service keys to rebuild. */
  set(namespace: string, name: string, info: PodInfo | undefined): string[] {
    const key = `${namespace}/${name}`;
    const prev = this.pods.get(key);
    if (prev?.labels) this.release(prev.labels);
    if (info) {
      const slim: PodInfo = {};
      if (info.labels && Object.keys(info.labels).length) slim.labels = this.intern(info.labels);
      if (info.serviceAccount) slim.serviceAccount = info.serviceAccount;
      if (info.tlsMode) slim.tlsMode = info.tlsMode;
      this.pods.set(key, slim);
    } else {
      this.pods.delete(key);
    }
    const svcs = [...(this.podServices.get(key) ?? [])];
    if (!info) this.podServices.delete(key);
    return svcs;
  }

  /** Fill a local endpoint from its pod (by targetRef), and remember that `serviceKey` depends on that pod. */
  fill(ep: RegistryEndpoint, serviceKey: string): void {
    const podKey = `${ep.podNamespace ?? serviceKey.split('/')[0]}/${ep.podName}`;
    let svcs = this.podServices.get(podKey);
    if (!svcs) this.podServices.set(podKey, (svcs = new Set()));
    svcs.add(serviceKey);
    const info = this.pods.get(podKey);
    if (!info) return;
    if (info.labels) ep.labels = info.labels;
    if (info.serviceAccount) ep.serviceAccount = info.serviceAccount;
    if (info.tlsMode) ep.tlsMode = info.tlsMode;
  }

  private intern(labels: Record<string, string>): Record<string, string> {
    const id = labelId(labels);
    let e = this.labelSets.get(id);
    if (!e) this.labelSets.set(id, (e = { labels: Object.fromEntries(JSON.parse(id) as [string, string][]), refs: 0 }));
    e.refs++;
    return e.labels;
  }

  private release(labels: Record<string, string>): void {
    const id = labelId(labels);
    const e = this.labelSets.get(id);
    if (e && --e.refs <= 0) this.labelSets.delete(id);
  }
}
