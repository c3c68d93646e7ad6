// weir proxy: assembles the control-plane client, the listeners, protocol
// selection, the TCP and HTTP chains and the admin servers, and owns the
// lifecycle (ready → drain on SIGTERM → exit).
//
//   listener (accept, original dst) → protocol selection → TCP chain (splice pump)
//                                                        → HTTP chain (connection manager → router → endpoint pools)
import type { Server } from 'node:http';
import type { Logger } from '../common/log.js';
import { startMemoryRelief } from '../common/memory-relief.js';
import type { Registry, RegistryView } from '../controlplane/types.js';
import { startDnsProxy } from '../dns/server.js';
import { ClusterManager } from './cluster/manager.js';
import { CompiledConfigStore } from './compiled/store.js';
import type { StaticConfig } from './compiled/validate.js';
import { startAdminServers } from './admin.js';
import { localAddresses } from './addr.js';
import { buildConfigDump, type DumpListener } from './config-dump.js';
import { startStatusServer, statusSettingsFromEnv } from './app-health.js';
import { workloadFromPodName, type ProxyConfig } from './config.js';
import type { Counters, ProxyDeps } from './context.js';
import { HostRoutes } from './host-routes.js';
import { HttpConnectionManager } from './http/connection-manager.js';
import { Listeners } from './listener.js';
import { ProxyMetrics } from './metrics.js';
import { Tracer } from './telemetry/tracing/tracer.js';
import { loadNativeOriginalDst } from './original-dst.js';
import { selectChain } from './protocol/select.js';
import { RegistryClient } from './registry-client.js';
import { RouteTable } from './routing.js';
import { TcpChain } from './tcp/chain.js';
import { AccessLog } from './telemetry/access-log.js';
import { readPodLabels, workloadMeta, type WorkloadMeta } from './telemetry/workload.js';
import { clustersView, compiledDumpView, configDumpView } from './views.js';
import { startMesh } from './mtls/start.js';
import { NativeL4, nativeAcceptWanted } from './native-l4/native-l4.js';

export interface RunningProxy {
  registry: RegistryView;
  metrics: ProxyMetrics;
  tcp: TcpChain;
  http: HttpConnectionManager;
  ready(): { ready: boolean; reason: string };
  /** Graceful: not ready, stop accepting, wait for connections (bounded), close. */
  drain(): Promise<void>;
}

const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];

/** The listeners this proxy binds (for the config dump). */
function listenersOf(cfg: ProxyConfig): DumpListener[] {
  const l: DumpListener[] = [
    { name: 'virtualOutbound', address: '::', port: cfg.outboundPort, chain: 'original destination -> protocol selection -> TCP (service VIP:port -> cluster -> endpoint) or HTTP (Host -> virtual host -> cluster, per request); unknown destinations pass through' },
    { name: 'virtualInbound', address: '::', port: cfg.inboundPort, chain: 'hand-off to the app on its original port from 127.0.0.6' },
    { name: 'admin', address: '127.0.0.1', port: cfg.adminPort, chain: 'admin' },
    { name: 'ready', address: '::', port: cfg.readyPort, chain: '/healthz/ready' },
    { name: 'prometheus', address: '::', port: cfg.prometheusPort, chain: '/stats/prometheus' },
  ];
  if (cfg.dnsPort) l.push({ name: 'dns', address: '127.0.0.1,::1', port: cfg.dnsPort, chain: 'DNS: cluster names from the registry, others forwarded upstream' });
  return l;
}

/** /stats `pools`: the default router's and every compiled cluster's upstream pools together (a request may use either). */
function poolStats(pools: { stats(): { h1Agents: number; h2Sessions: number; h2RefusedEndpoints: number } }[]): { h1Agents: number; h2Sessions: number; h2RefusedEndpoints: number } {
  const sum = { h1Agents: 0, h2Sessions: 0, h2RefusedEndpoints: 0 };
  for (const p of pools) { const s = p.stats(); sum.h1Agents += s.h1Agents; sum.h2Sessions += s.h2Sessions; sum.h2RefusedEndpoints += s.h2RefusedEndpoints; }
  return sum;
}

/** The pump's counters; connections the native accept path dialled count as native dials too. */
function pumpStatsWithNative(tcp: TcpChain, native: NativeL4 | undefined): (NonNullable<ReturnType<TcpChain['pumpStats']>> & { nativeAccept?: ReturnType<NativeL4['stats']> }) | undefined {
  const p = tcp.pumpStats();
  if (!p || !native) return p;
  const n = native.stats();
  return { ...p, nativeDials: p.nativeDials + n.native, nativeAccept: n };
}

