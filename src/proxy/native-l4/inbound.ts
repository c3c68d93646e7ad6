// Which inbound connections the pump thread may serve itself (kind
// 'inbound' in the L4 route table, native/src/l4_inbound.cc): those the
// JavaScript path would only relay. That is an app port of this pod whose
// service port is declared opaque (tcp, tls, mongo, ...: protocol selection
// sends it to the TCP chain without sniffing), REDIRECT capture (TPROXY
// keeps the client's address, which only the JavaScript dial does), and,
// with mesh security on, no STRICT mode on the port and no
// AuthorizationPolicy for this workload (MeshHooks.nativeTcpInbound). Even
// then the native side peeks at the first byte and hands TLS to the mesh
// gate. Everything else has no entry: handed to JavaScript as before.
import { inboundClusterName } from '../../istio/hosts.js';
import type { L4Route } from '../../native/l4-accept.js';
import type { ProxyDeps } from '../context.js';
import { declaredProtocol } from '../protocol/declared.js';
import type { RouteTable } from '../routing.js';

/** What an inbound connection natively served to one ip:port is counted as (its declared protocol). */
export interface NativeInbound { protocol: string }

export interface NativeInboundPlan {
  /** "i|ip|port" → route. */
  exact: Record<string, L4Route>;
  /** "ip|port" → how the JavaScript chain would have counted it. */
  ports: Map<string, NativeInbound>;
}

export function planNativeInbound(d: ProxyDeps, routes: RouteTable): NativeInboundPlan {
  const plan: NativeInboundPlan = { exact: {}, ports: new Map() };
  if (d.config.interceptionMode !== 'REDIRECT') return plan;
  for (const { ip, port } of routes.localInbound()) {
    const protocol = declaredProtocol(routes.inboundPort(ip, port));
    if (protocol !== 'tcp' && protocol !== 'tls') continue;
    if (d.mesh && d.mesh.nativeTcpInbound(port) === undefined) continue;
    plan.exact[`i|${ip}|${port}`] = { kind: 'inbound', cluster: inboundClusterName(port), reason: 'declared', peek: d.mesh !== undefined };
    plan.ports.set(`${ip}|${port}`, { protocol });
  }
  return plan;
}
