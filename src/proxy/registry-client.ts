// The proxy side of the control-plane protocol (docs/proxy-protocol.md):
// connect to the node agent, say hello offering versions 2 and 1 (with a
// resume token after a reconnect), then follow what the agent chose: v1
// snapshot + deltas acked by version, or v2 typed pushes per kind, each
// checked and acked or nacked (v2-applier.ts). Keeps the
// last registry across disconnects (stale routes beat no routes) and
// reconnects with capped backoff forever.
import { EventEmitter } from 'node:events';
import { connect, type Socket } from 'node:net';
import type { Logger } from '../common/log.js';
import { encode, LineDecoder, PROTOCOL_V2, PROTOCOL_VERSIONS, type AgentToProxy, type HelloMsg, type PodIdentity, type ProxyToAgent } from '../controlplane/protocol.js';
import { CompiledConfigStore } from './compiled/store.js';
import { checkPush, V2Applier } from './v2-applier.js';
import type { SecurityItem } from '../security/items.js';
import { applyDelta } from '../controlplane/registry-builder.js';
import type { Registry, RegistryService, RegistryView } from '../controlplane/types.js';

export interface RegistryClientOptions {
  /** A filesystem path, or `@name` for an abstract socket in the proxy's own netns (the default, `@weir/proxy`). */
  socketPath: string;
  logger: Logger;
  claimed?: { namespace?: string; name?: string };
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** Where v2 compiled kinds go (the router, TCP chain and config dump read it). Default: a new store. */
  compiled?: CompiledConfigStore;
  /** Protocol versions offered in hello (tests pin [1] to play an old proxy). Default [2, 1]. */
  versions?: number[];
}

/** `@name` → Node's spelling of an abstract unix address (leading NUL); paths unchanged. */
export function socketAddress(spec: string): string {
  return spec.startsWith('@') ? `\0${spec.slice(1)}` : spec;
}

export class RegistryClient extends EventEmitter implements RegistryView {
  private registry: Registry | undefined;
  private sock: Socket | undefined;
  private epoch: string | undefined;
  private stopped = false;
  private backoff: number;
  private timer: NodeJS.Timeout | undefined;
  identity: PodIdentity | undefined;
  /** The agent said it answers csr (welcome.certificates). */
  certificatesOffered = false;
  connected = false;
  lastRefusal: string | undefined;
  snapshots = 0;
  deltas = 0;
  /** The protocol the agent chose in the last welcome (0 before one). */
  protocol = 0;
  pushes = 0;
  readonly compiled: CompiledConfigStore;
  readonly v2: V2Applier;
  /** The last Security items applied (v2), for a SecurityState made after they arrived. */
  securityItems: SecurityItem[] | undefined;

  constructor(private readonly opts: RegistryClientOptions) {
    super();
    this.backoff = opts.minBackoffMs ?? 100;
    this.compiled = opts.compiled ?? new CompiledConfigStore();
    // Security items go to whoever enforces them (mtls/security-state.ts); a listener that throws refuses the push.
    this.v2 = new V2Applier(this.compiled, 'cluster.local', (reg) => { this.registry = reg; this.emit('update', reg); }, (items) => { this.emit('security', items); this.securityItems = items; });
  }

  current(): Registry | undefined {
    return this.registry;
  }

  start(): void {
    this.dial();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.sock?.destroy();
  }

  private dial(): void {
    if (this.stopped) return;
    const log = this.opts.logger;
    const sock = connect(socketAddress(this.opts.socketPath));
    this.sock = sock;
    const decoder = new LineDecoder();
    sock.on('connect', () => {
      let resume: HelloMsg['resume'];
      // v2 also sends the v1 field: an agent that only speaks 1 must still be able to read the hello.
      if (this.epoch && this.protocol === PROTOCOL_V2) resume = { epoch: this.epoch, version: this.registry?.version ?? -1, versions: this.v2.versions() };
      else if (this.epoch && this.registry) resume = { epoch: this.epoch, version: this.registry.version };
      sock.write(encode({ type: 'hello', versions: this.opts.versions ?? PROTOCOL_VERSIONS, resume, claimed: this.opts.claimed }));
    });
    sock.on('data', (chunk: Buffer) => {
      let msgs: unknown[];
      try {
        msgs = decoder.push(chunk);
      } catch (err) {
        log.warn({ err: String(err) }, 'control plane sent a malformed message; reconnecting');
        sock.destroy();
        return;
      }
      for (const m of msgs) this.handle(sock, m as AgentToProxy);
    });
    sock.on('error', (err: NodeJS.ErrnoException) => {
      if (this.backoff <= (this.opts.minBackoffMs ?? 100)) log.debug({ err: err.code ?? String(err) }, 'control plane not reachable');
    });
    sock.on('close', () => {
      if (this.connected) {
        log.warn({ version: this.registry?.version }, 'control plane connection lost; keeping the last registry');
        this.emit('disconnected');
      }
      this.connected = false;
      if (this.stopped) return;
      this.timer = setTimeout(() => this.dial(), this.backoff);
      this.timer.unref?.();
      this.backoff = Math.min(this.backoff * 2, this.opts.maxBackoffMs ?? 5000);
    });
  }

