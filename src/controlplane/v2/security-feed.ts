// The v2 `Security` kind, agent side: PeerAuthentication and
// AuthorizationPolicy (security.istio.io, fed by an IstioConfigSource with
// SECURITY_API) compiled per workload — the proxy's namespace and its pod's
// labels, as the agent knows them from the pod informer — with the shared
// views machinery (views.ts): proxies of one workload share one compile, a
// policy change recompiles every live workload after the debounce, and only
// those whose outcome changed get a push.
import type { Logger } from '../../common/log.js';
import type { IstioConfigStore } from '../istio-source.js';
import type { PodIdentity } from '../protocol.js';
import type { Session } from '../server.js';
import { compileSecurity } from '../../security/compile.js';
import { securityItems, type SecurityItem } from '../../security/items.js';
import type { SecurityResource } from '../../security/types.js';
import { CompiledViews } from './views.js';

export interface SecuritySource {
  /** Which workload a proxy is: the compile's inputs, as one string. */
  workloadKey(identity: PodIdentity): string;
  compile(key: string): SecurityItem[];
  onChange(cb: () => void): void;
}

export interface IstioSecuritySourceOptions {
  store: IstioConfigStore<SecurityResource>;
  rootNamespace: string;
  podLabels?(namespace: string, name: string): Record<string, string> | undefined;
  /** Calls back when some pod's labels may have changed (the pod informer): proxies are then re-keyed to their workload. */
  onLabelsChange?(cb: () => void): void;
}

export function istioSecuritySource(o: IstioSecuritySourceOptions): SecuritySource {
  return {
    workloadKey(identity) {
      const labels = o.podLabels?.(identity.namespace, identity.name) ?? {};
      return JSON.stringify([identity.namespace, Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))]);
    },
    compile(key) {
      const [namespace, labels] = JSON.parse(key) as [string, [string, string][]];
      const c = compileSecurity(o.store.resources(), { namespace, labels: Object.fromEntries(labels) }, o.rootNamespace);
      // What the store refused or only partly applies, for the policies this workload could be subject to.
      const mine = (ns: string) => ns === namespace || ns === o.rootNamespace;
      for (const r of o.store.rejectedResources()) {
        if (!mine(r.namespace)) continue;
        for (const p of r.problems) if (p.severity === 'error') c.ignored.push(`${r.kind} ${r.namespace}/${r.name}: ${p.field}: rejected: ${p.message}`);
      }
      for (const n of o.store.notesFor()) {
        const [kind, ns, name] = n.key.split('/');
        if (!mine(ns)) continue;
        for (const p of n.problems) c.ignored.push(`${kind} ${ns}/${name}: ${p.field}: ${p.message}`);
      }
      return securityItems(c);
    },
    onChange(cb) { o.store.on('change', cb); o.onLabelsChange?.(cb); },
  };
}

export interface SecurityFeedsDeps {
  source: SecuritySource;
  logger: Logger;
  debounceMs?: number;
  sessions(): Iterable<Session>;
  synced(): boolean;
}

/** Which workload each v2 session is, and the Security feed it reads. */
export function createSecurityFeeds(d: SecurityFeedsDeps) {
  const keys = new WeakMap<Session, string>();
  const views = new CompiledViews<'Security'>({
    kinds: ['Security'], logger: d.logger, debounceMs: d.debounceMs,
    compile: (key) => ({ Security: d.source.compile(key) }),
    onChanged: (key) => { for (const s of d.sessions()) if (s.v2 && keys.get(s) === key && d.synced()) s.v2.catchUp(['Security']); },
    // A proxy's labels may have become known (or changed) since it connected: it then moves to its workload's feed, whole.
    beforeRecompile: () => {
      for (const s of d.sessions()) {
        const old = keys.get(s);
        if (!s.v2 || !s.identity || old === undefined) continue;
        const key = d.source.workloadKey(s.identity);
        if (key === old) continue;
        views.acquire(key);
        views.release(old);
        keys.set(s, key);
        s.v2.restart(['Security']);
        if (d.synced()) s.v2.catchUp(['Security']);
      }
    },
  });
  d.source.onChange(() => views.invalidate());
  return {
    /** Before the session's pusher resumes: its feed must exist to continue by delta. */
    admit(s: Session, identity: PodIdentity): void {
      const key = d.source.workloadKey(identity);
      keys.set(s, key);
      views.acquire(key);
    },
    feed(s: Session) { const k = keys.get(s); return k === undefined ? undefined : views.feed(k, 'Security'); },
    release(s: Session): void { const k = keys.get(s); if (k !== undefined) { keys.delete(s); views.release(k); } },
    /** Pod labels changed somewhere: re-key sessions on the next round. */
    invalidate: () => views.invalidate(),
    workloads: () => views.keys(),
    close: () => views.close(),
  };
}
