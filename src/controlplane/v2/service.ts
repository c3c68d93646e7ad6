// The v2 half of the control-plane server: shared compiled views, each v2
// session's pusher, ServiceEntry hosts joining the registry, and which
// registry changes cost a recompile. server.ts keeps the socket, identity,
// v1 and fan-out accounting.
import { Counter, type Registry as MetricsRegistry } from 'prom-client';
import type { Logger } from '../../common/log.js';
import { IstioConfigStore } from '../istio-source.js';
import type { HelloMsg, PodIdentity } from '../protocol.js';
import type { RegistryBuilder } from '../registry-builder.js';
import type { Session } from '../server.js';
import type { RegistryDelta } from '../types.js';
import { istioCompiledSource, type CompiledSource } from './compiled-source.js';
import { COMPILED_KINDS, itemsOf, type Kind } from './kinds.js';
import { baseView } from './base-view.js';
import { PushBudget, V2Pusher } from './pusher.js';
import { registryFeed } from './registry-feed.js';
import { RegistryScopes } from './registry-scopes.js';
import { createSecurityFeeds, type SecuritySource } from './security-feed.js';
import { CompiledViews } from './views.js';

export interface V2ServiceDeps {
  log: Logger;
  metrics: MetricsRegistry;
  builder: RegistryBuilder;
  epoch: string;
  clusterDomain: string;
  /** Default: Services alone (an empty Istio store). */
  compiled?: CompiledSource;
  /** PeerAuthentication / AuthorizationPolicy per workload (the Security kind); undefined = that kind is never pushed. */
  security?: SecuritySource;
  debounceMs?: number;
  /** This agent answers csr (welcome.certificates). */
  certificates?: boolean;
  sessions(): Iterable<Session>;
  synced(): boolean;
  apply(change: (b: RegistryBuilder) => RegistryDelta | undefined): void;
  settleFanout(): void;
}

