// The shared base of the compiled kinds (views.ts SharedBase) for one
// CompiledSource: which views are layered on it, their overlays, and the
// base's compile, incremental when only VirtualServices changed since the
// last one: then only the hosts their old and new host patterns match are
// recompiled (translate/compile.ts compileHosts), their RouteTable and
// L4Service items replaced, and the Ignored kind rebuilt from the store's
// problems and each host's share. Anything else (a registry shape change, a
// DestinationRule, ServiceEntry or Sidecar, a wrapped compile) compiles the
// base whole. At 10k Services a whole base compile is ~0.7 s and ~60 MB of
// garbage; a one-host VirtualService change is milliseconds.
import type { IstioResource } from '../../istio/types.js';
import { resolveHost } from '../../istio/hosts.js';
import type { IgnoredByHost } from '../translate/compile.js';
import { BASE_NAMESPACE, namespaceOverlay } from '../translate/shared-base.js';
import type { RegistryService } from '../types.js';
import type { CompiledSource } from './compiled-source.js';
import { itemsOf, type CompiledKind } from './kinds.js';
import type { SharedBase } from './views.js';

export interface BaseViewStats { wholeCompiles: number; hostCompiles: number; hostsRecompiled: number }

export function baseView(compiled: CompiledSource, services: () => Iterable<RegistryService>, clusterDomain: string, registryShape: () => number): (SharedBase<CompiledKind> & { stats: BaseViewStats }) | undefined {
  if (!compiled.sharesBase) return undefined;
  /** What the last compile read: resources by key, the registry's shape, each host's share of Ignored. */
  let last: { resources: Map<string, IstioResource>; shape: number; ignoredByHost: IgnoredByHost } | undefined;
  const stats: BaseViewStats = { wholeCompiles: 0, hostCompiles: 0, hostsRecompiled: 0 };
  const snapshot = (): Map<string, IstioResource> => new Map((compiled.resources?.() ?? []).map((r) => [`${r.kind}/${r.meta.namespace}/${r.meta.name}`, r]));

  /** The host patterns of the VirtualServices that changed, or undefined when anything else changed. */
  function changedPatterns(now: Map<string, IstioResource>): string[] | undefined {
    if (!last || last.shape !== registryShape()) return undefined;
    const patterns = new Set<string>();
    const add = (r: IstioResource | undefined): boolean => {
      if (!r) return true;
      if (r.kind !== 'VirtualService') return false;
      for (const h of r.hosts) patterns.add(resolveHost(h, r.meta.namespace, clusterDomain));
      return true;
    };
    for (const [k, r] of now) if (last.resources.get(k) !== r && !(add(r) && add(last.resources.get(k)))) return undefined;
    for (const [k, r] of last.resources) if (!now.has(k) && !add(r)) return undefined;
    return [...patterns];
  }

  return {
    stats,
    layered: (key) => compiled.sharesBase!(key, services()),
    compile(baseItem) {
      const compiler = compiled.baseCompiler?.();
      const now = snapshot();
      const list = [...services()];
      const patterns = compiler && baseItem('Listener', 'outbound') !== undefined ? changedPatterns(now) : undefined;
      if (!compiler) {
        last = undefined;
        stats.wholeCompiles++;
        return { full: itemsOf(compiled.compile(BASE_NAMESPACE, list, clusterDomain)) };
      }
      if (!patterns) {
        const out = compiler.full(list, clusterDomain);
        last = { resources: now, shape: registryShape(), ignoredByHost: out.ignoredByHost };
        stats.wholeCompiles++;
        return { full: itemsOf(out.config) };
      }
      const clusterOf = (name: string) => { const j = baseItem('Cluster', name); return j === undefined ? undefined : JSON.parse(j) as { destinationRule?: string }; };
      const out = compiler.hosts(list, clusterDomain, patterns, clusterOf);
      const ignoredByHost = new Map(last!.ignoredByHost);
      for (const h of out.hosts) ignoredByHost.delete(h);
      for (const [h, items] of out.ignoredByHost) ignoredByHost.set(h, items);
      last = { resources: now, shape: last!.shape, ignoredByHost };
      stats.hostCompiles++;
      stats.hostsRecompiled += out.hosts.size;
      return {
        upsert: { RouteTable: out.routes.flatMap((t) => t.virtualHosts.map((virtualHost) => ({ port: t.port, virtualHost }))), L4Service: out.l4 },
        replace: { Ignored: [...out.storeIgnored, ...[...ignoredByHost.values()].flat()] },
      };
    },
    overlay: (key, baseItem) => ({ RouteTable: namespaceOverlay(services(), key, clusterDomain, (port, name) => baseItem('RouteTable', `${port}|${name}`)) }),
    drop: () => { last = undefined; },
  };
}
