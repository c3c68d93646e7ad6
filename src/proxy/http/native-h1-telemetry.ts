// Folding the native HTTP path's (HTTP/1.1 and HTTP/2 codecs') aggregated series into the istio_*
// request metrics: the same label sets the JS chain computes per request
// (RequestTelemetry: this proxy's workload, the route's service, the
// endpoint's pod, the peer's metadata-exchange header, the source pod of an
// inbound connection), computed here once per series key and generation —
// not per request — and added as counts and histogram buckets.
import type { RegistryEndpoint, RegistryService, RegistryServicePort } from '../../controlplane/types.js';
import { clusterName, inboundClusterName } from '../../istio/hosts.js';
import type { HttpEngineSeries } from '../../native/addon.js';
import type { Conn, ProxyDeps } from '../context.js';
import { ISTIO_HTTP_LABELS, type IstioHttpLabels } from '../metrics.js';
import { seriesKey } from '../telemetry/series.js';
import { decodePeer } from '../telemetry/workload.js';
import { RequestTelemetry } from './request-telemetry.js';
import type { RouteDecision, RouteTarget } from './route.js';

export interface NativeRoute {
  service: RegistryService;
  servicePort: RegistryServicePort;
  targets: { ip: string; port: number; endpoint: RegistryEndpoint }[];
  clusterDomain: string;
}

/** Generations kept for series still in flight when the tables changed. */
const KEEP = 8;

export class NativeTelemetry {
  private readonly generations = new Map<number, { routes: NativeRoute[]; labels: Map<string, { key: string; labels: IstioHttpLabels }> }>();

  constructor(private readonly d: ProxyDeps) {}

  generation(n: number, g: { routes: NativeRoute[] }): void {
    this.generations.set(n, { routes: g.routes, labels: new Map() });
    for (const k of this.generations.keys()) if (k <= n - KEEP) this.generations.delete(k);
  }

  fold(series: HttpEngineSeries[]): void {
    const m = this.d.metrics;
    for (const s of series) {
      const l = this.labelsFor(s.key);
      if (!l) continue;
      m.requests.inc(l.key, l.labels, s.count);
      m.duration.fold(l.key, l.labels, s.duration, s.durationSum, s.count);
      m.requestBytes.fold(l.key, l.labels, s.requestBytes, s.requestBytesSum, s.count);
      m.responseBytes.fold(l.key, l.labels, s.responseBytes, s.responseBytesSum, s.count);
      if (l.labels.request_protocol === 'grpc') {
        m.requestMessages.inc(l.key, l.labels, s.requestMessages ?? 0);
        m.responseMessages.inc(l.key, l.labels, s.responseMessages ?? 0);
      }
    }
  }

  /** "generation|route|endpoint|code|flags|source ip|dst|authority|protocol|grpc status|peer header" → labels (cached per generation). */
  private labelsFor(raw: string): { key: string; labels: IstioHttpLabels } | undefined {
    const parts = raw.split('|');
    if (parts.length < 11) return undefined;
    const [gen, route, endpoint, code, flags, srcIp, dst, authority, protocol, grpcStatus] = parts;
    const peer = parts.slice(10).join('|');
    const g = this.generations.get(Number(gen));
    if (!g) return undefined;
    const have = g.labels.get(raw);
    if (have) return have;
    const inbound = dst !== '';
    const dstMatch = /^\[?(.*?)\]?:(\d+)$/.exec(inbound ? dst : endpoint) ?? ['', '', '0'];
    const conn = {
      direction: inbound ? 'inbound' : 'outbound', dst: { ip: dstMatch[1], port: Number(dstMatch[2]) }, peer: srcIp.includes(':') ? `[${srcIp}]:0` : `${srcIp}:0`,
      local: dst, startedAt: new Date(), start: 0,
    } as unknown as Conn;
    const grpc = protocol === 'grpc';
    const tel = new RequestTelemetry(this.d, conn, { method: 'GET', path: '/', protocol: 'HTTP/1.1', authority: authority || undefined, headers: {}, grpc });
    if (inbound) tel.peer(decodePeer(peer || undefined));
    const r = Number(route);
    const nr = r >= 0 ? g.routes[r] : undefined;
    const decision = nr
      ? { kind: 'service', cluster: clusterName(nr.servicePort.port, undefined, fqdn(nr)), routeName: `${fqdn(nr)}:${nr.servicePort.port}`, service: { name: nr.service.name, namespace: nr.service.namespace, fqdn: fqdn(nr) } }
      : inbound ? { kind: 'inbound', cluster: inboundClusterName(conn.dst.port), routeName: 'default' }
      : { kind: 'passthrough', cluster: 'PassthroughCluster', routeName: 'allow_any' };
    tel.route(decision as RouteDecision);
    if (!inbound) {
      const t = nr?.targets.find((x) => (x.ip.includes(':') ? `[${x.ip}]:${x.port}` : `${x.ip}:${x.port}`) === endpoint);
      if (t) tel.target(t as RouteTarget);
      tel.peer(decodePeer(peer || undefined));
    }
    const labels = { ...tel.labels, response_code: code, response_flags: flags, grpc_response_status: grpc ? grpcStatus : '' };
    const out = { key: seriesKey(labels, ISTIO_HTTP_LABELS), labels };
    g.labels.set(raw, out);
    return out;
  }
}

function fqdn(r: NativeRoute): string {
  return `${r.service.name}.${r.service.namespace}.svc.${r.clusterDomain}`;
}
