// Builds the compact per-node service registry from Services and
// EndpointSlices (all namespaces, as kube-proxy does). Pure: no I/O, every
// mutation returns the delta it caused (or undefined when nothing a proxy
// sees changed), and the version only moves when something did.
import type { Registry, RegistryDelta, RegistryEndpoint, RegistryService, RegistryServicePort, ServiceKind } from './types.js';
import type { KubeEndpointSlice, KubeService } from './kube-shapes.js';
import { ClusterObjects, keyOf, mergeSlices, proto } from './cluster-objects.js';
import { gatewaysByNetwork, NETWORK_LABEL, reachable, type Gateway } from './networks.js';
import { PodIndex, type PodInfo } from './pod-index.js';

function serviceKind(svc: KubeService): ServiceKind {
  const spec = svc.spec ?? {};
  if (spec.type === 'ExternalName') return 'ExternalName';
  if (spec.clusterIP === 'None') return 'Headless';
  if (spec.type === 'NodePort' || spec.type === 'LoadBalancer') return spec.type;
  return 'ClusterIP';
}

export interface RegistryBuilderOptions {
  clusterDomain?: string;
  /** How many past changes to keep for resumable deltas. */
  historyLimit?: number;
  /** Per-endpoint pod metadata (labels, serviceAccount, tlsMode) by pod namespace/name; merged into each endpoint. */
  endpointMeta?: (namespace: string, podName: string) => Pick<RegistryEndpoint, 'labels' | 'serviceAccount' | 'tlsMode'> | undefined;
}

/** How clusters relate: the local network, and whether local endpoints are preferred. */
export interface ClusterTopology {
  /** This cluster's network (unset: one flat network, every endpoint dialled directly). */
  localNetwork?: string;
  /**
   * A Service with a ready local endpoint uses only local endpoints; remote
   * ones take over when none is ready (Istio's locality failover, at
   * cluster granularity). Default false: all endpoints of all clusters.
   */
  preferLocal?: boolean;
}

/** The local cluster's name inside the builder; remote clusters use their configured names. */
export const LOCAL_CLUSTER = '';

/**
 * Services of several clusters merge by namespace/name (Istio's namespace
 * sameness): one registry entry whose endpoints are the union of every
 * cluster's, each remote endpoint tagged with its cluster. Kind and ports
 * come from the local cluster's Service when there is one, else from the
 * remote cluster that sorts first. A Service that exists only remotely keeps
 * its remote ClusterIP, unless that address is a different local Service's
 * ClusterIP: then it gets a stable VIP from 240.241.0.0/16 (next to the
 * range Istio auto-allocates ServiceEntry VIPs from), so DNS answers and
 * capture never confuse the two.
 */
export class RegistryBuilder {
  readonly clusterDomain: string;
  private version = 0;
  private readonly clusters = new Map<string, ClusterObjects>([[LOCAL_CLUSTER, new ClusterObjects()]]);
  private readonly built = new Map<string, { svc: RegistryService; json: string }>();
  /** (version, key) pairs of recent changes, oldest first, for deltas to resuming proxies. */
  private readonly history: { version: number; key: string }[] = [];
  private readonly historyLimit: number;
  /** VIPs handed to remote-only services whose ClusterIP collides with a local one (stable per key). */
  private readonly remoteVips = new Map<string, string>();
  /** Registry entries of ServiceEntry hosts ("ns/host"; no Service key has a dot in its name). */
  private readonly entries = new Map<string, RegistryService>();
  /** Pod labels / service accounts / tlsMode that local endpoints carry. */
  private readonly pods = new PodIndex();
  /** Local ClusterIP → service key, rebuilt lazily after a local Service changes. */
  private localIps?: Map<string, string>;
  private topology: ClusterTopology = {};
  /** Remote cluster → its network (unset = the local network). */
  private readonly networks = new Map<string, string>();
  /** East-west gateways by network, rebuilt lazily after a gateway Service changed. */
  private gateways?: Map<string, Gateway[]>;

