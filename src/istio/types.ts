// Istio networking resources as weir reads them (after validation: see
// read-*.ts). Field names follow Istio's API so a reader of both recognises
// them; durations are milliseconds, percentages 0..100.

export interface Meta {
  namespace: string;
  name: string;
  /** Creation time (ms since epoch); orders merges as Istio does. */
  created: number;
}

export type StringMatch = { exact: string } | { prefix: string } | { regex: string };

export interface HttpMatch {
  name?: string;
  uri?: StringMatch;
  scheme?: StringMatch;
  method?: StringMatch;
  authority?: StringMatch;
  headers?: Record<string, StringMatch>;
  queryParams?: Record<string, StringMatch>;
  withoutHeaders?: Record<string, StringMatch>;
  port?: number;
  sourceLabels?: Record<string, string>;
  sourceNamespace?: string;
  ignoreUriCase?: boolean;
}

export interface Destination { host: string; subset?: string; port?: number }
export interface WeightedDestination { destination: Destination; weight: number; headers?: HeaderOps }

export interface HeaderOps {
  request?: { set?: Record<string, string>; add?: Record<string, string>; remove?: string[] };
  response?: { set?: Record<string, string>; add?: Record<string, string>; remove?: string[] };
}

export interface HttpRetry { attempts: number; perTryTimeoutMs?: number; retryOn?: string[]; retryRemoteLocalities?: boolean }

export interface HttpFault {
  delay?: { fixedDelayMs: number; percentage: number };
  abort?: { httpStatus?: number; grpcStatus?: string; percentage: number };
}

export interface HttpRoute {
  name?: string;
  match: HttpMatch[];
  route: WeightedDestination[];
  redirect?: { uri?: string; authority?: string; port?: number; scheme?: string; redirectCode: number };
  directResponse?: { status: number; body?: string };
  rewrite?: { uri?: string; authority?: string; uriRegexRewrite?: { match: string; rewrite: string } };
  timeoutMs?: number;
  retries?: HttpRetry;
  fault?: HttpFault;
  mirrors: { destination: Destination; percentage: number }[];
  headers?: HeaderOps;
  corsPolicy?: Record<string, unknown>;
}

export interface L4Match { port?: number; destinationSubnets?: string[]; sourceLabels?: Record<string, string>; sourceNamespace?: string; sniHosts?: string[] }
export interface L4Route { match: L4Match[]; route: WeightedDestination[] }

export interface VirtualService {
  kind: 'VirtualService';
  meta: Meta;
  hosts: string[];
  gateways: string[];
  exportTo: string[];
  http: HttpRoute[];
  tcp: L4Route[];
  tls: L4Route[];
}

export interface LoadBalancer {
  simple?: 'LEAST_REQUEST' | 'ROUND_ROBIN' | 'RANDOM' | 'PASSTHROUGH' | 'UNSPECIFIED' | 'LEAST_CONN';
  consistentHash?: {
    httpHeaderName?: string;
    httpCookie?: { name: string; path?: string; ttlMs?: number };
    useSourceIp?: boolean;
    httpQueryParameterName?: string;
    ringHash?: { minimumRingSize?: number };
    maglev?: { tableSize?: number };
  };
}

export interface ConnectionPool {
  tcp?: { maxConnections?: number; connectTimeoutMs?: number };
  http?: { http1MaxPendingRequests?: number; http2MaxRequests?: number; maxRequestsPerConnection?: number; maxRetries?: number; idleTimeoutMs?: number };
}

export interface OutlierDetection {
  consecutive5xxErrors?: number;
  consecutiveGatewayErrors?: number;
  intervalMs?: number;
  baseEjectionTimeMs?: number;
  maxEjectionPercent?: number;
  minHealthPercent?: number;
}

export interface ClientTls {
  mode: 'DISABLE' | 'SIMPLE' | 'MUTUAL' | 'ISTIO_MUTUAL';
  sni?: string;
  subjectAltNames?: string[];
  /** Files in the proxy's pod (SIMPLE / MUTUAL). */
  caCertificates?: string;
  clientCertificate?: string;
  privateKey?: string;
  insecureSkipVerify?: boolean;
}

export interface TrafficPolicy {
  loadBalancer?: LoadBalancer;
  connectionPool?: ConnectionPool;
  outlierDetection?: OutlierDetection;
  tls?: ClientTls;
  portLevelSettings?: (Omit<TrafficPolicy, 'portLevelSettings'> & { port: number })[];
}

export interface DestinationRule {
  kind: 'DestinationRule';
  meta: Meta;
  host: string;
  exportTo: string[];
  trafficPolicy?: TrafficPolicy;
  subsets: { name: string; labels: Record<string, string>; trafficPolicy?: TrafficPolicy }[];
  workloadSelector?: Record<string, string>;
}

export interface ServiceEntry {
  kind: 'ServiceEntry';
  meta: Meta;
  hosts: string[];
  addresses: string[];
  ports: { number: number; protocol?: string; name: string; targetPort?: number }[];
  location: 'MESH_EXTERNAL' | 'MESH_INTERNAL';
  resolution: 'NONE' | 'STATIC' | 'DNS' | 'DNS_ROUND_ROBIN';
  endpoints: { address: string; ports?: Record<string, number>; labels?: Record<string, string>; network?: string; locality?: string; weight?: number }[];
  workloadSelector?: Record<string, string>;
  exportTo: string[];
}

export interface Sidecar {
  kind: 'Sidecar';
  meta: Meta;
  workloadSelector?: Record<string, string>;
  egress: { hosts: string[]; port?: { number: number; protocol?: string; name?: string } }[];
  outboundTrafficPolicy: 'ALLOW_ANY' | 'REGISTRY_ONLY';
}

export type IstioResource = VirtualService | DestinationRule | ServiceEntry | Sidecar;
