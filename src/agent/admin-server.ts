// The admin socket (/var/run/weir/admin.sock, root only): HTTP/1.1 + JSON for
// the node CLI (`weir status|pods|pod-rules|check|repair|logs`).
//   GET  /v1/status                      agent, install, backend, informers, last repair pass, remote clusters
//   GET  /v1/pods                        pods of this node: capture decision, sandbox, status annotation
//   GET  /v1/pods/{ns}/{name}/rules      what the backend reads from the pod's netns
//   POST /v1/pods/{ns}/{name}/check      verify against the plan (no change)
//   POST /v1/pods/{ns}/{name}/repair     verify and fix per repair mode
//   GET  /v1/pods/{ns}/{name}            one pod's view (as in /v1/pods)
//   GET  /v1/pods/{ns}/{name}/describe   the view + the proxy's readiness, config version, services, next steps
//   GET  /v1/pods/{ns}/{name}/proxy/{config_dump|clusters|stats|ready|logging}
//   POST /v1/pods/{ns}/{name}/proxy/logging?level=debug
//                                        the pod's proxy admin (127.0.0.1:15000 in its netns), relayed
//   GET  /v1/logs?n=200                  the agent's recent log lines (JSON lines)
// Errors: {error, exitCode?}; exitCode 4 = the pod's proxy could not be reached.
import { createServer, type Server } from 'node:http';
import { chmod, mkdir, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { AgentConfig } from './config.js';
import type { ReadinessGate } from './metrics.js';
import type { RepairLoop } from './repair.js';
import type { SandboxStore } from './sandbox-store.js';
import type { CaptureBackend } from '../netns/backend-types.js';
import type { RedirectPlan } from '../redirect/types.js';
import type { Pod, Namespace } from '../kube/pod-types.js';
import type { CaptureSettings } from '../kube/capture-decision.js';
import type { ResilientInformer } from '../kube/informer.js';
import type { LogRing } from './log-ring.js';
import { podView, type PodView } from './pod-view.js';
import type { PodErrors } from './pod-errors.js';
import { proxyAdminRequest, ProxyUnreachable, relayAllowed } from './proxy-admin-relay.js';
import { describePod, type ControlPlaneFacts, type ProxyFacts } from './describe.js';
import { EXIT } from '../common/exit-codes.js';
import { sandboxAt } from '../netns/backend-types.js';
import { HttpError, kubeName, parseAdminRequest, type AdminRequest } from './admin-requests.js';
import { badPeerReporter, onClientError } from '../common/bad-peer.js';
import type { Registry as MetricsRegistry } from 'prom-client';
import type { Logger } from '../common/log.js';
import type { MulticlusterView } from './multicluster.js';

/**
 * What the admin API reads of the agent. Not the whole Agent: agent.ts
 * starts this server, so naming its type here would close an import circle.
 */
export interface AdminAgentView {
  config: Pick<AgentConfig, 'nodeName' | 'repairMode' | 'hostProc'>;
  readiness: Pick<ReadinessGate, 'evaluate'>;
  store: Pick<SandboxStore, 'list'>;
  repair: Pick<RepairLoop, 'lastRun' | 'checkPod' | 'repairPod' | 'netnsOf' | 'lastCheckOf'>;
  metrics: { registry: MetricsRegistry };
  logger: Logger;
}

export interface AdminServerOptions {
  socketPath: string;
  agent: AdminAgentView;
  backend: CaptureBackend;
  planner: (pod: Pod) => RedirectPlan;
  settings: CaptureSettings;
  ring: LogRing;
  installerReady: () => { ready: boolean; reason: string } | undefined;
  informers: { pods: ResilientInformer<Pod>; namespaces: ResilientInformer<Namespace> };
  errors: PodErrors;
  /** The control plane's per-proxy session stats, when it runs in this agent. */
  controlPlaneStats?: () => Record<string, unknown>;
  /** This cluster's name and the remote clusters' sync state (when the control plane runs). */
  multicluster?: Pick<MulticlusterView, 'clusterId' | 'network' | 'secretNamespace' | 'remotes'>;
}

export interface AdminServer { close(): Promise<void> }


export async function startAdminServer(o: AdminServerOptions): Promise<AdminServer> {
  const { agent } = o;
  const findPod = (ns: string, name: string): Pod => {
    const pod = o.informers.pods.get(ns, name);
    if (!pod) throw new HttpError(404, `pod ${ns}/${name} is not on node ${agent.config.nodeName}`);
    return pod;
  };
  const viewOf = (pod: Pod): PodView => {
    const ns = pod.metadata.namespace ?? 'default';
    const name = pod.metadata.name ?? '';
    return podView(pod, { settings: o.settings, planner: o.planner, sandboxes: agent.store.list(), lastCheck: agent.repair.lastCheckOf(ns, name), errors: o.errors.for(ns, name) });
  };
  const podNetns = async (ns: string, name: string): Promise<string> => {
    findPod(ns, name);
    const where = await agent.repair.netnsOf(ns, name);
    if (!where) throw new HttpError(404, `no netns found for pod ${ns}/${name} (sandbox not recorded and not found in ${agent.config.hostProc})`, EXIT.unreachable);
    return where.netns;
  };
  const relay = async (netns: string, method: 'GET' | 'POST', path: string) => {
    try { return await proxyAdminRequest(netns, method, path); } catch (e) {
      if (e instanceof ProxyUnreachable) throw new HttpError(502, e.message, EXIT.unreachable);
      throw e;
    }
  };
  const proxyFacts = async (ns: string, name: string): Promise<ProxyFacts> => {
    try {
      const netns = await podNetns(ns, name);
      const [dump, ready] = await Promise.all([relay(netns, 'GET', '/config_dump'), relay(netns, 'GET', '/ready')]);
      return { reachable: true, dump: JSON.parse(dump.body) as ProxyFacts['dump'], ready: { ready: ready.status === 200, reason: ready.body.trim() } };
    } catch (e) {
      return { reachable: false, error: (e as Error).message };
    }
  };
  const controlPlaneFacts = (ns: string, name: string): ControlPlaneFacts | undefined => {
    const st = o.controlPlaneStats?.() as { version?: number; proxies?: ({ pod: string } & Omit<ControlPlaneFacts, 'registryVersion'>)[] } | undefined;
    if (!st) return undefined;
    const session = st.proxies?.find((x) => x.pod === `${ns}/${name}`);
    return { registryVersion: st.version, sentVersion: session?.sentVersion, ackedVersion: session?.ackedVersion, connectedAt: session?.connectedAt, protocol: session?.protocol, lastNack: session?.lastNack };
  };
  const route = async ({ method, path: p, query }: AdminRequest): Promise<unknown> => {
    if (method === 'GET' && p === '/v1/status') {
      const r = agent.readiness.evaluate();
      return {
        node: agent.config.nodeName, ready: r.ready, readyReason: r.reason, pid: process.pid, uptimeSeconds: Math.round(process.uptime()),
        backend: o.backend.name, repairMode: agent.config.repairMode, install: o.installerReady() ?? { ready: true, reason: 'install disabled' },
        informers: { pods: o.informers.pods.health(), namespaces: o.informers.namespaces.health() },
        sandboxes: agent.store.list().length, captured: agent.store.list().filter((s) => s.captured).length,
        lastRepair: agent.repair.lastRun ? { at: new Date(agent.repair.lastRun.at).toISOString(), outcomes: agent.repair.lastRun.outcomes } : undefined,
        ...(o.multicluster ? { cluster: { id: o.multicluster.clusterId, network: o.multicluster.network, secretNamespace: o.multicluster.secretNamespace, remotes: o.multicluster.remotes() } } : {}),
      };
    }
    if (method === 'GET' && p === '/v1/pods') return o.informers.pods.list().map(viewOf);
    const proxyRoute = /^\/v1\/pods\/([^/]+)\/([^/]+)\/proxy(\/[a-z_]+)$/.exec(p);
    if (proxyRoute) {
      const ns = kubeName(proxyRoute[1], 'namespace');
      const name = kubeName(proxyRoute[2], 'name');
      const sub = proxyRoute[3];
      if (!relayAllowed(sub) || (method === 'POST' && sub !== '/logging')) throw new HttpError(404, `the proxy admin relay does not forward ${method} ${sub}`);
      const netns = await podNetns(ns, name);
      // Only the one parameter the proxy's admin takes is forwarded (it validates the value itself).
      const level = query.get('level');
      const answer = await relay(netns, method, `${sub}${method === 'POST' && level !== null ? `?level=${encodeURIComponent(level)}` : ''}`);
      if (answer.status >= 400) throw new HttpError(answer.status === 400 ? 400 : 502, `proxy admin ${sub}: HTTP ${answer.status}: ${answer.body.trim().slice(0, 500)}`);
      try { return JSON.parse(answer.body) as unknown; } catch { return { text: answer.body }; }
    }
    const one = /^\/v1\/pods\/([^/]+)\/([^/]+)(\/describe)?$/.exec(p);
    if (one && method === 'GET') {
      const ns = kubeName(one[1], 'namespace');
      const name = kubeName(one[2], 'name');
      const view = viewOf(findPod(ns, name));
      if (!one[3]) return view;
      return describePod(view, await proxyFacts(ns, name), controlPlaneFacts(ns, name));
    }
    const m = /^\/v1\/pods\/([^/]+)\/([^/]+)\/(rules|check|repair)$/.exec(p);
    if (m) {
      const [, rawNs, rawName, what] = m;
      const ns = kubeName(rawNs, 'namespace');
      const name = kubeName(rawName, 'name');
      if (what === 'rules' && method === 'GET') {
        findPod(ns, name);
        const c = await agent.repair.checkPod(ns, name);
        if (!c.netns) throw new HttpError(404, `no netns found for pod ${ns}/${name} (${c.result})`);
        const state = await o.backend.read(sandboxAt(c.netns));
        return { namespace: ns, name, netns: c.netns, via: c.via, ...state };
      }
      if (what === 'check' && method === 'POST') { findPod(ns, name); return agent.repair.checkPod(ns, name); }
      if (what === 'repair' && method === 'POST') { findPod(ns, name); return agent.repair.repairPod(ns, name); }
    }
    if (method === 'GET' && p === '/v1/logs') {
      const after = query.get('after');
      if (after !== null) {
        const seq = Number(after);
        if (!Number.isInteger(seq) || seq < 0) throw new HttpError(400, 'after: must be a non-negative integer');
        return o.ring.since(seq);
      }
      const n = Number(query.get('n') ?? '200');
      if (!Number.isInteger(n) || n < 0) throw new HttpError(400, 'n: must be a non-negative integer');
      return { lines: o.ring.tail(n), next: o.ring.total };
    }
    throw new HttpError(404, `unknown admin route ${method} ${p}`);
  };

  const badPeer = badPeerReporter(agent.metrics.registry, 'admin.sock', agent.logger);
  const server: Server = createServer((req, res) => {
    // Parsing inside the promise: whatever it throws becomes an error answer, never an uncaught exception.
    Promise.resolve().then(() => route(parseAdminRequest(req.method, req.url))).then((body) => {
      const text = JSON.stringify(body);
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    }, (thrown: unknown) => {
      const e = thrown instanceof Error ? thrown : new Error(String(thrown));
      const status = e instanceof HttpError ? e.status : 500;
      if (status === 400 || status === 405 || status === 414) badPeer(e.message);
      if (status === 500) agent.logger.error({ err: e.stack }, 'admin request failed');
      const text = JSON.stringify({ error: e.message, exitCode: e instanceof HttpError ? e.exitCode : undefined });
      if (res.headersSent) { res.destroy(); return; }
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    }).catch(() => res.destroy());
  });
  server.on('clientError', onClientError(badPeer));
  // The run dir is shared with the legacy proxy.sock (reachable by UID 1337): the socket's own 0600 guards the admin API.
  await mkdir(dirname(o.socketPath), { recursive: true, mode: 0o755 });
  await unlink(o.socketPath).catch(() => undefined);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.socketPath, () => resolve());
  });
  await chmod(o.socketPath, 0o600);
  return {
    close: async () => {
      await new Promise<void>((resolve) => { server.close(() => resolve()); server.closeAllConnections(); });
      await unlink(o.socketPath).catch(() => undefined);
    },
  };
}
