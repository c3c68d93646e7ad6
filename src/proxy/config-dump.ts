// The proxy's admin /config_dump: what this proxy holds right now, in the
// sections `istioctl proxy-config` users look for (listeners, routes,
// clusters, endpoints, secrets), plus the config version it acknowledged and
// anything it received but ignored or rejected. A pure function of the
// proxy's state objects, so each data path (today L4; the HTTP chain when it
// lands) plugs its own state in without this module knowing how it works.
import { clusterName as istioClusterName } from '../istio/hosts.js';
import type { Registry, RegistryService, RegistryServicePort } from '../controlplane/types.js';
import { canonicalIp } from './addr.js';

export interface DumpListener {
  name: string;
  address: string;
  port: number;
  /** What a connection accepted here goes through. */
  chain: string;
}

export interface DumpRoute { name: string; match: { address: string; port: number }; cluster: string; service: string }

export interface DumpCluster {
  /** Istio's naming, so dashboards and muscle memory match: outbound|PORT||NAME.NS.svc.DOMAIN */
  name: string;
  service: string;
  servicePort: number;
  portName: string;
  protocol: string;
  appProtocol?: string;
  type: 'EDS' | 'STRICT_DNS' | 'ORIGINAL_DST';
  lbPolicy: string;
}

export type EndpointHealth = 'HEALTHY' | 'DRAINING' | 'UNHEALTHY';

export interface DumpEndpoint {
  cluster: string;
  service: string;
  address: string;
  port: number;
  health: EndpointHealth;
  /** true when the proxy would send a new connection here now (ready, or serving+terminating with no ready peer). */
  routable: boolean;
  pod?: string;
  activeConnections?: number;
}

export interface DumpIgnored { kind: 'service' | 'port'; name: string; reason: string }

export interface ConfigDump {
  version: {
    /** The registry version the proxy applied and acknowledged to the agent (-1: none yet). */
    acknowledged: number;
    source: string;
    connected: boolean;
    snapshots: number;
    deltas: number;
  };
  listeners: DumpListener[];
  routes: DumpRoute[];
  clusters: DumpCluster[];
  endpoints: DumpEndpoint[];
  secrets: { name: string; note: string }[];
  ignored: DumpIgnored[];
  rejected: { what: string; reason: string }[];
}

/** The state objects a dump is made of. Each field is owned by the part of the proxy named. */
export interface ConfigDumpState {
  /** The registry the data path routes with (undefined until the first snapshot). */
  registry: Registry | undefined;
  /** Control-plane client state. */
  agent: { connected: boolean; snapshots: number; deltas: number; lastRefusal?: string; socketPath: string };
  /** The listeners the proxy has bound. */
  listeners: DumpListener[];
  /** Connections open to an endpoint now (the load balancer's view). */
  activeFor?: (ip: string, port: number) => number;
  /** What the data path handles: ports of other protocols are ignored (reported, not silently dropped). */
  routesProtocol?: (p: RegistryServicePort) => boolean;
}

export function clusterName(svc: RegistryService, port: number, clusterDomain: string): string {
  return istioClusterName(port, undefined, `${svc.name}.${svc.namespace}.svc.${clusterDomain}`);
}

function hostPort(ip: string, port: number): string {
  return ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`;
}

function health(e: { ready: boolean; serving: boolean; terminating: boolean }): EndpointHealth {
  if (e.ready) return 'HEALTHY';
  return e.serving && e.terminating ? 'DRAINING' : 'UNHEALTHY';
}

export function buildConfigDump(s: ConfigDumpState): ConfigDump {
  const reg = s.registry;
  const routesProtocol = s.routesProtocol ?? ((p: RegistryServicePort) => p.protocol === 'TCP');
  const dump: ConfigDump = {
    version: { acknowledged: reg?.version ?? -1, source: `agent ${s.agent.socketPath}`, connected: s.agent.connected, snapshots: s.agent.snapshots, deltas: s.agent.deltas },
    listeners: s.listeners,
    routes: [], clusters: [], endpoints: [],
    // Honest: weir has no mTLS yet, so the proxy holds no certificates.
    secrets: [],
    ignored: [],
    rejected: s.agent.lastRefusal ? [{ what: 'control-plane session', reason: s.agent.lastRefusal }] : [],
  };
  if (!reg) return dump;
  const services = [...reg.services.values()].sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`));
  for (const svc of services) {
    const svcName = `${svc.namespace}/${svc.name}`;
    if (svc.kind === 'ExternalName') { dump.ignored.push({ kind: 'service', name: svcName, reason: `ExternalName (${svc.externalName ?? '?'}): answered by DNS only, nothing to route` }); continue; }
    for (const sp of svc.ports) {
      const cluster = clusterName(svc, sp.port, reg.clusterDomain);
      if (!routesProtocol(sp)) { dump.ignored.push({ kind: 'port', name: `${svcName}:${sp.port}/${sp.protocol}`, reason: `${sp.protocol} is not proxied (TCP only)` }); continue; }
      dump.clusters.push({ name: cluster, service: svcName, servicePort: sp.port, portName: sp.name, protocol: sp.protocol, appProtocol: sp.appProtocol, type: svc.kind === 'Headless' ? 'ORIGINAL_DST' : 'EDS', lbPolicy: 'LEAST_REQUEST' });
      if (svc.kind !== 'Headless') for (const vip of svc.clusterIPs) dump.routes.push({ name: hostPort(canonicalIp(vip), sp.port), match: { address: canonicalIp(vip), port: sp.port }, cluster, service: svcName });
      const eps = svc.endpoints.flatMap((e) => {
        const p = e.ports.find((x) => x.name === sp.name && x.protocol === sp.protocol);
        return p ? [{ e, port: p.port }] : [];
      });
      // Same rule as the data path: ready endpoints; if none, serving-but-terminating ones.
      const anyReady = eps.some(({ e }) => e.ready);
      for (const { e, port } of eps) {
        const ip = canonicalIp(e.ip);
        if (svc.kind === 'Headless') dump.routes.push({ name: hostPort(ip, port), match: { address: ip, port }, cluster, service: svcName });
        dump.endpoints.push({
          cluster, service: svcName, address: ip, port, health: health(e), routable: anyReady ? e.ready : e.serving && e.terminating,
          pod: e.podName ? `${e.podNamespace ?? svc.namespace}/${e.podName}` : undefined, activeConnections: s.activeFor?.(ip, port),
        });
      }
    }
  }
  return dump;
}