  constructor(opts: RegistryBuilderOptions = {}) {
    this.clusterDomain = opts.clusterDomain ?? 'cluster.local';
    this.historyLimit = opts.historyLimit ?? 4096;
    this.endpointMeta = opts.endpointMeta;
  }
  private readonly endpointMeta: RegistryBuilderOptions['endpointMeta'];

  currentVersion(): number {
    return this.version;
  }

  private of(cluster: string): ClusterObjects {
    let c = this.clusters.get(cluster);
    if (!c) this.clusters.set(cluster, (c = new ClusterObjects()));
    return c;
  }

  /**
   * A pod's labels / service account / tlsMode changed (undefined: the pod
   * is gone). Rebuilds the services whose endpoints name it.
   */
  setPod(namespace: string, name: string, info: PodInfo | undefined): RegistryDelta | undefined {
    const svcs = this.pods.set(namespace, name, info);
    return svcs.length ? this.rebuild(svcs) : undefined;
  }

  /** Replace the ServiceEntry-derived entries (translate/service-entry-registry.ts) with `list`. */
  setServiceEntries(list: RegistryService[]): RegistryDelta | undefined {
    const keys = new Set(this.entries.keys());
    this.entries.clear();
    for (const s of list) { const k = keyOf(s.namespace, s.name); this.entries.set(k, s); keys.add(k); }
    return this.rebuild([...keys]);
  }

  /** Remote clusters that contributed anything. */
  clusterNames(): string[] { return [...this.clusters.keys()].filter((c) => c !== LOCAL_CLUSTER).sort(); }

  upsertService(svc: KubeService, cluster = LOCAL_CLUSTER): RegistryDelta | undefined {
    const ns = svc.metadata?.namespace;
    const name = svc.metadata?.name;
    if (!ns || !name) throw new Error('service: metadata.namespace and metadata.name are required');
    const key = keyOf(ns, name);
    const prev = this.of(cluster).services.get(key);
    this.of(cluster).services.set(key, svc);
    return this.rebuild([key, ...this.localChanged(cluster, svc), ...this.gatewayChanged(prev, svc)]);
  }

  /** Set how clusters relate (agent flags); everything is decided again. */
  setTopology(t: ClusterTopology): RegistryDelta | undefined {
    this.topology = { ...t };
    return this.rebuild([...this.allKeys()]);
  }

  /** A remote cluster's network (from its Secret); undefined = the local network. */
  setClusterNetwork(cluster: string, network: string | undefined): RegistryDelta | undefined {
    if ((this.networks.get(cluster) ?? undefined) === network) return undefined;
    if (network) this.networks.set(cluster, network);
    else this.networks.delete(cluster);
    return this.rebuild(this.clusters.get(cluster)?.keys() ?? []);
  }

  /** What one cluster contributed, as counted for `weir status`. */
  clusterCounts(cluster: string): { services: number; endpoints: number } {
    const c = this.clusters.get(cluster);
    if (!c) return { services: 0, endpoints: 0 };
    let endpoints = 0;
    for (const [key, slices] of c.slices) if (c.services.has(key)) endpoints += mergeSlices(slices.values()).length;
    return { services: c.services.size, endpoints };
  }

  private allKeys(): Set<string> {
    const keys = new Set<string>();
    for (const c of this.clusters.values()) for (const k of c.keys()) keys.add(k);
    return keys;
  }

  /** A gateway Service appeared, changed or went: every service's cross-network endpoints are decided again. */
  private gatewayChanged(before: KubeService | undefined, after: KubeService | undefined): string[] {
    if (!before?.metadata?.labels?.[NETWORK_LABEL] && !after?.metadata?.labels?.[NETWORK_LABEL]) return [];
    this.gateways = undefined;
    return [...this.allKeys()];
  }

