// What the admin port shows of the proxy's state, in Envoy's vocabulary:
// config_dump has the listeners (and how they choose a chain), the routes
// (virtual hosts by name) and the clusters; /clusters has every endpoint
// with its health and counters (connections on the TCP chain, requests on
// the HTTP chain).
import { clusterName } from '../istio/hosts.js';
import type { ProxyConfig } from './config.js';
import type { ProxyDeps } from './context.js';
import type { HttpConnectionManager } from './http/connection-manager.js';
import type { RegistryClient } from './registry-client.js';
import type { TcpChain } from './tcp/chain.js';
import { declaredProtocol } from './protocol/declared.js';

interface ViewDeps { client: RegistryClient; tcp: TcpChain; http: HttpConnectionManager; deps: ProxyDeps }

export function configDumpView(v: ViewDeps & { cfg: ProxyConfig; pumpVia: string }): unknown {
  const reg = v.client.current();
  const cfg = v.cfg;
  const domain = reg?.clusterDomain ?? 'cluster.local';
  return {
    config: cfg, originalDst: v.pumpVia, pump: v.tcp.pump,
    agent: { connected: v.client.connected, identity: v.client.identity, lastRefusal: v.client.lastRefusal, snapshots: v.client.snapshots, deltas: v.client.deltas },
    registry: reg ? { version: reg.version, clusterDomain: reg.clusterDomain, services: [...reg.services.values()] } : null,
    listeners: [
      { name: 'virtualOutbound', address: `0.0.0.0:${cfg.outboundPort}`, protocolSelection: selection(cfg) },
      { name: 'virtualInbound', address: `0.0.0.0:${cfg.inboundPort}`, protocolSelection: selection(cfg) },
    ],
    routes: { outbound: v.deps.hosts().virtualHosts(), unmatched: 'PassthroughCluster (original destination, still HTTP)' },
    clusters: reg ? [...reg.services.values()].filter((s) => s.kind !== 'ExternalName').flatMap((s) => s.ports.map((p) => ({
      name: clusterName(p.port, undefined, `${s.name}.${s.namespace}.svc.${domain}`),
      protocol: declaredProtocol(p) ?? 'sniffed',
      lbPolicy: 'LEAST_REQUEST',
      retryPolicy: { retryOn: 'connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes(503)', numRetries: cfg.httpRetries, previousHosts: true },
    }))) : [],
  };
}

function selection(cfg: ProxyConfig): unknown {
  return { order: ['appProtocol', 'port name prefix', 'sniff (h2 preface, HTTP/1.x request line, TLS ClientHello)'], serverFirstPorts: [25, 53, 3306, 27017], detectionTimeoutMs: { outbound: cfg.protocolDetectionTimeoutMs, inbound: cfg.inboundProtocolDetectionTimeoutMs } };
}

/**
 * The compiled Istio config as applied: route tables, L4 routes and
 * clusters exactly as held, the outbound traffic policy, and what the
 * control plane (or this proxy) did not apply, with the reason.
 */
export function compiledDumpView(d: ProxyDeps): unknown {
  const snap = d.compiled.snapshot();
  return { generation: d.compiled.generation, outboundTrafficPolicy: { mode: d.compiled.outboundTrafficPolicy }, routes: snap.routes, l4: snap.l4, clusters: snap.clusters, ignored: snap.ignored };
}

export function clustersView(v: ViewDeps): unknown {
  const reg = v.client.current();
  // Compiled clusters (DestinationRule policies applied) with live counters, outlier state and pool use.
  const compiled = v.deps.clusters.view();
  if (!reg) return { version: -1, clusters: [], compiled };
  const http = v.http.router.lb;
  return {
    version: reg.version, compiled,
    clusters: [...reg.services.values()].map((s) => ({
      name: `${s.namespace}/${s.name}`, kind: s.kind, clusterIPs: s.clusterIPs, ports: s.ports,
      endpoints: s.endpoints.map((e) => ({
        ip: e.ip, ready: e.ready, serving: e.serving, terminating: e.terminating, pod: e.podName, ports: e.ports,
        health: e.ready ? 'HEALTHY' : e.serving ? 'DRAINING' : 'UNHEALTHY',
        activeConnections: e.ports.reduce((n, p) => n + v.tcp.lb.activeFor(e.ip, p.port), 0),
        activeRequests: e.ports.reduce((n, p) => n + http.stats(e.ip, p.port).activeRequests, 0),
        totalRequests: e.ports.reduce((n, p) => n + http.stats(e.ip, p.port).totalRequests, 0),
      })),
    })),
  };
}
