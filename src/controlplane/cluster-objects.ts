// What one cluster contributed to the registry (its Services and
// EndpointSlices, slices filed under their Service), and the merge of one
// Service's slices into registry endpoints. Used by registry-builder.ts.
import type { RegistryEndpoint } from './types.js';
import { SERVICE_NAME_LABEL, type KubeEndpointSlice, type KubeService } from './kube-shapes.js';

type Proto = 'TCP' | 'UDP' | 'SCTP';

export function proto(p: string | null | undefined): Proto {
  return p === 'UDP' || p === 'SCTP' ? p : 'TCP';
}

export function keyOf(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

/**
 * Merges the endpoints of all slices of one service. The same address can
 * appear in two slices while the EndpointSlice controller moves it; the
 * merged endpoint is ready if any copy is, and carries the union of ports.
 */
export function mergeSlices(slices: Iterable<KubeEndpointSlice>): RegistryEndpoint[] {
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
          // Copy on write: endpoints of one slice share its ports array (below).
          const more = ports.filter((p) => !prev.ports.some((q) => q.name === p.name && q.protocol === p.protocol));
          if (more.length) prev.ports = [...prev.ports, ...more];
          continue;
        }
        // One ports array per slice, shared by its endpoints (never mutated: a merge above copies):
        // at 100k endpoints a copy each was ~5 MB of the agent's heap.
        const out: RegistryEndpoint = { ip, ready, serving, terminating, ports };
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

/** What one cluster contributed: its Services and EndpointSlices. */
export class ClusterObjects {
  readonly services = new Map<string, KubeService>();
  /** service key → slice name → slice */
  readonly slices = new Map<string, Map<string, KubeEndpointSlice>>();
  /** slice "ns/name" → the service key it was filed under (labels can change). */
  readonly sliceOwner = new Map<string, string>();

  /** Files a slice under its service; returns the service keys whose endpoints changed. */
  putSlice(slice: KubeEndpointSlice): string[] {
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
    return touched;
  }

  detachSlice(sliceKey: string): string[] {
    const owner = this.sliceOwner.get(sliceKey);
    if (!owner) return [];
    this.sliceOwner.delete(sliceKey);
    const m = this.slices.get(owner);
    m?.delete(sliceKey);
    if (m && m.size === 0) this.slices.delete(owner);
    return [owner];
  }

  keys(): string[] { return [...new Set([...this.services.keys(), ...this.slices.keys()])]; }
}

