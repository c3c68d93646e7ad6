// The istio_tcp_* labels of an inbound connection before the mesh adds its
// own (reporter=destination): this workload as the destination, the
// service the connection was for, the source pod by the peer's IP. One
// builder for the JavaScript TCP chain and the native inbound path
// (src/proxy/native-l4/outcomes.ts), so both report the same series.
import { canonicalIp } from '../addr.js';
import type { ProxyDeps } from '../context.js';
import { setPeerLabels, unknownLabels, workloadLabel, type IstioTcpLabels } from '../metrics.js';
import type { RouteTable } from '../routing.js';
import { workloadMeta } from '../telemetry/workload.js';
import { setServiceLabels } from './chain.js';

export function inboundLabels(d: ProxyDeps, routes: RouteTable, dstIp: string, dstPort: number, peerIp: string): IstioTcpLabels {
  const labels = unknownLabels('destination');
  setPeerLabels(labels, 'destination', d.identity());
  const svc = routes.serviceForInbound(dstIp, dstPort);
  if (svc) setServiceLabels(labels, svc, routes, false);
  const src = routes.podByIp(canonicalIp(peerIp));
  if (src) setPeerLabels(labels, 'source', workloadMeta(workloadLabel(src.name), src.namespace, {}, src.cluster ?? d.config.clusterId));
  return labels;
}