  /**
   * After a local Service changed: forget the IP index, and name the
   * remote-only services whose ClusterIP the change may now collide with (or
   * free), so their VIP decision is made again.
   */
  private localChanged(cluster: string, svc?: KubeService): string[] {
    if (cluster !== LOCAL_CLUSTER) return [];
    this.localIps = undefined;
    // Only remote-cluster entries can be affected; without remote clusters skip the walk (it made a 10k-Service list O(n²)).
    if (this.clusters.size <= 1 && this.remoteVips.size === 0) return [];
    const ips = new Set([svc?.spec?.clusterIP, ...(svc?.spec?.clusterIPs ?? [])].filter((x): x is string => !!x));
    const out: string[] = [];
    for (const [k, b] of this.built) {
      if (!b.svc.clusters || b.svc.clusters.includes('local')) continue;
      if (this.remoteVips.has(k) || b.svc.clusterIPs.some((ip) => ips.has(ip))) out.push(k);
    }
    return out;
  }

  deleteService(namespace: string, name: string, cluster = LOCAL_CLUSTER): RegistryDelta | undefined {
    const key = keyOf(namespace, name);
    const gone = this.clusters.get(cluster)?.services.get(key);
    if (!gone) return undefined;
    this.clusters.get(cluster)!.services.delete(key);
    return this.rebuild([key, ...this.localChanged(cluster, gone), ...this.gatewayChanged(gone, undefined)]);
  }

  upsertEndpointSlice(slice: KubeEndpointSlice, cluster = LOCAL_CLUSTER): RegistryDelta | undefined {
    return this.rebuild(this.of(cluster).putSlice(slice));
  }

  deleteEndpointSlice(namespace: string, name: string, cluster = LOCAL_CLUSTER): RegistryDelta | undefined {
    return this.rebuild(this.clusters.get(cluster)?.detachSlice(keyOf(namespace, name)) ?? []);
  }

  /** Replace everything one cluster contributed (after a relist): one delta with whatever differs. */
  replaceAll(services: KubeService[], slices: KubeEndpointSlice[], cluster = LOCAL_CLUSTER): RegistryDelta | undefined {
    const before = this.clusters.get(cluster)?.keys() ?? [];
    const fresh = new ClusterObjects();
    this.clusters.set(cluster, fresh);
    for (const s of services) {
      const ns = s.metadata?.namespace;
      const name = s.metadata?.name;
      if (ns && name) fresh.services.set(keyOf(ns, name), s);
    }
    for (const sl of slices) if (sl.metadata?.namespace && sl.metadata?.name) fresh.putSlice(sl);
    const remoteOnly = cluster === LOCAL_CLUSTER ? (this.localIps = undefined, [...this.built.keys()]) : [];
    this.gateways = undefined;
    return this.rebuild([...new Set([...before, ...fresh.keys(), ...remoteOnly, ...this.allKeys()])]);
  }

  /** A remote cluster removed (its Secret deleted): everything it contributed goes, in one delta. */
  deleteCluster(cluster: string): RegistryDelta | undefined {
    if (cluster === LOCAL_CLUSTER) throw new Error('deleteCluster: the local cluster cannot be removed');
    const c = this.clusters.get(cluster);
    if (!c) return undefined;
    this.clusters.delete(cluster);
    this.networks.delete(cluster);
    const gatewaysGone = [...c.services.values()].some((s) => s.metadata?.labels?.[NETWORK_LABEL]);
    if (gatewaysGone) this.gateways = undefined;
    return this.rebuild(gatewaysGone ? [...c.keys(), ...this.allKeys()] : c.keys());
  }

  /** How many services the registry holds (without building a snapshot: the agent asks on every change). */
  size(): number { return this.built.size; }

  /** Every service (compiled views read them all; no copy of the map). */
  services(): IterableIterator<RegistryService> {
    return (function* (built) { for (const b of built.values()) yield b.svc; })(this.built);
  }

