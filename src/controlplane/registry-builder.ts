// Builds the compact per-node service registry from Services and
// EndpointSlices (all namespaces, as kube-proxy does). Pure: no I/O, every
// mutation returns the delta it caused (or undefined when nothing a proxy
// sees changed), and the version only moves when something did.
import type { Registry, RegistryDelta, RegistryEndpoint, RegistryService, RegistryServicePort, ServiceKind } from './types.js';
import { SERVICE_NAME_LABEL, type KubeEndpointSlice, type KubeService } from './kube-shapes.js';

type Proto = 'TCP' | 'UDP' | 'SCTP';

function proto(p: string | null | undefined): Proto {
  return p === 'UDP' || p === 'SCTP' ? p : 'TCP';
}

function keyOf(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

function serviceKind(svc: KubeService): ServiceKind {
  const spec = svc.spec ?? {};
  if (spec.type === 'ExternalName') return 'ExternalName';
  if (spec.clusterIP === 'None') return 'Headless';
  if (spec.type === 'NodePort' || spec.type === 'LoadBalancer') return spec.type;
  return 'ClusterIP';
}

/**
 * Merges the endpoints of all slices of one service. The same address can
 * appear in two slices while the EndpointSlice controller moves it; the
 * merged endpoint is ready if any copy is, and carries the union of ports.
 */
function mergeSlices(slices: Iterable<KubeEndpointSlice>): RegistryEndpoint[] {
  const byIp = new Map<string, RegistryEndpoint>();
  for (const slice of slices) {
    if (slice.addressType === 'FQDN') continue; // not routable by IP
    const ports = (slice.ports ?? [])
      .filter((p) => typeof p.port === 'number')
      .map((p) => ({ name: p.name ?? '', port: p.port as number, protocol: proto(p.protocol) }));
    for (const ep of slice.endpoints ?? []) {
      const c = ep.conditions ?? {};
      // API semantics: a nil ready means "unknown", consumers treat it as ready;
      // a nil serving follows ready; a nil terminating means false.
      const ready = c.ready ?? true;
      const serving = c.serving ?? ready;
      const terminating = c.terminating ?? false;
      for (const ip of ep.addresses ?? []) {
        const prev = byIp.get(ip);
        if (prev) {
          prev.ready ||= ready;
          prev.serving ||= serving;
          prev.terminating &&= terminating;
          for (const p of ports) if (!prev.ports.some((q) => q.name === p.name && q.protocol === p.protocol)) prev.ports.push(p);
          continue;
        }
        const out: RegistryEndpoint = { ip, ready, serving, terminating, ports: [...ports] };
        if (ep.targetRef?.kind === 'Pod' && ep.targetRef.name) {
          out.podName = ep.targetRef.name;
          out.podNamespace = ep.targetRef.namespace ?? slice.metadata?.namespace;
        }
        if (ep.nodeName) out.nodeName = ep.nodeName;
        if (ep.hostname) out.hostname = ep.hostname;
        byIp.set(ip, out);
      }
    }
  }
  // Sorted so that the same input always gives the same bytes (cheap change detection).
  return [...byIp.values()].sort((a, b) => (a.ip < b.ip ? -1 : a.ip > b.ip ? 1 : 0));
}

export interface RegistryBuilderOptions {
  clusterDomain?: string;
  /** How many past changes to keep for resumable deltas. */
  historyLimit?: number;
}

export class RegistryBuilder {
  readonly clusterDomain: string;
  private version = 0;
  private readonly services = new Map<string, KubeService>();
  /** service key → slice name → slice */
  private readonly slices = new Map<string, Map<string, KubeEndpointSlice>>();
  /** slice "ns/name" → the service key it was filed under (labels can change). */
  private readonly sliceOwner = new Map<string, string>();
  private readonly built = new Map<string, { svc: RegistryService; json: string }>();
  /** (version, key) pairs of recent changes, oldest first, for deltas to resuming proxies. */
  private readonly history: { version: number; key: string }[] = [];
  private readonly historyLimit: number;

  constructor(opts: RegistryBuilderOptions = {}) {
    this.clusterDomain = opts.clusterDomain ?? 'cluster.local';
    this.historyLimit = opts.historyLimit ?? 4096;
  }

  currentVersion(): number {
    return this.version;
  }

  upsertService(svc: KubeService): RegistryDelta | undefined {
    const ns = svc.metadata?.namespace;
    const name = svc.metadata?.name;
    if (!ns || !name) throw new Error('service: metadata.namespace and metadata.name are required');
    const key = keyOf(ns, name);
    this.services.set(key, svc);
    return this.rebuild([key]);
  }

  deleteService(namespace: string, name: string): RegistryDelta | undefined {
    const key = keyOf(namespace, name);
    if (!this.services.delete(key)) return undefined;
    return this.rebuild([key]);
  }

  upsertEndpointSlice(slice: KubeEndpointSlice): RegistryDelta | undefined {
    const ns = slice.metadata?.namespace;
    const name = slice.metadata?.name;
    if (!ns || !name) throw new Error('endpointslice: metadata.namespace and metadata.name are required');
    const sliceKey = keyOf(ns, name);
    const svcName = slice.metadata?.labels?.[SERVICE_NAME_LABEL];
    const touched = this.detachSlice(sliceKey);
    if (svcName) {
      const owner = keyOf(ns, svcName);
      let m = this.slices.get(owner);
      if (!m) this.slices.set(owner, (m = new Map()));
      m.set(sliceKey, slice);
      this.sliceOwner.set(sliceKey, owner);
      touched.push(owner);
    }
    return this.rebuild(touched);
  }

  deleteEndpointSlice(namespace: string, name: string): RegistryDelta | undefined {
    return this.rebuild(this.detachSlice(keyOf(namespace, name)));
  }

  /** Replace everything (after a relist): one delta with whatever differs. */
  replaceAll(services: KubeService[], slices: KubeEndpointSlice[]): RegistryDelta | undefined {
    const before = new Set([...this.built.keys()]);
    this.services.clear();
    this.slices.clear();
    this.sliceOwner.clear();
    for (const s of services) {
      const ns = s.metadata?.namespace;
      const name = s.metadata?.name;
      if (ns && name) this.services.set(keyOf(ns, name), s);
    }
    for (const sl of slices) {
      const ns = sl.metadata?.namespace;
      const name = sl.metadata?.name;
      const svcName = sl.metadata?.labels?.[SERVICE_NAME_LABEL];
      if (!ns || !name || !svcName) continue;
      const owner = keyOf(ns, svcName);
      let m = this.slices.get(owner);
      if (!m) this.slices.set(owner, (m = new Map()));
      m.set(keyOf(ns, name), sl);
      this.sliceOwner.set(keyOf(ns, name), owner);
    }
    return this.rebuild([...new Set([...before, ...this.services.keys()])]);
  }

  snapshot(): Registry {
    const services = new Map<string, RegistryService>();
    for (const [k, v] of this.built) services.set(k, v.svc);
    return { version: this.version, clusterDomain: this.clusterDomain, services };
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

  private detachSlice(sliceKey: string): string[] {
    const owner = this.sliceOwner.get(sliceKey);
    if (!owner) return [];
    this.sliceOwner.delete(sliceKey);
    const m = this.slices.get(owner);
    m?.delete(sliceKey);
    if (m && m.size === 0) this.slices.delete(owner);
    return [owner];
  }

  private buildOne(key: string): RegistryService | undefined {
    const svc = this.services.get(key);
    if (!svc) return undefined; // slices without their Service are not routable
    const [namespace, name] = key.split('/') as [string, string];
    const kind = serviceKind(svc);
    const spec = svc.spec ?? {};
    const ips = spec.clusterIPs?.length ? spec.clusterIPs : spec.clusterIP ? [spec.clusterIP] : [];
    const ports: RegistryServicePort[] = (spec.ports ?? []).map((p) => {
      const out: RegistryServicePort = { name: p.name ?? '', port: p.port, protocol: proto(p.protocol) };
      if (p.appProtocol) out.appProtocol = p.appProtocol;
      return out;
    });
    const out: RegistryService = {
      namespace, name, kind,
      clusterIPs: kind === 'Headless' || kind === 'ExternalName' ? [] : ips.filter((ip) => ip && ip !== 'None'),
      ports,
      endpoints: kind === 'ExternalName' ? [] : mergeSlices(this.slices.get(key)?.values() ?? []),
    };
    if (kind === 'ExternalName' && spec.externalName) out.externalName = spec.externalName;
    return out;
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
