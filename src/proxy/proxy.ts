// weir proxy: assembles the control-plane client, the L4 listeners and the
// admin servers, and owns the lifecycle (ready → drain on SIGTERM → exit).
import type { Server } from 'node:http';
import type { Logger } from '../common/log.js';
import { startMemoryRelief } from '../common/memory-relief.js';
import type { Registry, RegistryView } from '../controlplane/types.js';
import { startDnsProxy } from '../dns/server.js';
import { startAdminServers } from './admin.js';
import { buildConfigDump, type DumpListener } from './config-dump.js';
import { startStatusServer, statusSettingsFromEnv } from './app-health.js';
import { workloadFromPodName, type ProxyConfig } from './config.js';
import { L4Proxy } from './l4.js';
import { ProxyMetrics } from './metrics.js';
import { loadNativeOriginalDst } from './original-dst.js';
import { RegistryClient } from './registry-client.js';
import { RouteTable } from './routing.js';

export interface RunningProxy {
  registry: RegistryView;
  metrics: ProxyMetrics;
  l4: L4Proxy;
  ready(): { ready: boolean; reason: string };
  /** Graceful: not ready, stop accepting, wait for connections (bounded), close. */
  drain(): Promise<void>;
}

const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];

/** The listeners this proxy binds (for the config dump). */
function listenersOf(cfg: ProxyConfig): DumpListener[] {
  const l: DumpListener[] = [
    { name: 'virtualOutbound', address: '::', port: cfg.outboundPort, chain: 'original destination -> route (service VIP:port) -> cluster -> endpoint; unknown destinations pass through' },
    { name: 'virtualInbound', address: '::', port: cfg.inboundPort, chain: 'hand-off to the app on its original port from 127.0.0.6' },
    { name: 'admin', address: '127.0.0.1', port: cfg.adminPort, chain: 'admin' },
    { name: 'ready', address: '::', port: cfg.readyPort, chain: '/healthz/ready' },
    { name: 'prometheus', address: '::', port: cfg.prometheusPort, chain: '/stats/prometheus' },
  ];
  if (cfg.dnsPort) l.push({ name: 'dns', address: '127.0.0.1,::1', port: cfg.dnsPort, chain: 'DNS: cluster names from the registry, others forwarded upstream' });
  return l;
}

