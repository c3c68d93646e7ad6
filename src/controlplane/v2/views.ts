// Compiled views shared by proxies: one per view key (a proxy namespace, or
// namespace + the Sidecar that selects the proxy), compiled once for every
// proxy that has that key, kept while one is connected. Any input change
// (registry, Istio resources) marks all views dirty; they are recompiled
// together after a short debounce (a burst of informer events costs one
// compile), one view per event-loop turn, and only views whose output
// changed are reported, so proxies whose view did not change get no push.
// The same machinery keeps the per-workload `Security` kind
// (security-feed.ts): `kinds` says which.
import type { Logger } from '../../common/log.js';
import { keyOf, type Kind } from './kinds.js';
import { counter, Interner, VersionedKind } from './versioned-kind.js';

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
  /** Views still to recompile in the current round (drain()). */
  private readonly due = new Set<string>();
  private draining = false;
  private closed = false;
  /** One version space for every view (versioned-kind.ts says why). */
  private readonly nextVersion = counter();
  /** Item texts and keys shared by all views (equal items of different namespaces are stored once). */
  private readonly strings = new Interner();
  compiles = 0;
  lastCompileMs = 0;

  constructor(private readonly opts: ViewsOptions<K>) {}

  /** A proxy with this key connected: compile now if it is the first. */
  acquire(key: string): void {
    let v = this.views.get(key);
    if (!v) {
      const kinds = Object.fromEntries(this.opts.kinds.map((k) => [k, new VersionedKind<unknown>((item) => keyOf(k, item as never), this.nextVersion, 256, this.strings)])) as Kinds<K>;
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
    v.drop = setTimeout(() => {
      if (v.refs > 0 || this.views.get(key) !== v) return;
      this.views.delete(key);
      for (const k of this.opts.kinds) v.kinds[k].dispose();
    }, this.opts.lingerMs ?? 60_000);
    v.drop.unref();
  }

  feed(key: string, kind: K): VersionedKind<unknown> | undefined {
    return this.views.get(key)?.kinds[kind];
  }

  keys(): string[] { return [...this.views.keys()]; }
  sharedStrings(): number { return this.strings.size(); }

  /** Inputs changed: recompile every view after the debounce. */
  invalidate(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.opts.beforeRecompile?.();
      for (const k of this.views.keys()) this.due.add(k);
      this.drain();
    }, this.opts.debounceMs ?? 20);
  }

  /**
   * One view per turn of the event loop: at 100 views × 10k hosts a round is
   * tens of seconds of CPU, and registry deltas (endpoint changes) must not
   * wait behind it; the garbage of one view's compile is collectable before the next.
   */
  private drain(): void {
    if (this.draining) return;
    this.draining = true;
    const step = (): void => {
      const key = this.due.values().next().value as string | undefined;
      if (key === undefined || this.closed) { this.draining = false; return; }
      this.due.delete(key);
      const v = this.views.get(key);
      if (v) {
        const changed = this.recompile(v);
        if (changed.length) this.opts.onChanged(v.key, changed);
      }
      setImmediate(step);
    };
    step();
  }

  close(): void {
    this.closed = true;
    this.due.clear();
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
