// The redirect plan: everything weir decided about one pod's capture, before
// it is rendered for a particular backend. Renderers and backends consume it;
// nothing downstream re-reads annotations.

export type InterceptionMode = 'REDIRECT' | 'TPROXY';

/** Inclusive port range; a single port is {from: p, to: p}. */
export interface PortRange { from: number; to: number }

/** A parsed CIDR, normalised (host bits cleared). */
export interface Cidr { family: 4 | 6; address: string; prefix: number }

export interface RedirectPlan {
  /** Bumped when the meaning of a field changes; part of the plan hash. */
  version: 1;
  mode: InterceptionMode;
  /**
   * Absent: Istio's sidecar semantics (weir's and Istio's proxy). 'linkerd':
   * linkerd-cni's outbound rules (the proxy's own traffic and loopback are
   * never captured; no 127.0.0.6 passthrough, no proxy-to-own-IP hand-off).
   */
  style?: 'linkerd';
  /** The pod's weir.io/backend annotation, when it has one; absent = the agent's default backend. */
  backend?: 'nftables' | 'iptables' | 'ebpf';
  /** Present exactly when mode is TPROXY: the mark TPROXY sets and the table its policy route lives in. */
  tproxy?: { mark: number; routeTable: number };
  proxyUid: number;
  proxyGid: number;
  /** 15006 */
  inboundPort: number;
  /** 15001 */
  outboundPort: number;
  dns: {
    enabled: boolean;
    /** 15053 */
    port: number;
  };
  inbound: {
    /** 'all' = every TCP port except excludePorts; 'list' = only includePorts; 'none' = no inbound capture. */
    capture: 'all' | 'list' | 'none';
    includePorts: PortRange[];
    /** Always contains 15008, 15020, 15021, 15090 (Linkerd: 4190, 4191). */
    excludePorts: PortRange[];
  };
  outbound: {
    /** 'all' or an explicit list ('' annotation = none captured). */
    includeCidrs: 'all' | Cidr[];
    excludeCidrs: Cidr[];
    /**
     * Ports redirected to the proxy whatever the destination address (Istio's
     * includeOutboundPorts). Empty = no such extra ports; CIDRs decide.
     */
    includePorts: PortRange[];
    excludePorts: PortRange[];
  };
  /** Interfaces whose traffic is never captured, in either direction. */
  excludeInterfaces: string[];
  /**
   * Set only by the eBPF backend's inbound-only plan (inboundOnlyPlan in
   * render-ebpf.ts), never by buildPlan: TCP/UDP between the loopback
   * addresses 127.0.0.1/127.0.0.6 (::1/::6) on lo skips conntrack (nft
   * `notrack`). There connect4 already pointed the app at 127.0.0.1:15001
   * and no such flow is NATed, but the inbound nat hooks would still make
   * conntrack track every packet of the app ↔ proxy hops. Refused with DNS
   * capture on (its lo traffic to 127.0.0.1:53 needs NAT) and with TPROXY.
   */
  untrackLoopback?: true;
}

export interface PlanSettings {
  /** Proxy uid/gid when the proxy container does not set them. Default 1337. */
  defaultProxyUid?: number;
  defaultProxyGid?: number;
  /** false: no DNS capture for any pod. Otherwise each proxy's default (weir: on; istio: ISTIO_META_DNS_CAPTURE; linkerd: off). */
  captureDns?: boolean;
  /** Names of the proxy container. Default ['weir-proxy', 'istio-proxy', 'linkerd-proxy']. */
  proxyContainerNames?: string[];
}

