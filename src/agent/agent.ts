// The node agent: wires the Kubernetes side (informers, resolver, status),
// the CNI side (installer, CNI server, capture controller), the repair loop,
// the proxies' control plane, metrics/health and the admin socket.
//
// Start order matters for fail-closed behaviour: the CNI server answers from
// the moment the plugin can be chained, but readiness (and so the plugin
// being trusted by operators) waits for the informers' first list, the
// installer's chaining and the first repair pass — so once the agent is
// ready, no pod that should be captured is left uncaptured.
// Shutdown (SIGTERM): stop accepting CNI requests, let in-flight ADDs finish,
// then stop the rest; chaining is left or undone as configured.
import { join } from 'node:path';
import { existsSync } from 'node:fs';
import { pino } from 'pino';
import type { KubeConfig } from '@kubernetes/client-node';
import { weirLogOptions, type Logger } from '../common/log.js';
import type { AgentConfig } from './config.js';
import { loadKubeConfig, namespaces, podsOfNode } from '../kube/informers.js';
import type { ResilientInformer } from '../kube/informer.js';
import type { Namespace, Pod } from '../kube/pod-types.js';
import type { SecurityResource } from '../security/types.js';
import { DEFAULT_CAPTURE_SETTINGS, type CaptureSettings } from '../kube/capture-decision.js';
import { KubePodResolver } from './kube-resolver.js';
import { StatusWriter } from './status-writer.js';
import { SandboxStore } from './sandbox-store.js';
import { CaptureController } from './capture-controller.js';
import { CniServer } from './cni-server.js';
import { Installer } from './installer.js';
import { selectingBackend } from '../netns/backends.js';
import { buildPlan } from '../redirect/plan.js';
import { RepairLoop } from './repair.js';
import { AgentMetrics, ReadinessGate, startHealthServer } from './metrics.js';
import { createPeerIdentifier, pidsResolvable } from './identify.js';
import { csrForwarderFor } from './csr-forwarder.js';
import { startPodSockets, type PodSockets } from './pod-sockets.js';
import { LogRing } from './log-ring.js';
import { PodErrors } from './pod-errors.js';
import { startAdminServer, type AdminServer } from './admin-server.js';
import type { CaptureEvent } from './contracts.js';
import type { CaptureBackend } from '../netns/backend-types.js';
import { badPeerReporter } from '../common/bad-peer.js';
import { createNetnsGuard, defaultForbidden } from '../netns/netns-guard.js';
import { armedCrashPoint } from '../common/test-crash-points.js';
import { startMulticluster, type MulticlusterView } from './multicluster.js';
import { startMemoryRelief } from '../common/memory-relief.js';

export interface AgentOverrides {
  /** Use this kubeconfig object instead of loading one (tests). */
  kubeConfig?: KubeConfig;
  /** Extra log destination (tests); the agent always logs JSON to stdout unless silent. */
  logStream?: NodeJS.WritableStream;
  /** Capture backend instance (tests); default getBackend(config.backend). */
  backend?: CaptureBackend;
  /** Bound for the first informer sync before start() fails. Default 60 s. */
  syncTimeoutMs?: number;
  /** Readiness must be false this long before /readyz says so. Default 5000 ms. */
  readyDownAfterMs?: number;
  /** How often a missing Istio CRD is looked for again (tests). Default 30 s. */
  istioDiscoveryIntervalMs?: number;
}

export interface Agent {
  config: AgentConfig;
  logger: Logger;
  metrics: AgentMetrics;
  metricsUrl: string;
  adminSocket: string;
  cniSocket: string;
  pods: ResilientInformer<Pod>;
  controller: CaptureController;
  repair: RepairLoop;
  store: SandboxStore;
  status: StatusWriter;
  readiness: ReadinessGate;
  /** Graceful stop; idempotent. */
  close(): Promise<void>;
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    new Promise<T>((_, reject) => { t = setTimeout(() => reject(new Error(`${what} did not complete within ${ms} ms`)), ms); }),
  ]);
}

