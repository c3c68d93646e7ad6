// What a Service port says it speaks, the way Istio reads it: appProtocol
// first, else the port name's prefix before the first "-". Unknown or
// absent means "sniff the first bytes". Server-first ports (SMTP, DNS,
// MySQL, MongoDB) are never sniffed when undeclared: the client waits for
// the server, so there is nothing to look at.
export type DeclaredProtocol = 'http' | 'http2' | 'grpc' | 'tcp' | 'tls';

const BY_NAME: Record<string, DeclaredProtocol> = {
  http: 'http', http_proxy: 'http', 'kubernetes.io/ws': 'http', ws: 'http',
  http2: 'http2', h2c: 'http2', 'kubernetes.io/h2c': 'http2',
  grpc: 'grpc', 'grpc-web': 'grpc',
  tcp: 'tcp', udp: 'tcp', mongo: 'tcp', redis: 'tcp', mysql: 'tcp',
  tls: 'tls', https: 'tls', 'kubernetes.io/wss': 'tls',
};

export const SERVER_FIRST_PORTS: ReadonlySet<number> = new Set([25, 53, 3306, 27017]);

export function declaredProtocol(port: { name?: string; appProtocol?: string } | undefined): DeclaredProtocol | undefined {
  if (!port) return undefined;
  const app = port.appProtocol?.toLowerCase();
  if (app && BY_NAME[app]) return BY_NAME[app];
  const name = port.name?.toLowerCase() ?? '';
  // "grpc-web" is a name of its own; everything else is prefix-before-dash.
  if (name === 'grpc-web' || name.startsWith('grpc-web-')) return 'grpc';
  const prefix = name.split('-')[0];
  return BY_NAME[prefix];
}

/** Whether the proxy speaks HTTP/2 to an app whose port declares this. */
export function upstreamIsH2(p: DeclaredProtocol | undefined): boolean {
  return p === 'http2' || p === 'grpc';
}
