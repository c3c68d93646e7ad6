// Which protocol a service port carries, as Istio decides it: appProtocol
// first (also kubernetes.io/h2c and kubernetes.io/ws), else the port name's
// prefix before the first "-", else unknown ("auto": the proxy sniffs).
// Unnamed server-first ports are TCP: sniffing would wait for a client
// that never speaks first.
export type PortProtocol = 'http' | 'http2' | 'grpc' | 'grpc-web' | 'tcp' | 'tls' | 'https' | 'mongo' | 'redis' | 'mysql' | 'udp' | 'auto';

const PREFIXES: Record<string, PortProtocol> = {
  http: 'http', http_proxy: 'http', ws: 'http', http2: 'http2', h2c: 'http2', grpc: 'grpc', 'grpc-web': 'grpc-web', tcp: 'tcp', tls: 'tls', https: 'https',
  mongo: 'mongo', redis: 'redis', mysql: 'mysql', udp: 'udp',
};
/** Server-first protocols: on an undeclared port nothing arrives to sniff before the server speaks. */
export const SERVER_FIRST_PORTS: ReadonlySet<number> = new Set([25, 53, 3306, 27017]);

export function portProtocol(p: { name?: string; port: number; appProtocol?: string; protocol?: string }): PortProtocol {
  if (p.protocol === 'UDP') return 'udp';
  const app = p.appProtocol?.toLowerCase();
  if (app) {
    if (app === 'kubernetes.io/h2c') return 'http2';
    if (app === 'kubernetes.io/ws') return 'http';
    if (app === 'kubernetes.io/wss') return 'tls';
    if (PREFIXES[app]) return PREFIXES[app];
  }
  const name = (p.name ?? '').toLowerCase();
  const prefix = name === 'grpc-web' || name.startsWith('grpc-web-') ? 'grpc-web' : name.split('-')[0];
  if (PREFIXES[prefix]) return PREFIXES[prefix];
  return SERVER_FIRST_PORTS.has(p.port) ? 'tcp' : 'auto';
}

/** Ports whose traffic the HTTP router sees (explicitly HTTP, or sniffed as HTTP). */
export function isHttpCapable(proto: PortProtocol): boolean {
  return proto === 'http' || proto === 'http2' || proto === 'grpc' || proto === 'grpc-web' || proto === 'auto';
}

/** Ports that carry TLS the sidecar does not terminate (routed by SNI). */
export function isTlsPassthrough(proto: PortProtocol): boolean {
  return proto === 'tls' || proto === 'https';
}