export async function startAgent(config: AgentConfig, over: AgentOverrides = {}): Promise<Agent> {
  const ring = new LogRing();
  const streams: pino.StreamEntry[] = [{ stream: ring, level: 'debug' }];
  if (config.logLevel !== 'silent') streams.push({ stream: pino.destination({ fd: 1, sync: true }) });
  if (over.logStream) streams.push({ stream: over.logStream });
  const logger: Logger = pino(weirLogOptions('weir-agent', config.logLevel === 'silent' ? 'debug' : config.logLevel, { node: config.nodeName }), pino.multistream(streams));

  const cleanups: (() => Promise<void> | void)[] = [];
  const closeAll = async (): Promise<void> => {
    for (const c of cleanups.splice(0).reverse()) {
      try { await c(); } catch (e) { logger.warn({ err: (e as Error).message }, 'shutdown step failed'); }
    }
  };
  try {
    const kubeConfig = over.kubeConfig ?? loadKubeConfig(config.kubeconfig);
    const metrics = new AgentMetrics();
    const settings: CaptureSettings = { ...DEFAULT_CAPTURE_SETTINGS, excludeNamespaces: config.excludeNamespaces };

    const pods = podsOfNode({ kubeConfig, logger, nodeName: config.nodeName });
    const nsInformer: ResilientInformer<Namespace> = namespaces({ kubeConfig, logger });
    cleanups.push(() => pods.stop(), () => nsInformer.stop());
    // After a burst (the control plane's cold start: the lists, the compiles, every proxy's first
    // push; a round of recompiles), give back what it grew, as the proxy does (memory-relief.ts):
    // at 10k Services the agent otherwise kept ~50-100 MB of that garbage resident until V8 got to it.
    const relief = startMemoryRelief({ onRelief: (r) => logger.debug({ rssBeforeMB: r.rssBefore / 2 ** 20, rssAfterMB: r.rssAfter / 2 ** 20, ms: r.durationMs }, 'memory relief after load') });
    cleanups.push(() => relief.stop());
    await withTimeout(Promise.all([pods.start(), nsInformer.start()]), over.syncTimeoutMs ?? 60_000, 'first list of pods and namespaces');

    const store = await SandboxStore.open(config.runDir);
    // Every pod gets the default backend unless its weir.io/backend annotation names another.
    const backend = over.backend ?? selectingBackend(config.backend, {
      lockDir: join(config.runDir, 'locks'),
      ebpfFallback: config.ebpfFallback ?? 'nftables',
      ebpf: { ...(config.bpfPinDir ? { pinDir: config.bpfPinDir } : {}), ...(config.ebpfCgroup ? { cgroup: config.ebpfCgroup } : {}) },
      onEbpfFallback: (reason) => logger.error({ reason, fallback: config.ebpfFallback ?? 'nftables' }, 'ebpf capture unavailable'),
    });
    const planner = (pod: Pod) => buildPlan(pod);
    const status = new StatusWriter({ kubeConfig, nodeName: config.nodeName, logger, lookup: (ns, n) => pods.get(ns, n) });
    cleanups.push(() => status.flush());
    const podErrors = new PodErrors();
    const onEvent = (e: CaptureEvent): void => {
      metrics.onCaptureEvent(e);
      podErrors.onEvent(e);
      void status.onEvent(e);
    };
    const resolver = new KubePodResolver({ kubeConfig, pods, logger });
    const controller = new CaptureController({ resolver, backend, planner, store, settings, onEvent, logger, netnsGuard: createNetnsGuard(defaultForbidden(config.hostProc)) });
    const armed = armedCrashPoint();
    if (armed) logger.warn({ crashPoint: armed }, 'WEIR_TEST_CRASH_AT is set: this agent will crash on purpose (test-only; never set it in a cluster)');
    // A previous agent killed mid-ADD: finish or remove its half-done work before serving anyone.
    const recovered = await controller.recoverPending();
    if (recovered.length) logger.warn({ recovered }, 'recovered ADDs a previous agent left half-done');

    let installer: Installer | undefined;
    const cniSocket = join(config.runDir, 'cni.sock');
    let firstRepairDone = false;
    const readiness: ReadinessGate = new ReadinessGate([
      { name: 'informers', check: () => ({ ok: pods.health().synced && nsInformer.health().synced, reason: 'not synced' }) },
      { name: 'cni-server', check: (): { ok: boolean; reason: string } => ({ ok: cniServer.isServing(), reason: 'not serving' }) },
      { name: 'install', check: () => { const r = installer ? installer.ready() : { ready: true, reason: 'install disabled' }; return { ok: r.ready, reason: r.reason }; } },
      { name: 'repair', check: () => ({ ok: firstRepairDone, reason: 'first repair pass not done' }) },
    ], over.readyDownAfterMs ?? 5000);

    const cniServer: CniServer = new CniServer({
      controller, socketPath: cniSocket, logger,
      ready: (): { ready: boolean; reason: string } => { const r = readiness.evaluate(); return { ready: r.raw || r.ready, reason: r.reason }; },
      onRequest: (route, outcome, ms) => metrics.onCniRequest(route, outcome, ms),
      onBadPeer: badPeerReporter(metrics.registry, 'cni.sock', logger),
    });
    await cniServer.start();
    // Closed first on shutdown (cleanups run in reverse): stop accepting, finish in-flight ADDs.
    const closeCni = async (): Promise<void> => { await cniServer.close(); };
    cleanups.push(closeCni);

    if (config.install) {
      installer = new Installer({
        confDir: config.cniConfDir, binDir: config.cniBinDir, pluginBinary: config.cniPluginBinary,
        keepOnShutdown: config.keepChainOnShutdown, logger,
        pluginConf: { agentSocket: cniSocket, excludeNamespaces: config.excludeNamespaces },
        onEvent: (e) => { logger.debug({ installer: e }, 'installer event'); metrics.installReady.set(installer?.ready().ready ? 1 : 0); },
      });
      await installer.start();
      cleanups.push(() => installer!.stop());
    }

    // The proxies' control plane: a socket inside every captured pod's netns
    // (identity from which listener accepted), plus the legacy host socket
    // (identity from the peer pid, only where pids resolve). Before repair,
    // so pods the first pass repairs from a /proc scan get their socket too.
    let podSockets: PodSockets | undefined;
    let controlPlaneStats: (() => Record<string, unknown>) | undefined;
    let multicluster: MulticlusterView | undefined;
    if (config.controlPlane) {
      const { startControlPlane } = await import('../controlplane/server.js');
      const byPid = await pidsResolvable(config.hostProc);
      if (!byPid) logger.info({ hostProc: config.hostProc }, 'peer pids do not resolve under host-proc (no hostPID): the host proxy socket identifies no one; proxies use their pod socket');
      // Istio's networking resources, compiled per proxy namespace; a missing CRD is normal (Services alone).
      const { IstioConfigSource, IstioConfigStore } = await import('../controlplane/istio-source.js');
      const { istioCompiledSource } = await import('../controlplane/v2/compiled-source.js');
      const istioOpts = over.istioDiscoveryIntervalMs !== undefined ? { discoveryIntervalMs: over.istioDiscoveryIntervalMs } : {};
      const istio = new IstioConfigSource(kubeConfig, new IstioConfigStore(), logger.child({ component: 'istio-config' }), istioOpts);
      // security.istio.io through the same source (its own group, reader and store), compiled per workload.
      const { SECURITY_API } = await import('../controlplane/istio-source.js');
      const { readSecurityResource } = await import('../security/read.js');
      const { istioSecuritySource } = await import('../controlplane/v2/security-feed.js');
      const securityStore = new IstioConfigStore<SecurityResource>((o) => readSecurityResource(o));
      const securityConfig = new IstioConfigSource(kubeConfig, securityStore, logger.child({ component: 'istio-security' }), istioOpts, SECURITY_API);
      const rootNamespace = config.istioRootNamespace ?? 'istio-system';
      const podLabels = (ns: string, name: string) => pods.get(ns, name)?.metadata.labels;
      const cp = await startControlPlane({
        kubeConfig, socketPath: join(config.runDir, 'proxy.sock'), logger, metrics: metrics.registry, clusterDomain: config.clusterDomain,
        identifyPeer: byPid ? createPeerIdentifier({ procRoot: config.hostProc, store, pods: () => pods.list() }) : undefined,
        compiled: istioCompiledSource({ store: istio.store, rootNamespace, podLabels }),
        security: istioSecuritySource({ store: securityStore, rootNamespace, podLabels, onLabelsChange: (cb) => onPodLabels(pods, cb) }),
        compiledReady: Promise.all([istio.start(), securityConfig.start()]).then(() => undefined),
        onCsr: config.ca ? await csrForwarderFor(config.ca, logger, metrics.registry) : undefined,
      });
      cleanups.push(() => cp.close(), () => istio.stop(), () => securityConfig.stop());
      controlPlaneStats = () => cp.stats();
      multicluster = await startMulticluster({ config, kubeConfig, apply: (c) => cp.apply(c), logger, metrics: metrics.registry });
      cleanups.push(() => multicluster!.close());
      podSockets = await startPodSockets({ controlPlane: cp, store, pods: () => pods.list(), logger, metrics: metrics.registry });
      cleanups.push(() => podSockets!.close());
    }

    const repair = new RepairLoop({
      backend, planner, store, pods: () => pods.list(), procRoot: config.hostProc, mode: config.repairMode, settings,
      kubeConfig, logger, onEvent, onOutcome: (o) => { metrics.onRepair(o); podSockets?.onRepair(o); },
      ensure: (rec) => controller.ensure(rec),
    });
    cleanups.push(() => repair.stop());
    await repair.start(config.repairIntervalMs);
    firstRepairDone = true;

    const refresh = (): void => {
      metrics.podsCaptured.set(store.list().filter((r) => r.captured).length);
      metrics.setInformerHealth('pods', pods.health());
      metrics.setInformerHealth('namespaces', nsInformer.health());
      if (installer) metrics.installReady.set(installer.ready().ready ? 1 : 0);
    };
    const health = await startHealthServer({ address: config.metricsAddr, metrics, readiness, refresh });
    cleanups.push(() => health.close());

    const adminSocket = join(config.runDir, 'admin.sock');
    let admin: AdminServer | undefined;
    const agent: Agent = {
      config, logger, metrics, metricsUrl: health.url, adminSocket, cniSocket, pods, controller, repair, store, status, readiness,
      close: async () => {
        logger.info({}, 'agent stopping');
        await closeCni();
        await closeAll();
        logger.info({}, 'agent stopped');
      },
    };
    admin = await startAdminServer({ socketPath: adminSocket, agent, backend, planner, settings, ring, installerReady: () => installer?.ready(), informers: { pods, namespaces: nsInformer }, errors: podErrors, controlPlaneStats, multicluster });
    cleanups.push(() => admin!.close());
    refresh();
    logger.info({ metrics: health.url, cniSocket, adminSocket, backend: backend.name, repairMode: config.repairMode, pods: pods.list().length }, 'agent started');
    return agent;
  } catch (e) {
    logger.error({ err: (e as Error).message }, 'agent failed to start');
    await closeAll();
    throw e;
  }
}

/** Where the built plugin is, relative to this bundle, when --cni-plugin-binary is not given. */
export function defaultPluginBinary(): string | undefined {
  const candidates = [join(process.cwd(), 'dist', 'weir-cni'), '/usr/local/lib/weir/weir-cni'];
  return candidates.find((c) => existsSync(c));
}

/** Calls `cb` when a pod of this node appears or its labels change (not on status updates): policies select by labels. */
function onPodLabels(pods: ResilientInformer<Pod>, cb: () => void): void {
  const seen = new Map<string, string>();
  const on = (p: Pod) => {
    const key = `${p.metadata.namespace}/${p.metadata.name}`;
    const labels = JSON.stringify(p.metadata.labels ?? {});
    if (seen.get(key) === labels) return;
    seen.set(key, labels);
    cb();
  };
  pods.on('add', on);
  pods.on('update', on);
  pods.on('delete', (p: Pod) => { seen.delete(`${p.metadata.namespace}/${p.metadata.name}`); });
}
