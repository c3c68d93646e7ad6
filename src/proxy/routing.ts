// Routing table the L4 listeners consult: service VIP:port (or a headless
// service's pod IP:port) → the service port and its endpoints. Rebuilt once
// per registry version, so a lookup per connection is two map reads.
import type { Registry, RegistryEndpoint, RegistryService, RegistryServicePort } from '../controlplane/types.js';
import { canonicalIp } from './addr.js';
import { InFlight } from './lb.js';

export interface Route {
  service: RegistryService;
  servicePort: RegistryServicePort;
  /** Headless: the only endpoint this IP:port means. */
  headlessIp?: string;
}

export interface Target { ip: string; port: number; endpoint: RegistryEndpoint }

/** A pod the registry knows by IP; `cluster` is set for a remote cluster's pod. */
export interface PodRef { namespace: string; name: string; cluster?: string }

function key(ip: string, port: number): string {
  return `${ip}|${port}`;
}

export class RouteTable {
  readonly version: number;
  readonly clusterDomain: string;
  private readonly routes = new Map<string, Route>();
  /** pod IP → the pod behind it (for workload labels). */
  private readonly pods = new Map<string, PodRef>();
  /** endpoint IP|targetPort → service and port (inbound: which service a connection to us was for). */
  private readonly inboundServices = new Map<string, { service: RegistryService; servicePort?: RegistryServicePort }[]>();

  /** This pod's own IP → its inbound TCP ports (only for the addresses given: a full index would cost every proxy memory at mesh scale). */
  private readonly local = new Map<string, Set<number>>();

  /** `localIps`: this pod's own addresses (canonical), whose inbound ports localInbound() lists. */
  constructor(private readonly reg: Registry | undefined, localIps: ReadonlySet<string> = new Set()) {
    this.version = reg?.version ?? -1;
    this.clusterDomain = reg?.clusterDomain ?? 'cluster.local';
    if (!reg) return;
    for (const svc of reg.services.values()) {
      for (const ep of svc.endpoints) {
        const ip = canonicalIp(ep.ip);
        if (ep.podName && ep.podNamespace) this.pods.set(ip, { namespace: ep.podNamespace, name: ep.podName, ...(ep.cluster ? { cluster: ep.cluster } : {}) });
        const mine = localIps.has(ip);
        for (const p of ep.ports) {
          if (p.protocol !== 'TCP') continue;
          if (mine) {
            const ports = this.local.get(ip) ?? new Set<number>();
            ports.add(p.port);
            this.local.set(ip, ports);
          }
          const k = key(ip, p.port);
          const list = this.inboundServices.get(k) ?? [];
          list.push({ service: svc, servicePort: svc.ports.find((sp) => sp.name === p.name) });
          this.inboundServices.set(k, list);
        }
      }
      for (const sp of svc.ports) {
        if (sp.protocol !== 'TCP') continue;
        if (svc.kind === 'Headless') {
          for (const ep of svc.endpoints) {
            const epPort = ep.ports.find((p) => p.name === sp.name && p.protocol === 'TCP');
            if (epPort) this.routes.set(key(canonicalIp(ep.ip), epPort.port), { service: svc, servicePort: sp, headlessIp: canonicalIp(ep.ip) });
          }
        } else {
          for (const vip of svc.clusterIPs) this.routes.set(key(canonicalIp(vip), sp.port), { service: svc, servicePort: sp });
        }
      }
    }
  }

  lookup(ip: string, port: number): Route | undefined {
    return this.routes.get(key(ip, port));
  }

  /** Every VIP:port (and headless pod IP:port) route, for tables pushed to native code (src/proxy/native-l4). */
  *allRoutes(): IterableIterator<{ ip: string; port: number; route: Route }> {
    for (const [k, route] of this.routes) {
      const at = k.lastIndexOf('|');
      yield { ip: k.slice(0, at), port: Number(k.slice(at + 1)), route };
    }
  }

  podByIp(ip: string): PodRef | undefined {
    return this.pods.get(ip);
  }

  serviceForInbound(ip: string, port: number): RegistryService | undefined {
    return this.inboundServices.get(key(ip, port))?.[0]?.service;
  }

  /** Every service that sends ip:port traffic (one pod port can back several services; HTTP picks by Host). */
  inboundServicesFor(ip: string, port: number): RegistryService[] {
    return (this.inboundServices.get(key(ip, port)) ?? []).map((x) => x.service);
  }

  /** The service port an inbound connection to ip:port (an endpoint's target port) was for: its protocol decides the chain. */
  inboundPort(ip: string, port: number): RegistryServicePort | undefined {
    return this.inboundServices.get(key(ip, port))?.[0]?.servicePort;
  }

  /** This pod's (ip, port) pairs some service sends inbound TCP to (for the native inbound table, src/proxy/native-l4/inbound.ts). */
  *localInbound(): IterableIterator<{ ip: string; port: number }> {
    for (const [ip, ports] of this.local) for (const port of ports) yield { ip, port };
  }

  /** A service by "namespace/name" (compiled clusters name theirs). */
  service(key: string): RegistryService | undefined {
    return this.reg?.services.get(key);
  }

  /** Every service (host routing builds its names from them). */
  services(): Iterable<RegistryService> {
    return this.reg?.services.values() ?? [];
  }

  /**
   * Endpoints a connection for this route may go to: ready ones; if none is
   * ready, serving-but-terminating ones (as kube-proxy does, so a rollout's
   * last pods still take traffic). Headless routes only ever mean one pod.
   */
  targets(route: Route): Target[] {
    const out: Target[] = [];
    const collect = (accept: (e: RegistryEndpoint) => boolean) => {
      for (const ep of route.service.endpoints) {
        if (route.headlessIp && canonicalIp(ep.ip) !== route.headlessIp) continue;
        if (!accept(ep)) continue;
        const p = ep.ports.find((x) => x.name === route.servicePort.name && x.protocol === 'TCP');
        if (p) out.push({ ip: canonicalIp(ep.ip), port: p.port, endpoint: ep });
      }
    };
    collect((e) => e.ready);
    if (out.length === 0) collect((e) => e.serving && e.terminating);
    return out;
  }
}

/**
 * Least connections with a random start: ties (the common case at low load)
 * spread evenly instead of all proxies on a node picking the same endpoint.
 */
export class LeastConnections {
  private readonly inFlight = new InFlight();

  pick(targets: Target[], exclude: Set<string>): Target | undefined {
    if (targets.length === 0) return undefined;
    const start = Math.floor(Math.random() * targets.length);
    let best: Target | undefined;
    let bestN = Infinity;
    for (let i = 0; i < targets.length; i++) {
      const t = targets[(start + i) % targets.length];
      const k = key(t.ip, t.port);
      if (exclude.has(k)) continue;
      const n = this.inFlight.activeOf(k);
      if (n < bestN) { best = t; bestN = n; }
    }
    return best;
  }

  acquire(t: Target): () => void {
    return this.inFlight.acquire(t);
  }

  activeFor(ip: string, port: number): number {
    return this.inFlight.activeOf(key(ip, port));
  }
}

export function targetKey(t: { ip: string; port: number }): string {
  return key(t.ip, t.port);
}
