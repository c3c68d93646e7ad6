// The per-node service registry the agent builds from Services and
// EndpointSlices and pushes to every proxy on the node. The L4 proxy routes
// with it; the DNS proxy answers cluster names from it.

export type ServiceKind = 'ClusterIP' | 'Headless' | 'ExternalName' | 'NodePort' | 'LoadBalancer';

export interface RegistryServicePort {
  name: string;
  port: number;
  protocol: 'TCP' | 'UDP' | 'SCTP';
  appProtocol?: string;
}

export interface RegistryEndpoint {
  /** One address (EndpointSlice addresses are flattened, one entry per IP). */
  ip: string;
  ready: boolean;
  serving: boolean;
  terminating: boolean;
  podName?: string;
  podNamespace?: string;
  nodeName?: string;
  hostname?: string;
  /** Service port name → endpoint port. */
  ports: { name: string; port: number; protocol: 'TCP' | 'UDP' | 'SCTP' }[];
  /** The remote cluster this endpoint is in (absent for the local cluster). */
  cluster?: string;
  /**
   * Set on an east-west gateway standing in for a cluster's endpoints on
   * another network (controlplane/networks.ts): the network behind it.
   */
  network?: string;
  /** The pod's labels (DestinationRule subsets and VirtualService sourceLabels select on them). */
  labels?: Record<string, string>;
  /** The pod's service account: its SPIFFE identity is spiffe://<td>/ns/<podNamespace>/sa/<serviceAccount>. */
  serviceAccount?: string;
  /** "istio" when the pod runs a mesh proxy (label security.istio.io/tlsMode or weir's injection marker): auto mTLS dials it with mTLS. */
  tlsMode?: string;
}

export interface RegistryService {
  namespace: string;
  name: string;
  kind: ServiceKind;
  /** ClusterIPs (v4 and/or v6); empty for headless and ExternalName. */
  clusterIPs: string[];
  ports: RegistryServicePort[];
  externalName?: string;
  endpoints: RegistryEndpoint[];
  /** Clusters that define this Service ("local" for this one), when any remote cluster does. */
  clusters?: string[];
  /**
   * Set when this entry is one host of a ServiceEntry (name = the host, which
   * no Service name can be: they have no dots). The DNS proxy answers the
   * host with clusterIPs (the entry's addresses or an auto-allocated VIP).
   */
  serviceEntry?: { host: string; exportTo: string[]; resolution: string; location: string; autoAllocated?: boolean };
}

export interface Registry {
  /** Monotonic version of the whole registry on this node. */
  version: number;
  clusterDomain: string;
  /** Keyed by "namespace/name". */
  services: Map<string, RegistryService>;
}

/** What the proxy process exposes to its listeners (L4 and DNS). */
export interface RegistryView {
  /** undefined until the first snapshot arrived: callers must then pass traffic through. */
  current(): Registry | undefined;
  on(event: 'update', listener: (r: Registry) => void): unknown;
}

/** One change of the registry: the services that are new or changed, and the keys removed. */
export interface RegistryDelta {
  /** The version this delta applies to (the receiver must be at it). */
  fromVersion: number;
  /** The version after applying it. */
  version: number;
  upserts: RegistryService[];
  /** "namespace/name" keys. */
  deletes: string[];
}