  snapshot(): Registry {
    const services = new Map<string, RegistryService>();
    for (const [k, v] of this.built) services.set(k, v.svc);
    return { version: this.version, clusterDomain: this.clusterDomain, services };
  }

  /** Every service as JSON text (v2 pushes splice it into lines without re-encoding). */
  serviceJsons(): string[] {
    return [...this.built.values()].map((b) => b.json);
  }

  serviceJson(key: string): string | undefined {
    return this.built.get(key)?.json;
  }

  /**
   * The delta that brings a proxy at `fromVersion` to the current version,
   * or undefined when that version is no longer covered by the history (the
   * caller then sends a snapshot).
   */
  deltaSince(fromVersion: number): RegistryDelta | undefined {
    if (fromVersion === this.version) return { fromVersion, version: this.version, upserts: [], deletes: [] };
    if (fromVersion > this.version || fromVersion < 0) return undefined;
    const oldest = this.history[0];
    // History holds every change after (oldest.version - 1); older versions cannot be resumed.
    if (!oldest || fromVersion < oldest.version - 1) return undefined;
    const keys = new Set<string>();
    for (let i = this.history.length - 1; i >= 0 && this.history[i].version > fromVersion; i--) keys.add(this.history[i].key);
    const upserts: RegistryService[] = [];
    const deletes: string[] = [];
    for (const k of [...keys].sort()) {
      const b = this.built.get(k);
      if (b) upserts.push(b.svc);
      else deletes.push(k);
    }
    return { fromVersion, version: this.version, upserts, deletes };
  }

  private buildOne(key: string): RegistryService | undefined {
    const entry = this.entries.get(key);
    if (entry) return entry;
    // The local Service decides kind and ports; else the remote cluster that sorts first.
    const owners = [...this.clusters].filter(([, c]) => c.services.has(key)).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    if (owners.length === 0) { this.remoteVips.delete(key); return undefined; } // slices without their Service are not routable
    const [primaryCluster, primary] = owners[0];
    const svc = primary.services.get(key)!;
    const [namespace, name] = key.split('/') as [string, string];
    const kind = serviceKind(svc);
    const spec = svc.spec ?? {};
    const ips = spec.clusterIPs?.length ? spec.clusterIPs : spec.clusterIP ? [spec.clusterIP] : [];
    const ports: RegistryServicePort[] = (spec.ports ?? []).map((p) => {
      const out: RegistryServicePort = { name: p.name ?? '', port: p.port, protocol: proto(p.protocol) };
      if (p.appProtocol) out.appProtocol = p.appProtocol;
      return out;
    });
    let clusterIPs = kind === 'Headless' || kind === 'ExternalName' ? [] : ips.filter((ip) => ip && ip !== 'None');
    if (primaryCluster !== LOCAL_CLUSTER && clusterIPs.some((ip) => this.localOwnerOf(ip, key))) clusterIPs = [this.vipFor(key)];
    let endpoints: RegistryEndpoint[] = [];
    if (kind !== 'ExternalName') {
      for (const [cluster, c] of this.clusters) {
        // A cluster's slices count only where that cluster has the Service too (namespace sameness needs both).
        if (!c.services.has(key)) continue;
        const eps = mergeSlices(c.slices.get(key)?.values() ?? []).map((ep) => {
          // Pod metadata (service account, mesh marker) before the cluster tag: auto mTLS reads it.
          const meta = ep.podName && this.endpointMeta?.(ep.podNamespace ?? namespace, ep.podName);
          if (meta) Object.assign(ep, meta);
          if (cluster !== LOCAL_CLUSTER) return { ...ep, cluster };
          // Labels, service account and tlsMode from the cluster-wide pod informer (pod-index.ts).
          if (ep.podName) this.pods.fill(ep, key);
          return ep;
        });
        // Headless answers are pod IPs: a gateway cannot stand in for them, so they stay as they are.
        endpoints.push(...(cluster === LOCAL_CLUSTER || kind === 'Headless' ? eps : reachable(eps, this.networks.get(cluster), this.topology.localNetwork, this.gatewayMap())));
      }
      if (this.topology.preferLocal && endpoints.some((e) => !e.cluster && e.ready)) endpoints = endpoints.filter((e) => !e.cluster);
    }
    const out: RegistryService = { namespace, name, kind, clusterIPs, ports, endpoints };
    if (owners.length > 1 || primaryCluster !== LOCAL_CLUSTER) out.clusters = owners.map(([c]) => c || 'local');
    if (kind === 'ExternalName' && spec.externalName) out.externalName = spec.externalName;
    return out;
  }

