// Node-local control plane: serves the service registry to the proxies on
// this node (protocol and trust model: docs/proxy-protocol.md). Who a proxy
// is comes from the kernel: from which pod-netns listener accepted it
// (pod-listeners.ts hands those connections to serve()), or, on the legacy
// host socket, from the peer pid. Every registry change is pushed as a delta
// that each proxy acknowledges. Protocol 2 proxies also get the compiled
// kinds of their view (v2/views.ts), each versioned, acked or nacked.
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import type { KubeConfig } from '@kubernetes/client-node';
import { Counter, Gauge, Histogram, type Registry as MetricsRegistry } from 'prom-client';
import type { Logger } from '../common/log.js';
import { kubeRegistrySource, type RegistrySource } from './kube-source.js';
import { identifyByPeerPid } from './host-socket-identity.js';
import { encode, LineDecoder, PROTOCOL_V2, PROTOCOL_VERSION, PROTOCOL_VERSIONS, type AgentToProxy, type HelloMsg, type ProxyToAgent, type PodIdentity, POD_SOCKET } from './protocol.js';
import { MessageError, parseProxyMessage } from './messages.js';
import { badPeerReporter } from '../common/bad-peer.js';
import { RegistryBuilder, type RegistryBuilderOptions } from './registry-builder.js';
import type { CsrHandler } from './csr-messages.js';
import type { RegistryDelta } from './types.js';
import type { CompiledSource } from './v2/compiled-source.js';
import type { V2Pusher, LastNack } from './v2/pusher.js';
import type { Kind } from './v2/kinds.js';
import { createV2Service } from './v2/service.js';
import type { SecuritySource } from './v2/security-feed.js';

/**
 * What the kernel says about one connection: the pod (or why not), and how
 * it was found. `pid` is the SO_PEERCRED pid on the host socket, 0 otherwise.
 */
export interface ConnectionIdentity {
  identity?: PodIdentity;
  /** Why there is no identity (sent in `refused`). */
  refusal?: string;
  pid: number;
  via: 'pod-listener' | 'SO_PEERCRED' | 'sock_diag';
}

export type IdentifyConnection = (sock: Socket) => Promise<ConnectionIdentity>;

export interface ControlPlaneDeps {
  kubeConfig: KubeConfig;
  /**
   * The legacy host socket (e.g. /var/run/weir/proxy.sock) where identity
   * comes from the peer pid; undefined = none (pods reach the agent through
   * their pod-netns listener, see serve()).
   */
  socketPath?: string;
  logger: Logger;
  metrics: MetricsRegistry;
  clusterDomain: string;
  /** For the host socket: maps a peer pid to the pod it runs in, or undefined (never called for pid 0). */
  identifyPeer?(pid: number): Promise<PodIdentity | undefined>;
  /**
   * Where Services/EndpointSlices come from. Default: list+watch through
   * kubeConfig. Tests and embedders can drive the builder themselves.
   */
  source?: (apply: (change: (b: RegistryBuilder) => RegistryDelta | undefined) => void) => RegistrySource;
  /** How long a proxy has to send hello. Default 5000 ms. */
  helloTimeoutMs?: number;
  /** What v2 views are compiled from besides the registry. Default: Services alone (no Istio resources). */
  compiled?: CompiledSource;
  /** PeerAuthentication / AuthorizationPolicy compiled per workload (the v2 Security kind, v2/security-feed.ts). Default: none pushed. */
  security?: SecuritySource;
  /** Resolves when the compiled source's inputs are listed (v2 pushes wait for it, as for the registry). */
  compiledReady?: Promise<void>;
  /** Recompile debounce for v2 views. Default 20 ms. */
  compileDebounceMs?: number;
  /** Extra registry-builder options (endpoint metadata in tests until the pod informer fills it). */
  builder?: RegistryBuilderOptions;
  /** Answers a proxy's csr (src/agent/csr-forwarder.ts); undefined = this agent issues no certificates. */
  onCsr?: CsrHandler;
}

export interface ProxySessionStats {
  id: number;
  pid: number;
  identifiedBy: string;
  pod: string;
  connectedAt: string;
  sentVersion: number;
  ackedVersion: number;
  lastAckAt?: string;
  resumed: boolean;
  snapshotsSent: number;
  deltasSent: number;
  protocol: number;
  /** v2: the shared view this proxy gets, per-kind versions, and the last NACK it sent. */
  view?: string;
  kinds?: Record<string, { sent: number; acked: number; pushes: number; nacks: number }>;
  lastNack?: LastNack;
}

export interface ControlPlane {
  ready(): boolean;
  stats(): Record<string, unknown>;
  close(): Promise<void>;
  /** Apply a change to the registry directly (used by the kube source, and by tests). */
  apply(change: (b: RegistryBuilder) => RegistryDelta | undefined): void;
  /** Resolves when every proxy connected now has acked `version` (or left). */
  waitAcked(version: number, timeoutMs?: number): Promise<void>;
  /** Serve an accepted connection whose identity `identify` decides (a pod-netns listener's). */
  serve(sock: Socket, identify: IdentifyConnection): void;
}

