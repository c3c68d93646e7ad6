// The compiled resources of control plane v2 (docs/controlplane-v2.md):
// what translators produce from Services + Istio resources and what a proxy
// applies. Everything a proxy needs is explicit here (defaults filled in by
// the translator), so proxies never re-derive Istio's defaults themselves.
import type { HeaderOps, HttpFault, HttpMatch, L4Match } from '../istio/types.js';
import type { PortProtocol } from '../istio/protocol.js';

export interface CompiledRetry {
  attempts: number;
  perTryTimeoutMs?: number;
  retryOn: string[];
  retriableStatusCodes: number[];
  backoffBaseMs: number;
}

export interface WeightedCluster { cluster: string; weight: number; headers?: HeaderOps }

export type RouteAction =
  | { route: WeightedCluster[] }
  | { redirect: { uri?: string; authority?: string; port?: number; scheme?: string; redirectCode: number } }
  | { directResponse: { status: number; body?: string } };

export interface CompiledHttpRoute {
  /** Where it came from: "ns/name#http[i]" or "default" for the implicit route. */
  source: string;
  name?: string;
  /** OR of matches; empty = every request. */
  match: HttpMatch[];
  action: RouteAction;
  timeoutMs?: number;
  /** Only on routes that forward (redirects and direct responses are answered by the proxy itself). */
  retries?: CompiledRetry;
  fault?: HttpFault;
  mirrors: { cluster: string; percentage: number }[];
  headers?: HeaderOps;
  rewrite?: { uri?: string; authority?: string; uriRegexRewrite?: { match: string; rewrite: string } };
  corsPolicy?: Record<string, unknown>;
}

export interface CompiledVirtualHost {
  /** "<fqdn>:<port>" as Envoy names it. */
  name: string;
  /** Every Host/:authority value that selects it (short names, with and without :port, VIPs). */
  domains: string[];
  routes: CompiledHttpRoute[];
}

/** One per outbound HTTP-capable port: the route table that port's router uses. */
export interface CompiledRouteTable { port: number; virtualHosts: CompiledVirtualHost[] }

export interface CompiledL4Route { source: string; match: L4Match[]; route: WeightedCluster[] }

/** Opaque TCP / TLS passthrough for one service port (VirtualService tcp/tls sections, else the service itself). */
export interface CompiledL4Service { host: string; port: number; protocol: PortProtocol; addresses: string[]; routes: CompiledL4Route[] }

export interface CompiledCluster {
  name: string;
  host: string;
  port: number;
  subset?: string;
  /** The registry key whose endpoints this cluster uses: "ns/name" of a Service, "ns/<host>" of a ServiceEntry host. */
  service?: string;
  protocol: PortProtocol;
  /** Endpoint labels a subset selects (all must match). */
  selector: Record<string, string>;
  loadBalancer: { simple: string; consistentHash?: Record<string, unknown> };
  connectionPool: { maxConnections?: number; connectTimeoutMs: number; http1MaxPendingRequests?: number; http2MaxRequests?: number; maxRequestsPerConnection?: number; maxRetries?: number; idleTimeoutMs: number };
  outlierDetection?: { consecutive5xxErrors: number; consecutiveGatewayErrors?: number; intervalMs: number; baseEjectionTimeMs: number; maxEjectionPercent: number; minHealthPercent: number };
  /** AUTO = mTLS when the endpoint runs a mesh proxy (auto mTLS), else plaintext. */
  tls: { mode: 'AUTO' | 'DISABLE' | 'SIMPLE' | 'MUTUAL' | 'ISTIO_MUTUAL'; sni?: string; subjectAltNames?: string[]; caCertificates?: string; clientCertificate?: string; privateKey?: string; insecureSkipVerify?: boolean };
  /** The DestinationRule that shaped it, if any. */
  destinationRule?: string;
}

export interface IgnoredConfig { resource: string; field: string; message: string }

/**
 * The proxy's outbound listener settings (the Sidecar that selects it, else
 * the root namespace's default). REGISTRY_ONLY: destinations outside the
 * registry get 502 NR / a reset instead of passthrough.
 */
export interface CompiledListener { name: 'outbound'; outboundTrafficPolicy: 'ALLOW_ANY' | 'REGISTRY_ONLY'; sidecar?: string }

/** Everything one proxy (in one namespace) gets. */
export interface CompiledProxyConfig {
  routes: CompiledRouteTable[];
  l4: CompiledL4Service[];
  clusters: CompiledCluster[];
  /** Config that exists but weir did not apply (unsupported fields, invalid resources): shown in config_dump. */
  ignored: IgnoredConfig[];
  /** The outbound listener (absent in static files written before it existed: ALLOW_ANY). */
  listeners?: CompiledListener[];
}
