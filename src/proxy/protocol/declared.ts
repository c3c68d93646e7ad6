// What a Service port says it speaks, the way Istio reads it (appProtocol
// first, else the port name's prefix before the first "-"), as the proxy's
// chains need it: one of five kinds, or undefined for "sniff the first
// bytes". The reading itself is istio/protocol.ts's, shared with the config
// compiler; server-first ports are the caller's decision (select.ts).
import { portProtocol, SERVER_FIRST_PORTS, type PortProtocol } from '../../istio/protocol.js';

export type DeclaredProtocol = 'http' | 'http2' | 'grpc' | 'tcp' | 'tls';

export { SERVER_FIRST_PORTS };

const KIND: Record<PortProtocol, DeclaredProtocol | undefined> = {
  http: 'http', http2: 'http2', grpc: 'grpc', 'grpc-web': 'grpc',
  tcp: 'tcp', udp: 'tcp', mongo: 'tcp', redis: 'tcp', mysql: 'tcp',
  tls: 'tls', https: 'tls', auto: undefined,
};

export function declaredProtocol(port: { name?: string; appProtocol?: string } | undefined): DeclaredProtocol | undefined {
  // Port 0: never a server-first port, so an undeclared port reads as "auto" here.
  return port ? KIND[portProtocol({ name: port.name, appProtocol: port.appProtocol, port: 0 })] : undefined;
}

/** Whether the proxy speaks HTTP/2 to an app whose port declares this. */
export function upstreamIsH2(p: DeclaredProtocol | undefined): boolean {
  return p === 'http2' || p === 'grpc';
}
