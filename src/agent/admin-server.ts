// The admin socket (/var/run/weir/admin.sock, root only): HTTP/1.1 + JSON for
// the node CLI (`weir status|pods|pod-rules|check|repair|logs`).
//   GET  /v1/status                      agent, install, backend, informers, last repair pass
//   GET  /v1/pods                        pods of this node: capture decision, sandbox, status annotation
//   GET  /v1/pods/{ns}/{name}/rules      what the backend reads from the pod's netns
//   POST /v1/pods/{ns}/{name}/check      verify against the plan (no change)
//   POST /v1/pods/{ns}/{name}/repair     verify and fix per repair mode
//   GET  /v1/logs?n=200                  the agent's recent log lines (JSON lines)
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
import { decideCapture, type CaptureSettings } from '../kube/capture-decision.js';
import type { ResilientInformer } from '../kube/informer.js';
import type { LogRing } from './log-ring.js';
import { CAPTURE_ANNOTATION } from './status-writer.js';
import { sandboxAt } from '../netns/backend-types.js';
import { HttpError, kubeName, parseAdminRequest, type AdminRequest } from './admin-requests.js';
import { badPeerReporter, onClientError } from '../common/bad-peer.js';
import type { Registry as MetricsRegistry } from 'prom-client';
import type { Logger } from '../common/log.js';

/**
 * What the admin API reads of the agent. Not the whole Agent: agent.ts
 * starts this server, so naming its type here would close an import circle.
 */
export interface AdminAgentView {
  config: Pick<AgentConfig, 'nodeName' | 'repairMode'>;
  readiness: Pick<ReadinessGate, 'evaluate'>;
  store: Pick<SandboxStore, 'list'>;
  repair: Pick<RepairLoop, 'lastRun' | 'checkPod' | 'repairPod'>;
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
}

export interface AdminServer { close(): Promise<void> }


export async function startAdminServer(o: AdminServerOptions): Promise<AdminServer> {
  const { agent } = o;
  const findPod = (ns: string, name: string): Pod => {
    const pod = o.informers.pods.get(ns, name);
    if (!pod) throw new HttpError(404, `pod ${ns}/${name} is not on node ${agent.config.nodeName}`);
    return pod;
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
      };
    }
    if (method === 'GET' && p === '/v1/pods') {
      const sandboxes = agent.store.list();
      return o.informers.pods.list().map((pod) => {
        const d = decideCapture(pod, o.settings);
        const ns = pod.metadata.namespace ?? 'default';
        const sb = sandboxes.filter((s) => (pod.metadata.uid && s.podUid ? s.podUid === pod.metadata.uid : s.podName === pod.metadata.name && (s.podNamespace ?? 'default') === ns));
        const last = agent.repair.lastRun?.outcomes.find((x) => x.namespace === ns && x.name === pod.metadata.name);
        return {
          namespace: ns, name: pod.metadata.name, uid: pod.metadata.uid, phase: pod.status?.phase,
          capture: d.capture, reason: d.reason, status: pod.metadata.annotations?.[CAPTURE_ANNOTATION],
          sandboxes: sb.map((s) => ({ containerId: s.containerId, netns: s.netns, captured: s.captured, reason: s.reason, backend: s.backend, planHash: s.planHash })),
          lastCheck: last?.result,
        };
      });
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
      const n = Number(query.get('n') ?? '200');
      if (!Number.isInteger(n) || n < 0) throw new HttpError(400, 'n: must be a non-negative integer');
      return { lines: o.ring.tail(n) };
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
      const text = JSON.stringify({ error: e.message });
      if (res.headersSent) { res.destroy(); return; }
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    }).catch(() => res.destroy());
  });
  server.on('clientError', onClientError(badPeer));
  // The run dir is shared with proxy.sock (reached by UID 1337): the socket's own 0600 guards the admin API.
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