/** Above this many unsent bytes for one proxy, stop writing and coalesce into one delta on drain. */
const HIGH_WATER = 4 * 1024 * 1024;

export interface Session {
  id: number;
  sock: Socket;
  identify: IdentifyConnection;
  pid: number;
  identifiedBy: string;
  identity?: PodIdentity;
  connectedAt: Date;
  sentVersion: number;
  ackedVersion: number;
  lastAckAt?: Date;
  resumed: boolean;
  snapshotsSent: number;
  deltasSent: number;
  blocked: boolean;
  protocol: number;
  v2?: V2Pusher;
  viewKey?: string;
}

export async function startControlPlane(deps: ControlPlaneDeps): Promise<ControlPlane> {
  const log = deps.logger.child({ component: 'controlplane' });
  const builder = new RegistryBuilder({ ...deps.builder, clusterDomain: deps.clusterDomain });
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
  const v2 = createV2Service({
    log, metrics: deps.metrics, builder, epoch, clusterDomain: deps.clusterDomain, compiled: deps.compiled, security: deps.security, debounceMs: deps.compileDebounceMs, certificates: deps.onCsr !== undefined,
    sessions: () => sessions, synced: () => synced, apply: (c) => apply(c), settleFanout: () => settleFanout(),
  });

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
    if (s.v2) { s.v2.catchUp(); return; }
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
    v2.onRegistryDelta(delta);
    m.version.set(delta.version);
    m.services.set(builder.size()); // not snapshot(): at 10k Services, a map copy per informer event was the agent's top CPU cost
    if (!synced) return; // proxies get the complete registry once the first list finished
    const active = [...sessions].filter((s) => s.identity);
    if (active.length) pendingFanout.set(delta.version, performance.now());
    for (const s of active) catchUp(s);
    // Proxies whose scoped registry this change did not touch count as acked already (v2/scoped-registry.ts).
    if (active.length) settleFanout();
  }

  async function admit(s: Session, hello: HelloMsg): Promise<void> {
    const protocol = PROTOCOL_VERSIONS.find((v) => hello.versions.includes(v));
    if (protocol === undefined) {
      refuse(s, `unsupported protocol versions ${JSON.stringify(hello.versions)}; this agent speaks ${PROTOCOL_VERSIONS.join(', ')}`);
      return;
    }
    let found: ConnectionIdentity;
    try {
      found = await s.identify(s.sock);
    } catch (err) {
      refuse(s, `identifying the peer failed: ${String(err)}`);
      return;
    }
    s.pid = found.pid;
    s.identifiedBy = found.via;
    const identity = found.identity;
    if (!identity) { refuse(s, found.refusal ?? 'the peer does not belong to a pod this agent knows'); return; }
    if (s.sock.destroyed) return;
    s.identity = identity;
    const claimed = hello.claimed;
    if (claimed && ((claimed.namespace && claimed.namespace !== identity.namespace) || (claimed.name && claimed.name !== identity.name))) {
      log.warn({ via: found.via, pid: found.pid || undefined, claimed, identity: { namespace: identity.namespace, name: identity.name } }, 'proxy claimed a different pod; using the kernel-derived identity');
    }
    m.connected.set([...sessions].filter((x) => x.identity).length);
    if (protocol === PROTOCOL_V2) { v2.admit(s, hello, identity); return; }
    send(s, { type: 'welcome', version: PROTOCOL_VERSION, epoch, identity: { ...identity }, ...(deps.onCsr ? { certificates: true } : {}) });
    // Resume: the proxy already holds version N from this epoch → only the delta.
    if (hello.resume?.version !== undefined && hello.resume.epoch === epoch && builder.deltaSince(hello.resume.version)) {
      s.sentVersion = hello.resume.version;
      s.ackedVersion = hello.resume.version;
      s.resumed = true;
      if (synced) catchUp(s);
    } else if (synced) {
      sendSnapshot(s);
    } else {
      s.sentVersion = -1; // snapshot goes out when the first list completes
    }
    log.info({ session: s.id, pid: found.pid || undefined, via: found.via, pod: `${identity.namespace}/${identity.name}`, resumed: s.resumed, version: s.sentVersion }, 'proxy connected');
  }

  /** The identity is the session's (kernel-derived), never anything in the CSR; the answer goes to the same connection. */
  function answerCsr(s: Session, msg: import('./protocol.js').CsrMsg): void {
    const identity = s.identity!;
    const answer = deps.onCsr
      ? deps.onCsr(identity, msg).catch((err: unknown) => ({ type: 'error' as const, nonce: msg.nonce, reason: `internal error: ${String(err)}` }))
      : Promise.resolve({ type: 'error' as const, nonce: msg.nonce, reason: 'this agent issues no certificates (no --ca-url)' });
    void answer.then((a) => { if (!s.sock.destroyed) send(s, a); });
  }

  function refuse(s: Session, reason: string): void {
    log.warn({ session: s.id, pid: s.pid || undefined, reason }, 'proxy refused');
    m.refused.inc({ reason: reason.split(':')[0].slice(0, 60) });
    if (!s.sock.destroyed) s.sock.end(encode({ type: 'refused', reason }));
  }

  function onConnection(sock: Socket, identify: IdentifyConnection): void {
    const s: Session = {
      id: nextId++, sock, identify, pid: 0, identifiedBy: '', connectedAt: new Date(), sentVersion: -1, ackedVersion: -1,
      resumed: false, snapshotsSent: 0, deltasSent: 0, blocked: false, protocol: PROTOCOL_VERSION,
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
      } else if (s.v2 && (msg.type === 'ack' || msg.type === 'nack')) {
        const err = msg.type === 'ack' ? s.v2.ack(msg as typeof msg & { kind: Kind; nonce: string }) : s.v2.nack(msg);
        if (err) protocolError(err);
      } else if (msg.type === 'ack' && s.identity) {
        if (msg.version > s.sentVersion) { protocolError(`ack.version ${msg.version} was never sent`); return; }
        s.ackedVersion = Math.max(s.ackedVersion, msg.version);
        s.lastAckAt = new Date();
        settleFanout();
      } else if (msg.type === 'csr' && s.identity) {
        answerCsr(s, msg);
      } else if (s.identity) {
        protocolError(`unexpected message type ${JSON.stringify(msg.type)}`);
      }
    };
    sock.on('data', (chunk: Buffer) => {
      if (failed) return;
      try {
        for (const raw of decoder.push(chunk)) {
          onMessage(parseProxyMessage(raw, s.protocol));
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
      v2.release(s);
      m.connected.set([...sessions].filter((x) => x.identity).length);
      if (s.identity) log.info({ session: s.id, pod: `${s.identity.namespace}/${s.identity.name}`, ackedVersion: s.ackedVersion }, 'proxy disconnected');
      settleFanout();
    });
  }

  let server: Server | undefined;
  const socketPath = deps.socketPath;
  if (socketPath) {
    const byPid = identifyByPeerPid(deps.identifyPeer);
    mkdirSync(dirname(socketPath), { recursive: true });
    rmSync(socketPath, { force: true }); // a stale socket from a previous agent
    const srv = createServer((sock) => onConnection(sock, byPid));
    server = srv;
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(socketPath, () => { srv.off('error', reject); resolve(); });
    });
    // Proxies run as UID 1337; who they are is decided from the kernel, not the file mode.
    chmodSync(socketPath, 0o666);
  }
  log.info({ socket: socketPath, epoch }, 'control plane started');

  const source = (deps.source ?? ((a) => kubeRegistrySource(deps.kubeConfig, a, log)))(apply);
  const started = Promise.all([source.start(), deps.compiledReady]).then(() => {
    synced = true;
    log.info({ version: builder.currentVersion(), services: builder.size() }, 'registry synced');
    for (const s of sessions) if (s.identity) catchUp(s);
  }, (err: unknown) => log.error({ err: String(err) }, 'registry source failed to start'));

  return {
    ready: () => synced,
    apply,
    serve: (sock, identify) => onConnection(sock, identify),
    stats() {
      const sorted = [...fanoutSamples].sort((a, b) => a - b);
      const pct = (p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] : undefined);
      return {
        epoch, synced, version: builder.currentVersion(), services: builder.size(),
        fanout: { lastMs: lastFanoutMs, p50Ms: pct(0.5), p99Ms: pct(0.99), samples: sorted.length },
        proxies: [...sessions].filter((s) => s.identity).map((s): ProxySessionStats => ({
          id: s.id, pid: s.pid, identifiedBy: s.identifiedBy, pod: `${s.identity!.namespace}/${s.identity!.name}`,
          connectedAt: s.connectedAt.toISOString(), sentVersion: s.sentVersion, ackedVersion: s.ackedVersion,
          lastAckAt: s.lastAckAt?.toISOString(), resumed: s.resumed, snapshotsSent: s.snapshotsSent, deltasSent: s.deltasSent,
          protocol: s.protocol, view: s.viewKey, kinds: s.v2?.stats(), lastNack: s.v2?.lastNack,
        })),
        views: v2.viewStats(),
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
      v2.close();
      for (const s of sessions) s.sock.destroy();
      if (server) await new Promise<void>((resolve) => server!.close(() => resolve()));
      if (socketPath) rmSync(socketPath, { force: true });
    },
  };
}
