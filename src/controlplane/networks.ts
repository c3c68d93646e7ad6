// Networks (Istio's multi-network model): every cluster is on a network
// (the local one from --network, a remote one from its Secret's
// `topology.istio.io/network` annotation; unset = the local network, i.e. a
// flat network where pod IPs route between clusters). Endpoints of a cluster
// on another network cannot be dialled directly: the proxy gets, instead of
// them, the address of that network's east-west gateway — a Service of any
// cluster labelled `topology.istio.io/network: <net>` (what Istio's
// eastwest-gateway chart creates), its LoadBalancer ingress or external IP
// and its `tls` port (15443 by default, Istio's AUTO_PASSTHROUGH port).
// Pure functions; the registry builder applies them.
import type { KubeService } from './kube-shapes.js';
import type { RegistryEndpoint } from './types.js';

export const NETWORK_LABEL = 'topology.istio.io/network';
/** Istio's cross-network passthrough port on the east-west gateway. */
export const GATEWAY_TLS_PORT = 15443;

export interface Gateway { ip: string; port: number }

/** The gateway addresses a Service offers its network, or undefined when it is not an east-west gateway. */
export function gatewayOf(svc: KubeService): { network: string; gateways: Gateway[] } | undefined {
  const network = svc.metadata?.labels?.[NETWORK_LABEL];
  if (!network) return undefined;
  const spec = svc.spec ?? {};
  const p = (spec.ports ?? []).find((x) => x.name === 'tls') ?? (spec.ports ?? []).find((x) => x.port === GATEWAY_TLS_PORT);
  if (!p) return undefined;
  const status = (svc as { status?: { loadBalancer?: { ingress?: { ip?: string }[] } } }).status;
  const ips = [
    ...(status?.loadBalancer?.ingress ?? []).map((i) => i.ip),
    ...((spec as { externalIPs?: string[] }).externalIPs ?? []),
  ].filter((ip): ip is string => typeof ip === 'string' && ip !== '');
  if (ips.length === 0) return undefined;
  return { network, gateways: [...new Set(ips)].map((ip) => ({ ip, port: p.port })) };
}

/**
 * The endpoints a proxy on `localNetwork` can use for one cluster's
 * endpoints on `network`: themselves when the networks match (or either is
 * unset), else one endpoint per gateway of that network (all ports mapped to
 * the gateway's port, the cluster kept so telemetry still names it), or
 * none when the network has no gateway (unreachable: better no endpoint than
 * an address that black-holes).
 */
export function reachable(endpoints: RegistryEndpoint[], network: string | undefined, localNetwork: string | undefined, gateways: Map<string, Gateway[]>): RegistryEndpoint[] {
  if (!network || !localNetwork || network === localNetwork || endpoints.length === 0) return endpoints;
  const gws = gateways.get(network) ?? [];
  const ready = endpoints.some((e) => e.ready);
  const names = new Map<string, RegistryEndpoint['ports'][number]>();
  for (const e of endpoints) for (const p of e.ports) names.set(`${p.name}/${p.protocol}`, p);
  return gws.map((g) => ({
    ip: g.ip, ready, serving: ready, terminating: false,
    ports: [...names.values()].map((p) => ({ ...p, port: g.port })),
    ...(endpoints[0].cluster ? { cluster: endpoints[0].cluster } : {}),
    network,
  }));
}

export function gatewaysByNetwork(services: Iterable<KubeService>): Map<string, Gateway[]> {
  const out = new Map<string, Gateway[]>();
  for (const s of services) {
    const g = gatewayOf(s);
    if (!g) continue;
    const have = out.get(g.network) ?? [];
    for (const x of g.gateways) if (!have.some((h) => h.ip === x.ip && h.port === x.port)) have.push(x);
    out.set(g.network, have);
  }
  for (const v of out.values()) v.sort((a, b) => (a.ip < b.ip ? -1 : a.ip > b.ip ? 1 : a.port - b.port));
  return out;
}