export async function startProxy(cfg: ProxyConfig, logger: Logger, opts: { staticConfig?: StaticConfig } = {}): Promise<RunningProxy> {
  const metrics = new ProxyMetrics();
  const startedAt = Date.now();
  // Compiled Istio config: the static file now; control-plane v2 pushes (the client fills this store) replace it kind by kind as they arrive.
  const compiled = new CompiledConfigStore();
  // --static-config pins the compiled config: the proxy then asks the agent for protocol 1 (the registry only), so no push replaces the file.
  const client = new RegistryClient({
    socketPath: cfg.controlPlaneSocket, logger: logger.child({ component: 'proxy-xds' }), claimed: { namespace: cfg.podNamespace, name: cfg.podName || undefined }, compiled,
    ...(opts.staticConfig ? { versions: [1] } : {}),
  });
  let table = new RouteTable(undefined);
  let hosts: HostRoutes | undefined;
  metrics.registryVersion.set(-1);
  client.on('update', (reg: Registry) => {
    // This pod's own addresses, for the native inbound table (read per registry version: cheap, and a pod's IPs never move).
    table = new RouteTable(reg, localAddresses());
    hosts = undefined; // rebuilt on first use, for this pod's namespace
    metrics.registryVersion.set(reg.version);
  });
  client.on('connected', () => metrics.agentConnected.set(1));
  client.on('disconnected', () => metrics.agentConnected.set(0));

  const labels = readPodLabels(cfg.podLabelsFile);
  let me: { key: string; meta: WorkloadMeta } | undefined;
  const identity = (): WorkloadMeta => {
    // The agent's kernel-derived identity wins over flags once known.
    const id = client.identity;
    const workload = cfg.workload !== 'unknown' && cfg.workload ? cfg.workload : id ? workloadFromPodName(id.name) : 'unknown';
    const namespace = id?.namespace ?? cfg.podNamespace;
    const key = `${workload}/${namespace}`;
    if (me?.key !== key) me = { key, meta: workloadMeta(workload, namespace, labels, cfg.clusterId) };
    return me.meta;
  };
  if (opts.staticConfig) {
    compiled.replace(opts.staticConfig.config);
    if (opts.staticConfig.outboundTrafficPolicy) compiled.setOutboundTrafficPolicy(opts.staticConfig.outboundTrafficPolicy);
  }
  // deps.mesh is set below, before any connection: the pools ask for it per connection.
  const clusters = new ClusterManager({ routes: () => table, metrics, meshTls: (ep, proto, cluster) => deps.mesh?.tlsFor(ep, proto, cluster) }, compiled);
  const counters: Counters = { accepted: 0, routed: 0, passthrough: 0, inbound: 0, failed: 0, rejected: 0, retries: 0, http: 0, httpRequests: 0, httpRetries: 0 };
  const deps: ProxyDeps = {
    config: cfg, logger, metrics, counters, identity, accessLog: new AccessLog(cfg.accessLog), compiled, clusters, podLabels: labels,
    tracer: new Tracer(cfg.tracing, identity, metrics.registry, logger),
    routes: () => table,
    hosts: () => {
      const ns = identity().namespace;
      if (!hosts || hosts.routes !== table || hosts.clientNamespace !== ns) hosts = new HostRoutes(table, ns);
      return hosts;
    },
  };
  // Mesh mTLS: a workload certificate through the agent, the inbound gate, outbound auto mTLS, authorization.
  const mesh = cfg.mtls === 'off' ? undefined : startMesh(cfg, client, labels, logger, metrics.registry, () => identity().namespace);
  deps.mesh = mesh?.hooks;
  let draining = false;
  let listeners!: Listeners;
  const open = new Set<import('./context.js').Tracked>();
  const tcp = new TcpChain(deps, open);
  const http = new HttpConnectionManager(deps, open);
  // Outbound opaque TCP accepted, routed, dialled and pumped on the pump thread (src/proxy/native-l4); the rest handed over.
  const nativeL4 = nativeAcceptWanted(deps) ? new NativeL4(deps, logger.child({ component: 'native-accept' }), (dir, sock, dst) => listeners.adopt(dir, sock, dst)) : undefined;
  if (nativeL4) {
    // After the handlers above that rebuild the route table (listeners run in registration order).
    client.on('update', () => nativeL4.push());
    compiled.on('change', () => nativeL4.push(true));
  }
  listeners = new Listeners(deps, open, async (accepted) => {
    const conn = accepted.direction === 'inbound' && deps.mesh ? await deps.mesh.inbound(accepted) : accepted;
    if (!conn) return; // refused by PeerAuthentication, or a failed mTLS handshake
    const chain = await selectChain(deps, conn);
    const late = chain === 'tcp' ? await tcp.handle(conn) : chain;
    if (late !== 'done') await http.handle(conn, late);
  }, nativeL4);
  const pumpVia = await loadNativeOriginalDst();
  await listeners.listen();
  client.start();
  // After a burst of connections, give the memory it grew back (see memory-relief.ts).
  const relief = startMemoryRelief({ onRelief: (r) => logger.debug({ rssBeforeMB: r.rssBefore / 2 ** 20, rssAfterMB: r.rssAfter / 2 ** 20, ms: r.durationMs }, 'memory relief after load') });

  const ready = () => {
    if (draining) return { ready: false, reason: 'draining' };
    const certWait = mesh?.waitingForCertificate();
    if (certWait) return { ready: false, reason: certWait };
    if (client.current()) return { ready: true, reason: `registry version ${client.current()!.version}` };
    // Traffic passes through meanwhile, so a missing agent must not keep the pod unready forever.
    if (Date.now() - startedAt >= cfg.readyWithoutAgentMs) return { ready: true, reason: 'no registry from the agent yet; passing traffic through' };
    return { ready: false, reason: 'waiting for the first registry snapshot' };
  };

  const servers: Server[] = await startAdminServers({ admin: cfg.adminPort, ready: cfg.readyPort, prometheus: cfg.prometheusPort }, {
    ready,
    // One config_dump: the typed sections weir proxy-config reads (config-dump.ts), plus the HTTP chain's virtual hosts and cluster policies.
    configDump: () => {
      const l7 = configDumpView({ cfg, client, pumpVia, tcp, http, deps }) as { routes: unknown; listeners: unknown; clusters: unknown; agent: unknown; registry: unknown };
      return {
        ...buildConfigDump({
          registry: client.current(), listeners: listenersOf(cfg), activeFor: (ip, port) => tcp.lb.activeFor(ip, port),
          agent: { connected: client.connected, snapshots: client.snapshots, deltas: client.deltas, lastRefusal: client.lastRefusal, socketPath: cfg.controlPlaneSocket },
        }),
        httpRoutes: l7.routes, protocolSelection: l7.listeners, clusterPolicies: l7.clusters,
        compiled: compiledDumpView(deps),
        agent: l7.agent, registry: l7.registry,
        // Control plane v2: the compiled kinds as held (last good of each), and this proxy's NACKs.
        controlPlane: { protocol: client.protocol, pushes: client.pushes, versions: client.v2.versions(), nacks: client.v2.nacks, lastNack: client.v2.lastNack },
        bootstrap: { config: cfg, originalDst: pumpVia, pump: tcp.pump },
        originalDst: pumpVia,
        mesh: mesh?.dump(),
      };
    },
    logging: (level) => {
      if (level !== undefined) {
        if (!LOG_LEVELS.includes(level)) throw new Error(`level: expected one of ${LOG_LEVELS.join(', ')} (bad value: ${JSON.stringify(level)})`);
        logger.level = level;
      }
      return { level: logger.level };
    },
    clusters: () => clustersView({ client, tcp, http, deps }),
    stats: () => (nativeL4?.fold(), { ...counters, active: listeners.activeConnections(), registryVersion: client.current()?.version ?? -1, agentConnected: client.connected, uptimeS: Math.round((Date.now() - startedAt) / 1000), pump: pumpStatsWithNative(tcp, nativeL4), nativeHttp: http.native.stats(), pools: poolStats([http.router.pools, ...clusters.pools()]), memoryRelief: relief.stats() }),
    prometheus: async () => (http.native.fold(), nativeL4?.fold(), { contentType: metrics.registry.contentType, body: await metrics.registry.metrics() }),
  });
  // Status port 15020: rewritten app probes, quitquitquit, exit with the app (src/proxy/app-health.ts).
  // Quitting goes through SIGTERM so it drains exactly like a pod deletion.
  const statusSettings = statusSettingsFromEnv();
  const status = statusSettings && await startStatusServer(statusSettings, { ready, quit: () => process.kill(process.pid, 'SIGTERM'), logger: logger.child({ component: 'status' }) });
  // DNS proxy (answers cluster names from the same registry) on 15053.
  const dns = cfg.dnsPort ? await startDnsProxy({ registry: client, podNamespace: cfg.podNamespace, metrics: metrics.registry, logger: logger.child({ component: 'dns' }), listen: { port: cfg.dnsPort } }) : undefined;
  logger.info({ dns: cfg.dnsPort || 'off', pump: tcp.pump, outbound: cfg.outboundPort, inbound: cfg.inboundPort, admin: cfg.adminPort, originalDst: pumpVia, accessLog: cfg.accessLog, uid: process.getuid?.() }, 'weir proxy listening');

  return {
    registry: client, metrics, tcp, http, ready,
    async drain() {
      draining = true;
      relief.stop();
      http.drain();
      const { remaining } = await listeners.drain(cfg.drainTimeoutMs);
      client.stop();
      await deps.tracer?.close();
      mesh?.identity.close();
      await dns?.close();
      await status?.close();
      clusters.close();
      await Promise.all(servers.map((s) => new Promise<void>((r) => { s.close(() => r()); s.closeAllConnections(); })));
      logger.info({ cutConnections: remaining }, 'weir proxy drained');
    },
  };
}