  private gatewayMap(): Map<string, Gateway[]> {
    if (!this.gateways) {
      const all: KubeService[] = [];
      for (const c of this.clusters.values()) for (const svc of c.services.values()) if (svc.metadata?.labels?.[NETWORK_LABEL]) all.push(svc);
      this.gateways = gatewaysByNetwork(all);
    }
    return this.gateways;
  }

  /** Is `ip` the ClusterIP of a local Service other than `key`? */
  private localOwnerOf(ip: string, key: string): boolean {
    if (!this.localIps) {
      this.localIps = new Map();
      for (const [k, s] of this.clusters.get(LOCAL_CLUSTER)!.services) {
        for (const a of [s.spec?.clusterIP, ...(s.spec?.clusterIPs ?? [])]) if (a && a !== 'None') this.localIps.set(a, k);
      }
    }
    const owner = this.localIps.get(ip);
    return owner !== undefined && owner !== key;
  }

  private vipFor(key: string): string {
    const have = this.remoteVips.get(key);
    if (have) return have;
    const taken = new Set(this.remoteVips.values());
    let h = 0;
    for (const ch of key) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
    for (let i = 0; i < 65_534; i++) {
      const n = ((h + i) % 65_534) + 1; // 240.241.0.1 … 240.241.255.254
      const vip = `240.241.${n >> 8}.${n & 255}`;
      if (!taken.has(vip)) { this.remoteVips.set(key, vip); return vip; }
    }
    throw new Error('remote VIP range 240.241.0.0/16 exhausted');
  }

  private rebuild(keys: string[]): RegistryDelta | undefined {
    const upserts: RegistryService[] = [];
    const deletes: string[] = [];
    for (const key of new Set(keys)) {
      const next = this.buildOne(key);
      const prev = this.built.get(key);
      if (!next) {
        if (prev) { this.built.delete(key); deletes.push(key); }
        continue;
      }
      const json = JSON.stringify(next);
      if (prev?.json === json) continue;
      this.built.set(key, { svc: next, json });
      upserts.push(next);
    }
    if (upserts.length === 0 && deletes.length === 0) return undefined;
    const fromVersion = this.version;
    this.version += 1;
    for (const s of upserts) this.history.push({ version: this.version, key: keyOf(s.namespace, s.name) });
    for (const k of deletes) this.history.push({ version: this.version, key: k });
    // Trim by whole versions so a retained version is always complete.
    while (this.history.length > this.historyLimit) {
      const v = this.history[0].version;
      while (this.history.length && this.history[0].version === v) this.history.shift();
    }
    return { fromVersion, version: this.version, upserts, deletes };
  }
}

/** Applies a delta to a registry the receiver holds (proxy side). */
export function applyDelta(reg: Registry, delta: RegistryDelta): Registry {
  if (delta.fromVersion !== reg.version) throw new Error(`delta.fromVersion: expected ${reg.version}, got ${delta.fromVersion}`);
  const services = new Map(reg.services);
  for (const k of delta.deletes) services.delete(k);
  for (const s of delta.upserts) services.set(keyOf(s.namespace, s.name), s);
  return { version: delta.version, clusterDomain: reg.clusterDomain, services };
}
