// Node-local control plane: serves the service registry to the proxies on
// this node over a unix socket (protocol: docs/proxy-protocol.md). Who a
// proxy is comes from the kernel (peer pid → the agent's identifyPeer), and
// every registry change is pushed as a delta that each proxy acknowledges.
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import type { KubeConfig } from '@kubernetes/client-node';
import { Counter, Gauge, Histogram, type Registry as MetricsRegistry } from 'prom-client';
import type { Logger } from '../common/log.js';
import { kubeRegistrySource, type RegistrySource } from './kube-source.js';
import { peerPid } from './peer-cred.js';
import { encode, LineDecoder, PROTOCOL_VERSION, type AgentToProxy, type HelloMsg, type ProxyToAgent } from './protocol.js';
import { MessageError, parseProxyMessage } from './messages.js';
import { badPeerReporter } from '../common/bad-peer.js';
import { RegistryBuilder } from './registry-builder.js';
import type { RegistryDelta } from './types.js';

/** Who a connecting proxy is, decided from the kernel (SO_PEERCRED pid → netns/cgroup → pod). */
export interface PeerPodIdentity {
  namespace: string;
  name: string;
  uid: string;
  ips: string[];
  serviceAccount?: string;
}

export interface ControlPlaneDeps {
  kubeConfig: KubeConfig;
  /** default /var/run/weir/proxy.sock */
  socketPath: string;
  logger: Logger;
  metrics: MetricsRegistry;
  clusterDomain: string;
  /** Provided by the agent: maps a peer pid to the pod it runs in, or undefined. */
  identifyPeer(pid: number): Promise<PeerPodIdentity | undefined>;
  /**
   * Where Services/EndpointSlices come from. Default: list+watch through
   * kubeConfig. Tests and embedders can drive the builder themselves.
   */
  source?: (apply: (change: (b: RegistryBuilder) => RegistryDelta | undefined) => void) => RegistrySource;
  /** How long a proxy has to send hello. Default 5000 ms. */
  helloTimeoutMs?: number;
}

export interface ProxySessionStats {
  id: number;
  pid: number;
  pidVia: string;
  pod: string;
  connectedAt: string;
  sentVersion: number;
  ackedVersion: number;
  lastAckAt?: string;
  resumed: boolean;
  snapshotsSent: number;
  deltasSent: number;
}

export interface ControlPlane {
  ready(): boolean;
  stats(): Record<string, unknown>;
  close(): Promise<void>;
  /** Apply a change to the registry directly (used by the kube source, and by tests). */
  apply(change: (b: RegistryBuilder) => RegistryDelta | undefined): void;
  /** Resolves when every proxy connected now has acked `version` (or left). */
  waitAcked(version: number, timeoutMs?: number): Promise<void>;
}

/** Above this many unsent bytes for one proxy, stop writing and coalesce into one delta on drain. */
const HIGH_WATER = 4 * 1024 * 1024;

interface Session {
  id: number;
  sock: Socket;
  pid: number;
  pidVia: string;
  identity?: PeerPodIdentity;
  connectedAt: Date;
  sentVersion: number;
  ackedVersion: number;
  lastAckAt?: Date;
  resumed: boolean;
  snapshotsSent: number;
  deltasSent: number;
  blocked: boolean;
}

