// What the control plane compiles v2 views from besides the registry: the
// Istio resources (IstioConfigStore, fed by IstioConfigSource) and how a
// proxy maps to a shared view. Without Istio installed the store is simply
// empty and the views carry what Services alone imply.
import type { IstioConfigStore } from '../istio-source.js';
import type { PodIdentity } from '../protocol.js';
import type { CompiledProxyConfig, IgnoredConfig } from '../resources.js';
import { compileAttributed, compileHosts, compileProxyConfig, type IgnoredByHost } from '../translate/compile.js';
import { BASE_NAMESPACE, compiledWhole } from '../translate/shared-base.js';
import { EgressScope, selectSidecar, sidecarForView } from '../translate/sidecar-scope.js';
import type { RegistryScope } from './scoped-registry.js';
import type { RegistryService } from '../types.js';
import type { IstioResource, ServiceEntry, Sidecar } from '../../istio/types.js';
import { serviceEntryRegistry, VipAllocator } from '../translate/service-entry-registry.js';

export interface CompiledSource {
  /** The shared view a proxy gets: its namespace, plus the Sidecar that selects it by labels, if one does. */
  viewKey(identity: PodIdentity): string;
  compile(key: string, services: RegistryService[], clusterDomain: string): CompiledProxyConfig;
  /**
   * Is view `key` the shared base (compile(BASE_NAMESPACE)) plus the bare names of its own
   * Services (translate/shared-base.ts), rather than compiled whole? Without it every view is compiled whole.
   */
  sharesBase?(key: string, services: Iterable<RegistryService>): boolean;
  /**
   * The base compiled with which host's routes added which `ignored` entries, and, given
   * VirtualService host patterns, just those hosts' routes (incremental compiles, v2/base-view.ts).
   * Undefined when this source's compile() is not its own (a wrapper replaced it): compile whole then.
   */
  baseCompiler?(): BaseCompiler | undefined;
  /** The Istio resources the compiles read (base-view.ts: what changed since the last compile). */
  resources?(): IstioResource[];
  /** Istio resources changed. */
  onChange(cb: () => void): void;
  /** The registry entries of ServiceEntry hosts (DNS answers, auto-allocated VIPs). */
  registryEntries?(): RegistryService[];
  /** What of the node registry a view's proxies get; undefined = all of it (no Sidecar egress applies). */
  registryScope?(key: string, clusterDomain: string): RegistryScope | undefined;
}

export interface BaseCompiler {
  full(services: RegistryService[], clusterDomain: string): { config: CompiledProxyConfig; ignoredByHost: IgnoredByHost };
  hosts(services: RegistryService[], clusterDomain: string, patterns: readonly string[], clusterOf: (name: string) => { destinationRule?: string } | undefined):
    ReturnType<typeof compileHosts> & { storeIgnored: IgnoredConfig[] };
}

export interface IstioCompiledSourceOptions {
  store: IstioConfigStore;
  rootNamespace: string;
  /** The labels of a pod on this node (Sidecar workloadSelector); undefined when unknown. */
  podLabels?(namespace: string, name: string): Record<string, string> | undefined;
}

