// Compiled views shared by proxies: one per view key (a proxy namespace, or
// namespace + the Sidecar that selects the proxy), compiled once for every
// proxy that has that key, kept while one is connected. Any input change
// (registry, Istio resources) marks all views dirty; they are recompiled
// together after a short debounce (a burst of informer events costs one
// compile), and only views whose output changed are reported, so proxies
// whose view did not change get no push. The same machinery keeps the
// per-workload `Security` kind (security-feed.ts): `kinds` says which.
import type { Logger } from '../../common/log.js';
import { keyOf, type Kind } from './kinds.js';
import { counter, VersionedKind } from './versioned-kind.js';

type Kinds<K extends Kind> = Record<K, VersionedKind<unknown>>;

interface View<K extends Kind> { key: string; refs: number; kinds: Kinds<K>; drop?: NodeJS.Timeout }

export interface ViewsOptions<K extends Kind> {
  /** The kinds every view holds. */
  kinds: readonly K[];
  /** A view's items of each kind (e.g. itemsOf(compileProxyConfig(…))). */
  compile(key: string): Record<K, readonly unknown[]>;
  /** Called after a recompile with the views that changed and which kinds. */
  onChanged(key: string, kinds: K[]): void;
  /** Runs first in each debounced round (proxies may move to another view key, e.g. a Sidecar now selects them). */
  beforeRecompile?(): void;
  logger: Logger;
  debounceMs?: number;
  /** How long a view outlives its last proxy, so a proxy that reconnects resumes by delta. Default 60 s. */
  lingerMs?: number;
}

export class CompiledViews<K extends Kind> {
  private readonly views = new Map<string, View<K>>();
  private timer?: NodeJS.Timeout;
  /** One version space for every view (versioned-kind.ts says why). */
  private readonly nextVersion = counter();
  compiles = 0;
  lastCompileMs = 0;

  constructor(private readonly opts: ViewsOptions<K>) {}

  /** A proxy with this key connected: compile now if it is the first. */
  acquire(key: string): void {
    let v = this.views.get(key);
    if (!v) {
      const kinds = Object.fromEntries(this.opts.kinds.map((k) => [k, new VersionedKind<unknown>((item) => keyOf(k, item as never), this.nextVersion)])) as Kinds<K>;
      v = { key, refs: 0, kinds };
      this.views.set(key, v);
      this.recompile(v);
    }
    clearTimeout(v.drop);
    v.refs++;
  }

  release(key: string): void {
    const v = this.views.get(key);
    if (!v || --v.refs > 0) return;
    v.drop = setTimeout(() => { if (v.refs <= 0) this.views.delete(key); }, this.opts.lingerMs ?? 60_000);
    v.drop.unref();
  }

  feed(key: string, kind: K): VersionedKind<unknown> | undefined {
    return this.views.get(key)?.kinds[kind];
  }

  keys(): string[] { return [...this.views.keys()]; }

  /** Inputs changed: recompile every view after the debounce. */
  invalidate(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.opts.beforeRecompile?.();
      for (const v of [...this.views.values()]) {
        const changed = this.recompile(v);
        if (changed.length) this.opts.onChanged(v.key, changed);
      }
    }, this.opts.debounceMs ?? 20);
  }

  close(): void {
    clearTimeout(this.timer);
    for (const v of this.views.values()) clearTimeout(v.drop);
    this.views.clear();
  }

  private recompile(v: View<K>): K[] {
    const t0 = performance.now();
    let items: Record<K, readonly unknown[]>;
    try {
      items = this.opts.compile(v.key);
    } catch (err) {
      // A translator bug must not take the agent down: this view keeps its last output.
      this.opts.logger.error({ view: v.key, err: (err as Error).stack }, 'compiling a proxy view failed; keeping the last one');
      return [];
    }
    this.compiles++;
    this.lastCompileMs = performance.now() - t0;
    return this.opts.kinds.filter((k) => v.kinds[k].replaceAll(items[k]));
  }
}