export async function startProxy(cfg: ProxyConfig, logger: Logger): Promise<RunningProxy> {
  const metrics = new ProxyMetrics();
  const startedAt = Date.now();
  const client = new RegistryClient({ socketPath: cfg.controlPlaneSocket, logger: logger.child({ component: 'proxy-xds' }), claimed: { namespace: cfg.podNamespace, name: cfg.podName || undefined } });
  let table = new RouteTable(undefined);
  metrics.registryVersion.set(-1);
  client.on('update', (reg: Registry) => {
    table = new RouteTable(reg);
    metrics.registryVersion.set(reg.version);
  });
  client.on('connected', () => metrics.agentConnected.set(1));
  client.on('disconnected', () => metrics.agentConnected.set(0));

  let draining = false;
  const identity = () => {
    // The agent's kernel-derived identity wins over flags once known.
    const id = client.identity;
    const workload = cfg.workload !== 'unknown' ? cfg.workload : id ? workloadFromPodName(id.name) : 'unknown';
    return { namespace: id?.namespace ?? cfg.podNamespace, workload };
  };
  const l4 = new L4Proxy({ config: cfg, logger, metrics, routes: () => table, identity });
  const pumpVia = await loadNativeOriginalDst();
  await l4.listen();
  client.start();
  // After a burst of connections, give the memory it grew back (see memory-relief.ts).
  const relief = startMemoryRelief({ onRelief: (r) => logger.debug({ rssBeforeMB: r.rssBefore / 2 ** 20, rssAfterMB: r.rssAfter / 2 ** 20, ms: r.durationMs }, 'memory relief after load') });

  const ready = () => {
    if (draining) return { ready: false, reason: 'draining' };
    if (client.current()) return { ready: true, reason: `registry version ${client.current()!.version}` };
    // Traffic passes through meanwhile, so a missing agent must not keep the pod unready forever.
    if (Date.now() - startedAt >= cfg.readyWithoutAgentMs) return { ready: true, reason: 'no registry from the agent yet; passing traffic through' };
    return { ready: false, reason: 'waiting for the first registry snapshot' };
  };

  const servers: Server[] = await startAdminServers({ admin: cfg.adminPort, ready: cfg.readyPort, prometheus: cfg.prometheusPort }, {
    ready,
    configDump: () => ({
      ...buildConfigDump({
        registry: client.current(), listeners: listenersOf(cfg), activeFor: (ip, port) => l4.lb.activeFor(ip, port),
        agent: { connected: client.connected, snapshots: client.snapshots, deltas: client.deltas, lastRefusal: client.lastRefusal, socketPath: cfg.controlPlaneSocket },
      }),
      agent: { connected: client.connected, identity: client.identity, lastRefusal: client.lastRefusal },
      bootstrap: { config: cfg, originalDst: pumpVia, pump: l4.pump },
      originalDst: pumpVia,
    }),
    logging: (level) => {
      if (level !== undefined) {
        if (!LOG_LEVELS.includes(level)) throw new Error(`level: expected one of ${LOG_LEVELS.join(', ')} (bad value: ${JSON.stringify(level)})`);
        logger.level = level;
      }
      return { level: logger.level };
    },
    clusters: () => {
      const reg = client.current();
      if (!reg) return { version: -1, clusters: [] };
      return {
        version: reg.version,
        clusters: [...reg.services.values()].map((s) => ({
          name: `${s.namespace}/${s.name}`, kind: s.kind, clusterIPs: s.clusterIPs, ports: s.ports,
          endpoints: s.endpoints.map((e) => ({ ip: e.ip, ready: e.ready, serving: e.serving, terminating: e.terminating, pod: e.podName, ports: e.ports, activeConnections: e.ports.reduce((n, p) => n + l4.lb.activeFor(e.ip, p.port), 0) })),
        })),
      };
    },
    stats: () => ({ ...l4.counters, active: l4.activeConnections(), registryVersion: client.current()?.version ?? -1, agentConnected: client.connected, uptimeS: Math.round((Date.now() - startedAt) / 1000), pump: l4.pumpStats(), memoryRelief: relief.stats() }),
    prometheus: async () => ({ contentType: metrics.registry.contentType, body: await metrics.registry.metrics() }),
  });
  // Status port 15020: rewritten app probes, quitquitquit, exit with the app (src/proxy/app-health.ts).
  // Quitting goes through SIGTERM so it drains exactly like a pod deletion.
  const statusSettings = statusSettingsFromEnv();
  const status = statusSettings && await startStatusServer(statusSettings, { ready, quit: () => process.kill(process.pid, 'SIGTERM'), logger: logger.child({ component: 'status' }) });
  // DNS proxy (answers cluster names from the same registry) on 15053.
  const dns = cfg.dnsPort ? await startDnsProxy({ registry: client, podNamespace: cfg.podNamespace, metrics: metrics.registry, logger: logger.child({ component: 'dns' }), listen: { port: cfg.dnsPort } }) : undefined;
  logger.info({ dns: cfg.dnsPort || 'off', pump: l4.pump, outbound: cfg.outboundPort, inbound: cfg.inboundPort, admin: cfg.adminPort, originalDst: pumpVia, uid: process.getuid?.() }, 'weir proxy listening');

  return {
    registry: client, metrics, l4, ready,
    async drain() {
      draining = true;
      relief.stop();
      const { remaining } = await l4.drain(cfg.drainTimeoutMs);
      client.stop();
      await dns?.close();
      await status?.close();
      await Promise.all(servers.map((s) => new Promise<void>((r) => { s.close(() => r()); s.closeAllConnections(); })));
      logger.info({ cutConnections: remaining }, 'weir proxy drained');
    },
  };
}