/** View keys are "ns" or "ns#sidecarName" (a Sidecar in ns whose workloadSelector picked the pod). */
export function istioCompiledSource(o: IstioCompiledSourceOptions): CompiledSource {
  const vips = new VipAllocator();
  const source: CompiledSource = {
    registryEntries: () => serviceEntryRegistry(o.store.resources().filter((r): r is ServiceEntry => r.kind === 'ServiceEntry'), vips),
    viewKey(identity) {
      const labels = o.podLabels?.(identity.namespace, identity.name) ?? {};
      const sc = selectSidecar(o.store.resources(), identity.namespace, o.rootNamespace, labels);
      return sc?.workloadSelector ? `${identity.namespace}#${sc.meta.name}` : identity.namespace;
    },
    compile(key, services, clusterDomain) {
      const [proxyNamespace, sidecarName] = key.split('#');
      return compileProxyConfig({ ...inputOf(o, services, clusterDomain), proxyNamespace, sidecarName });
    },
    baseCompiler() {
      if (this.compile !== source.compile) return undefined;
      return {
        full: (services, clusterDomain) => compileAttributed({ ...inputOf(o, services, clusterDomain), proxyNamespace: BASE_NAMESPACE }),
        hosts(services, clusterDomain, patterns, clusterOf) {
          const input = { ...inputOf(o, services, clusterDomain), proxyNamespace: BASE_NAMESPACE };
          return { ...compileHosts(input, patterns, clusterOf), storeIgnored: input.ignored };
        },
      };
    },
    resources: () => o.store.resources(),
    sharesBase(key, services) {
      const [ns, sidecarName] = key.split('#');
      return sidecarName === undefined && !compiledWhole(o.store.resources(), services, ns, o.rootNamespace);
    },
    registryScope(key, clusterDomain) {
      const [ns, sidecarName] = key.split('#');
      const sidecar = sidecarForView(o.store.resources(), ns, o.rootNamespace, sidecarName);
      return sidecar && sidecar.egress.length ? sidecarRegistryScope(sidecar, ns, clusterDomain) : undefined;
    },
    onChange(cb) { o.store.on('change', cb); },
  };
  return source;
}

/** What every view's compile reads: the registry's Services, the Istio resources, and the problems found reading them. */
function inputOf(o: IstioCompiledSourceOptions, services: RegistryService[], clusterDomain: string) {
  const ignored: IgnoredConfig[] = [];
  for (const r of o.store.rejectedResources()) {
    for (const p of r.problems) if (p.severity === 'error') ignored.push({ resource: `${r.kind} ${r.namespace}/${r.name}`, field: p.field, message: `rejected: ${p.message}` });
  }
  for (const n of o.store.notesFor()) {
    const [kind, ns, name] = n.key.split('/');
    for (const p of n.problems) ignored.push({ resource: `${kind} ${ns}/${name}`, field: p.field, message: p.message });
  }
  // ServiceEntry hosts are in the registry too (for DNS): the translators read them from the ServiceEntries themselves,
  // with the auto-allocated VIPs the registry entries carry.
  const autoVips = new Map<string, string>();
  for (const s of services) if (s.serviceEntry?.autoAllocated) autoVips.set(s.serviceEntry.host, s.clusterIPs[0]);
  return { clusterDomain, rootNamespace: o.rootNamespace, services: services.filter((s) => !s.serviceEntry), resources: o.store.resources(), ignored, autoVips };
}

/**
 * A Sidecar's egress hosts as a registry filter for proxies in `namespace`:
 * a Service (or ServiceEntry host) visible on some port, with only the ports
 * it is visible on; and every service one of whose endpoints is a pod of the
 * namespace, whole (the proxy's inbound side needs it, Sidecar or not).
 */
export function sidecarRegistryScope(sidecar: Sidecar, namespace: string, clusterDomain: string): RegistryScope {
  const scope = new EgressScope(sidecar, namespace, clusterDomain);
  const ports = scope.hasPortListeners();
  return {
    signature: JSON.stringify([namespace, sidecar.meta.namespace, sidecar.meta.name, sidecar.egress]),
    filter(svc) {
      const host = svc.serviceEntry ? svc.serviceEntry.host.toLowerCase() : `${svc.name}.${svc.namespace}.svc.${clusterDomain}`;
      if (svc.endpoints.some((e) => e.podNamespace === namespace)) return svc;
      if (!scope.allowsHost(svc.namespace, host)) return undefined;
      if (!ports || svc.ports.length === 0) return svc;
      const visible = svc.ports.filter((p) => scope.allowsHost(svc.namespace, host, p.port));
      if (visible.length === 0) return undefined;
      return visible.length === svc.ports.length ? svc : { ...svc, ports: visible };
    },
  };
}