  private handle(sock: Socket, msg: AgentToProxy): void {
    const log = this.opts.logger;
    switch (msg.type) {
      case 'welcome':
        if (msg.epoch !== this.epoch || msg.version !== this.protocol) this.v2.reset();
        this.epoch = msg.epoch;
        this.protocol = msg.version;
        if (msg.clusterDomain) this.v2.setClusterDomain(msg.clusterDomain);
        this.identity = msg.identity;
        this.certificatesOffered = msg.certificates === true;
        this.connected = true;
        this.lastRefusal = undefined;
        this.backoff = this.opts.minBackoffMs ?? 100;
        log.info({ identity: `${msg.identity.namespace}/${msg.identity.name}` }, 'control plane accepted this proxy');
        this.emit('connected', msg.identity);
        return;
      case 'refused':
        this.lastRefusal = msg.reason;
        log.error({ reason: msg.reason }, 'control plane refused this proxy');
        this.backoff = Math.max(this.backoff, 1000);
        return;
      case 'certificate':
      case 'error':
        if (msg.nonce !== undefined) { this.emit('certificate-answer', msg); return; }
        log.warn({ reason: (msg as { reason?: string }).reason }, 'control plane reported a protocol error');
        return;
      case 'push': {
        if (this.protocol !== PROTOCOL_V2) { log.warn({}, 'push on a protocol 1 connection; reconnecting'); sock.destroy(); return; }
        const { msg: push, errors } = checkPush(msg as unknown as Record<string, unknown>);
        if (!push) {
          const raw = msg as unknown as Record<string, unknown>;
          if (typeof raw.kind !== 'string' || typeof raw.nonce !== 'string' || !Number.isSafeInteger(raw.version)) {
            log.warn({ errors }, 'control plane sent a push that cannot be answered; reconnecting');
            sock.destroy();
            return;
          }
          sock.write(encode({ type: 'nack', kind: raw.kind as never, version: raw.version as number, nonce: raw.nonce, errors }));
          return;
        }
        this.pushes++;
        const answer = this.v2.handle(push);
        if (answer.type === 'nack') log.warn({ kind: push.kind, version: push.version, errors: answer.errors.slice(0, 5) }, 'rejected a control-plane push; keeping the last good config of that kind');
        // The registry's counters mean the same under v1 and v2: a whole registry received, or a change to it.
        else if (push.kind === 'Registry') { if (push.full) this.snapshots++; else this.deltas++; }
        sock.write(encode(answer));
        return;
      }
      case 'snapshot': {
        const services = new Map<string, RegistryService>();
        for (const s of msg.services) services.set(`${s.namespace}/${s.name}`, s);
        this.install(sock, { version: msg.version, clusterDomain: msg.clusterDomain, services });
        this.snapshots++;
        return;
      }
      case 'delta': {
        if (!this.registry || this.registry.version !== msg.fromVersion) {
          // Out of step: start over without a resume token, which yields a snapshot.
          log.warn({ have: this.registry?.version, fromVersion: msg.fromVersion }, 'delta does not apply; resyncing');
          this.epoch = undefined;
          sock.destroy();
          return;
        }
        this.install(sock, applyDelta(this.registry, msg));
        this.deltas++;
        return;
      }
    }
  }

  /** Sends one message on the current connection; false when not connected (the caller retries). */
  send(msg: ProxyToAgent): boolean {
    if (!this.connected || !this.sock || this.sock.destroyed) return false;
    this.sock.write(encode(msg));
    return true;
  }

  private install(sock: Socket, reg: Registry): void {
    this.registry = reg;
    this.emit('update', reg);
    sock.write(encode({ type: 'ack', version: reg.version }));
  }
}