export async function startControlPlane(deps: ControlPlaneDeps): Promise<ControlPlane> {
  const log = deps.logger.child({ component: 'controlplane' });
  const builder = new RegistryBuilder({ clusterDomain: deps.clusterDomain });
  const epoch = randomBytes(8).toString('hex');
  const sessions = new Set<Session>();
  let nextId = 1;
  let synced = false;
  let lastFanoutMs: number | undefined;
  const fanoutSamples: number[] = [];
  /** version → when it was produced, while some proxy has not acked it. */
  const pendingFanout = new Map<number, number>();
  const ackWaiters = new Set<{ version: number; resolve: () => void }>();

  const m = {
    connected: new Gauge({ name: 'weir_controlplane_proxies_connected', help: 'Proxies connected to the node control plane', registers: [deps.metrics] }),
    refused: new Counter({ name: 'weir_controlplane_proxies_refused_total', help: 'Proxy connections refused', labelNames: ['reason'], registers: [deps.metrics] }),
    version: new Gauge({ name: 'weir_controlplane_registry_version', help: 'Current registry version', registers: [deps.metrics] }),
    services: new Gauge({ name: 'weir_controlplane_registry_services', help: 'Services in the registry', registers: [deps.metrics] }),
    fanout: new Histogram({
      name: 'weir_controlplane_fanout_seconds', help: 'Registry change to acknowledgement by every connected proxy',
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1], registers: [deps.metrics],
    }),
  };

  const badPeer = badPeerReporter(deps.metrics, 'proxy.sock', log);

  function send(s: Session, msg: AgentToProxy): void {
    s.sock.write(encode(msg));
  }

  function sendSnapshot(s: Session): void {
    const snap = builder.snapshot();
    send(s, { type: 'snapshot', version: snap.version, clusterDomain: snap.clusterDomain, services: [...snap.services.values()] });
    s.sentVersion = snap.version;
    s.snapshotsSent++;
  }

  /** Bring one proxy up to the current version: a delta if possible, else a snapshot. */
  function catchUp(s: Session): void {
    if (s.blocked || s.sentVersion === builder.currentVersion()) return;
    const d = builder.deltaSince(s.sentVersion);
    if (!d) sendSnapshot(s);
    else {
      send(s, { type: 'delta', ...d });
      s.sentVersion = d.version;
      s.deltasSent++;
    }
    if (s.sock.writableLength > HIGH_WATER) {
      // A slow proxy: stop queueing; on drain it gets one delta covering everything since.
      s.blocked = true;
      s.sock.once('drain', () => { s.blocked = false; catchUp(s); });
    }
  }

  function settleFanout(): void {
    const active = [...sessions].filter((s) => s.identity);
    for (const [version, t0] of pendingFanout) {
      if (active.every((s) => s.ackedVersion >= version)) {
        pendingFanout.delete(version);
        const ms = performance.now() - t0;
        lastFanoutMs = ms;
        fanoutSamples.push(ms);
        if (fanoutSamples.length > 1000) fanoutSamples.shift();
        m.fanout.observe(ms / 1000);
      }
    }
    for (const w of ackWaiters) {
      if (active.every((s) => s.ackedVersion >= w.version)) { ackWaiters.delete(w); w.resolve(); }
    }
  }

  function apply(change: (b: RegistryBuilder) => RegistryDelta | undefined): void {
    let delta: RegistryDelta | undefined;
    try {
      delta = change(builder);
    } catch (err) {
      log.warn({ err: String(err) }, 'ignored an object the registry cannot use');
      return;
    }
    if (!delta) return;
    m.version.set(delta.version);
    m.services.set(builder.snapshot().services.size);
    if (!synced) return; // proxies get the complete registry once the first list finished
    const active = [...sessions].filter((s) => s.identity);
    if (active.length) pendingFanout.set(delta.version, performance.now());
    for (const s of active) catchUp(s);
  }

  async function admit(s: Session, hello: HelloMsg): Promise<void> {
    if (!Array.isArray(hello.versions) || !hello.versions.includes(PROTOCOL_VERSION)) {
      refuse(s, `unsupported protocol versions ${JSON.stringify(hello.versions)}; this agent speaks ${PROTOCOL_VERSION}`);
      return;
    }
    let peer: { pid: number; via: string } | undefined;
    try {
      peer = await peerPid(s.sock);
    } catch (err) {
      refuse(s, `cannot read peer credentials: ${String(err)}`);
      return;
    }
    if (!peer) { refuse(s, 'kernel reports no peer pid for this connection'); return; }
    s.pid = peer.pid;
    s.pidVia = peer.via;
    let identity: PeerPodIdentity | undefined;
    try {
      identity = await deps.identifyPeer(peer.pid);
    } catch (err) {
      refuse(s, `identifying pid ${peer.pid} failed: ${String(err)}`);
      return;
    }
    if (!identity) { refuse(s, `pid ${peer.pid} does not belong to a pod this agent knows`); return; }
    if (s.sock.destroyed) return;
    s.identity = identity;
    const claimed = hello.claimed;
    if (claimed && ((claimed.namespace && claimed.namespace !== identity.namespace) || (claimed.name && claimed.name !== identity.name))) {
      log.warn({ pid: peer.pid, claimed, identity: { namespace: identity.namespace, name: identity.name } }, 'proxy claimed a different pod; using the kernel-derived identity');
    }
    send(s, { type: 'welcome', version: PROTOCOL_VERSION, epoch, identity: { ...identity } });
    m.connected.set([...sessions].filter((x) => x.identity).length);
    // Resume: the proxy already holds version N from this epoch → only the delta.
    if (hello.resume && hello.resume.epoch === epoch && builder.deltaSince(hello.resume.version)) {
      s.sentVersion = hello.resume.version;
      s.ackedVersion = hello.resume.version;
      s.resumed = true;
      if (synced) catchUp(s);
    } else if (synced) {
      sendSnapshot(s);
    } else {
      s.sentVersion = -1; // snapshot goes out when the first list completes
    }
    log.info({ session: s.id, pid: peer.pid, via: peer.via, pod: `${identity.namespace}/${identity.name}`, resumed: s.resumed, version: s.sentVersion }, 'proxy connected');
  }

  function refuse(s: Session, reason: string): void {
    log.warn({ session: s.id, pid: s.pid || undefined, reason }, 'proxy refused');
    m.refused.inc({ reason: reason.split(':')[0].slice(0, 60) });
    if (!s.sock.destroyed) s.sock.end(encode({ type: 'refused', reason }));
  }

  function onConnection(sock: Socket): void {
    const s: Session = {
      id: nextId++, sock, pid: 0, pidVia: '', connectedAt: new Date(), sentVersion: -1, ackedVersion: -1,
      resumed: false, snapshotsSent: 0, deltasSent: 0, blocked: false,
    };
    sessions.add(s);
    const decoder = new LineDecoder();
    let gotHello = false;
    const helloTimer = setTimeout(() => { if (!gotHello) refuse(s, 'no hello within the timeout'); }, deps.helloTimeoutMs ?? 5000);
    let failed = false;
    // A peer that breaks the protocol gets one error line, then its connection is closed; nobody else notices.
    const protocolError = (reason: string): void => {
      failed = true;
      badPeer(reason);
      if (!sock.destroyed) sock.end(encode({ type: 'error', reason }), () => sock.destroy());
    };
    const onMessage = (msg: ProxyToAgent): void => {
      if (!gotHello) {
        if (msg.type !== 'hello') { refuse(s, `expected hello, got ${JSON.stringify(msg.type)}`); failed = true; return; }
        gotHello = true;
        clearTimeout(helloTimer);
        admit(s, msg).catch((err: unknown) => { log.error({ session: s.id, err: String(err) }, 'admitting a proxy failed'); refuse(s, `internal error: ${String(err)}`); });
      } else if (msg.type === 'ack' && s.identity) {
        if (msg.version > s.sentVersion) { protocolError(`ack.version ${msg.version} was never sent`); return; }
        s.ackedVersion = Math.max(s.ackedVersion, msg.version);
        s.lastAckAt = new Date();
        settleFanout();
      } else if (s.identity) {
        protocolError(`unexpected message type ${JSON.stringify(msg.type)}`);
      }
    };
    sock.on('data', (chunk: Buffer) => {
      if (failed) return;
      try {
        for (const raw of decoder.push(chunk)) {
          onMessage(parseProxyMessage(raw));
          if (failed) return;
        }
      } catch (err) {
        // Undecodable line, a message failing its schema, or a bug in handling one: this connection only.
        if (!(err instanceof MessageError) && !(err instanceof SyntaxError) && !/^protocol:/.test((err as Error).message)) {
          log.error({ session: s.id, err: (err as Error).stack }, 'proxy message handler failed');
        }
        protocolError((err as Error).message);
      }
    });
    sock.on('error', () => { /* close follows */ });
    sock.on('close', () => {
      clearTimeout(helloTimer);
      sessions.delete(s);
      m.connected.set([...sessions].filter((x) => x.identity).length);
      if (s.identity) log.info({ session: s.id, pod: `${s.identity.namespace}/${s.identity.name}`, ackedVersion: s.ackedVersion }, 'proxy disconnected');
      settleFanout();
    });
  }

  mkdirSync(dirname(deps.socketPath), { recursive: true });
  rmSync(deps.socketPath, { force: true }); // a stale socket from a previous agent
  const server: Server = createServer(onConnection);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(deps.socketPath, () => { server.off('error', reject); resolve(); });
  });
  // Proxies run as UID 1337 inside pods; who they are is decided from the kernel, not the file mode.
  chmodSync(deps.socketPath, 0o666);
  log.info({ socket: deps.socketPath, epoch }, 'control plane listening');

  const source = (deps.source ?? ((a) => kubeRegistrySource(deps.kubeConfig, a, log)))(apply);
  const started = source.start().then(() => {
    synced = true;
    log.info({ version: builder.currentVersion(), services: builder.snapshot().services.size }, 'registry synced');
    for (const s of sessions) if (s.identity) catchUp(s);
  }, (err: unknown) => log.error({ err: String(err) }, 'registry source failed to start'));

  return {
    ready: () => synced,
    apply,
    stats() {
      const sorted = [...fanoutSamples].sort((a, b) => a - b);
      const pct = (p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] : undefined);
      return {
        epoch, synced, version: builder.currentVersion(), services: builder.snapshot().services.size,
        fanout: { lastMs: lastFanoutMs, p50Ms: pct(0.5), p99Ms: pct(0.99), samples: sorted.length },
        proxies: [...sessions].filter((s) => s.identity).map((s): ProxySessionStats => ({
          id: s.id, pid: s.pid, pidVia: s.pidVia, pod: `${s.identity!.namespace}/${s.identity!.name}`,
          connectedAt: s.connectedAt.toISOString(), sentVersion: s.sentVersion, ackedVersion: s.ackedVersion,
          lastAckAt: s.lastAckAt?.toISOString(), resumed: s.resumed, snapshotsSent: s.snapshotsSent, deltasSent: s.deltasSent,
        })),
      };
    },
    waitAcked(version, timeoutMs = 5000) {
      return new Promise<void>((resolve, reject) => {
        const w = { version, resolve: () => { clearTimeout(t); resolve(); } };
        const t = setTimeout(() => { ackWaiters.delete(w); reject(new Error(`version ${version} not acked by all proxies within ${timeoutMs} ms`)); }, timeoutMs);
        ackWaiters.add(w);
        settleFanout();
      });
    },
    async close() {
      await source.stop().catch(() => {});
      await started;
      for (const s of sessions) s.sock.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      rmSync(deps.socketPath, { force: true });
    },
  };
}