export function createV2Service(d: V2ServiceDeps) {
  const compiled = d.compiled ?? istioCompiledSource({ store: new IstioConfigStore(), rootNamespace: 'istio-system' });
  const regFeed = registryFeed(d.builder);
  const budget = new PushBudget();
  // A view under a Sidecar with egress hosts gets only that part of the registry (scoped-registry.ts).
  const scopes = new RegistryScopes(d.builder, regFeed, (key) => compiled.registryScope?.(key, d.clusterDomain));
  const wholeRegistry = (key: string): void => {
    for (const s of d.sessions()) if (s.v2 && s.viewKey === key) { s.v2.restart(['Registry']); if (d.synced()) s.v2.catchUp(['Registry']); }
  };
  const m = {
    nacks: new Counter({ name: 'weir_controlplane_nacks_total', help: 'Pushes a proxy rejected (it kept its last good config of that kind)', labelNames: ['kind'], registers: [d.metrics] }),
    pushBytes: new Counter({ name: 'weir_controlplane_push_bytes_total', help: 'Bytes of v2 pushes written to proxies', labelNames: ['kind'], registers: [d.metrics] }),
  };
  // ServiceEntry hosts join the registry (DNS, L4 by VIP) on the same debounce as the views.
  let entriesDue = false;
  // Views without a Sidecar share one compiled base (translate/shared-base.ts, views.ts, base-view.ts).
  let registryShape = 0;
  const base = baseView(compiled, () => d.builder.services(), d.clusterDomain, () => registryShape);
  const views = new CompiledViews({
    logger: d.log, debounceMs: d.debounceMs, kinds: COMPILED_KINDS,
    compile: (key) => itemsOf(compiled.compile(key, [...d.builder.services()], d.clusterDomain)),
    base,
    onChanged: (key, kinds) => { for (const s of d.sessions()) if (s.v2 && s.viewKey === key && d.synced()) s.v2.catchUp(kinds); },
    beforeRecompile: () => {
      for (const key of scopes.refresh(views.keys())) wholeRegistry(key);
      if (entriesDue && compiled.registryEntries) { entriesDue = false; d.apply((b) => b.setServiceEntries(compiled.registryEntries!())); }
      // A Sidecar added, changed or removed can move a proxy to another view: it then gets that view whole.
      for (const s of d.sessions()) {
        if (!s.v2 || !s.identity || s.viewKey === undefined) continue;
        const key = compiled.viewKey(s.identity);
        if (key === s.viewKey) continue;
        const registryBefore = scopes.feed(s.viewKey);
        views.acquire(key);
        scopes.ensure(key);
        views.release(s.viewKey);
        s.viewKey = key;
        s.v2.restart(scopes.feed(key) === registryBefore ? COMPILED_KINDS : ['Registry', ...COMPILED_KINDS]);
        if (d.synced()) s.v2.catchUp();
      }
    },
  });
  compiled.onChange(() => { entriesDue = true; views.invalidate(); });
  const security = d.security ? createSecurityFeeds({ source: d.security, logger: d.log, debounceMs: d.debounceMs, sessions: d.sessions, synced: d.synced }) : undefined;

  /**
   * The compiled kinds read Services' names, ports, addresses and kinds, never
   * their endpoints: an endpoint-only change (the common one, at 100k
   * endpoints) costs no recompile.
   */
  const shapes = new Map<string, string>();
  function shapeChanged(delta: RegistryDelta): boolean {
    let changed = false;
    for (const k of delta.deletes) changed = shapes.delete(k) || changed;
    for (const svc of delta.upserts) {
      const key = `${svc.namespace}/${svc.name}`;
      const shape = JSON.stringify({ ...svc, endpoints: undefined });
      if (shapes.get(key) !== shape) { shapes.set(key, shape); changed = true; }
    }
    if (changed) registryShape++;
    return changed;
  }

  return {
    onRegistryDelta(delta: RegistryDelta): void {
      scopes.onDelta(delta);
      // A change outside a scoped view is already "acked" by its proxies that hold its latest registry (fan-out accounting).
      for (const s of d.sessions()) if (s.v2 && scopes.isScoped(s.viewKey)) s.ackedVersion = scopes.nodeVersionOf(s.viewKey, s.v2.ackedVersion('Registry'));
      if (shapeChanged(delta)) views.invalidate();
    },

    admit(s: Session, hello: HelloMsg, identity: PodIdentity): void {
      s.protocol = 2;
      const viewKey = compiled.viewKey(identity);
      s.viewKey = viewKey;
      views.acquire(viewKey);
      scopes.ensure(viewKey);
      security?.admit(s, identity);
      const feed = (kind: Kind) => (kind === 'Registry' ? scopes.feed(s.viewKey) : kind === 'Security' ? security?.feed(s) : s.viewKey !== undefined ? views.feed(s.viewKey, kind) : undefined);
      const pusher = new V2Pusher(s.sock, s.id, feed, {
        onPush: (kind, bytes) => {
          m.pushBytes.inc({ kind }, bytes);
          if (kind === 'Registry') s.sentVersion = scopes.nodeVersionOf(s.viewKey, pusher.sentVersion('Registry'));
        },
        onAck: (kind, version) => {
          if (kind !== 'Registry') return;
          s.ackedVersion = scopes.nodeVersionOf(s.viewKey, version);
          s.lastAckAt = new Date();
          d.settleFanout();
        },
        onNack: (n) => {
          m.nacks.inc({ kind: n.kind });
          d.log.warn({ session: s.id, pod: `${identity.namespace}/${identity.name}`, kind: n.kind, version: n.version, errors: n.errors.slice(0, 5) }, 'proxy rejected a push; it keeps its last good config of that kind');
        },
      }, budget);
      s.v2 = pusher;
      s.sock.write(JSON.stringify({ type: 'welcome', version: 2, epoch: d.epoch, identity: { ...identity }, clusterDomain: d.clusterDomain, ...(d.certificates ? { certificates: true } : {}) }) + '\n');
      if (hello.resume?.versions && hello.resume.epoch === d.epoch) {
        const resumed = pusher.resume(hello.resume.versions);
        s.resumed = resumed.length > 0;
        if (resumed.includes('Registry')) s.ackedVersion = s.sentVersion = scopes.nodeVersionOf(s.viewKey, pusher.sentVersion('Registry'));
      }
      if (d.synced()) pusher.catchUp();
      d.log.info({ session: s.id, via: s.identifiedBy, pod: `${identity.namespace}/${identity.name}`, protocol: 2, view: s.viewKey, resumed: s.resumed }, 'proxy connected');
    },

    release(s: Session): void { if (s.viewKey !== undefined) views.release(s.viewKey); security?.release(s); },
    viewStats: () => ({ live: views.keys(), compiles: views.compiles, baseCompiles: views.baseCompiles, ...(base ? { baseView: base.stats } : {}), overlayUpdates: views.overlayUpdates, rounds: views.rounds, layering: views.layering(), lastCompileMs: views.lastCompileMs, sharedStrings: views.sharedStrings(), scopedRegistries: scopes.stats(), ...(security ? { securityWorkloads: security.workloads().length } : {}) }),
    /** Pod labels changed (the pod informer): workloads may have to be re-keyed. */
    onPodLabels: () => security?.invalidate(),
    close: () => { views.close(); security?.close(); },
  };
}
