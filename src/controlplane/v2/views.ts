// Compiled views shared by proxies: one per view key (a proxy namespace, or
// namespace + the Sidecar that selects the proxy), compiled once for every
// proxy that has that key, kept while one is connected. Any input change
// (registry, Istio resources) marks all views dirty; they are recompiled
// together after a short debounce (a burst of informer events costs one
// compile), one view per event-loop turn, and only views whose output
// changed are reported, so proxies whose view did not change get no push.
// With a shared base (`base`, translate/shared-base.ts), a view without a
// Sidecar is the base plus its overlay (layered-kind.ts): each round then
// compiles the base once, first, and updates every layered view from it in
// the same turn (cheap: a namespace's own items), and only the views that
// must be compiled whole are compiled one per turn.
// The same machinery keeps the per-workload `Security` kind
// (security-feed.ts): `kinds` says which.
import type { Logger } from '../../common/log.js';
import { keyOf, type Kind } from './kinds.js';
import { LayeredKind } from './layered-kind.js';
import { counter, Interner, VersionedKind } from './versioned-kind.js';

type Kinds<K extends Kind> = Record<K, VersionedKind<unknown> | LayeredKind>;
type Items<K extends Kind> = Record<K, readonly unknown[]>;

interface View<K extends Kind> { key: string; refs: number; kinds: Kinds<K>; layered: boolean; drop?: NodeJS.Timeout }

/** What views without a Sidecar share (translate/shared-base.ts). */
export interface SharedBase<K extends Kind> {
  /** Is view `key` the base plus an overlay? (else it is compiled whole) */
  layered(key: string): boolean;
  /**
   * The base's items (`full`), or what changed in them (`upsert`: items to
   * replace by key, `replace`: kinds given whole); called first in a round,
   * when some live view is layered. `baseItem`: the base's current JSON text of an item.
   */
  compile(baseItem: (kind: K, itemKey: string) => string | undefined): { full: Items<K> } | { upsert: Partial<Items<K>>; replace: Partial<Items<K>> };
  /** View `key`'s items that replace the base's (`baseItem`: the base's JSON text of an item). */
  overlay(key: string, baseItem: (kind: K, itemKey: string) => string | undefined): Partial<Items<K>>;
  /** No view is layered any more: the base's compile can go. */
  drop?(): void;
}

export interface ViewsOptions<K extends Kind> {
  /** The kinds every view holds. */
  kinds: readonly K[];
  /** A view's items of each kind (e.g. itemsOf(compileProxyConfig(…))). */
  compile(key: string): Items<K>;
  base?: SharedBase<K>;
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
  /** The base's kinds, while some view is layered on them. */
  private baseKinds?: Record<K, VersionedKind<unknown>>;
  /** The next drain step compiles the base first. */
  private baseDue = false;
  /** Whole compiles (the base's included). */
  compiles = 0;
  baseCompiles = 0;
  /** Layered views brought up to date (a base change or an overlay of their own). */
  overlayUpdates = 0;
  /** Rounds finished (every view due in it recompiled). */
  rounds = 0;
  lastCompileMs = 0;

  constructor(private readonly opts: ViewsOptions<K>) {}

  /** A proxy with this key connected: compile now if it is the first. */
  acquire(key: string): void {
    let v = this.views.get(key);
    if (!v) {
      v = { key, refs: 0, kinds: this.wholeKinds(), layered: false };
      this.views.set(key, v);
      if (this.isLayered(key) && this.ensureBase()) this.layer(v);
      else this.recompile(v);
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
      if (v.layered && ![...this.views.values()].some((o) => o.layered)) this.dropBase();
    }, this.opts.lingerMs ?? 60_000);
    v.drop.unref();
  }

  feed(key: string, kind: K): VersionedKind<unknown> | LayeredKind | undefined {
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
      this.baseDue = true;
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
      if (this.baseDue && !this.closed) { this.baseDue = false; this.refreshLayered(); }
      const key = this.due.values().next().value as string | undefined;
      if (key === undefined || this.closed) { this.draining = false; if (!this.closed) this.rounds++; return; }
      this.due.delete(key);
      const v = this.views.get(key);
      if (v && !v.layered) {
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

  private wholeKinds(): Kinds<K> {
    return Object.fromEntries(this.opts.kinds.map((k) => [k, new VersionedKind<unknown>((item) => keyOf(k, item as never), this.nextVersion, 256, this.strings)])) as Kinds<K>;
  }

  private isLayered(key: string): boolean {
    try {
      return this.opts.base?.layered(key) === true;
    } catch (err) {
      this.opts.logger.error({ view: key, err: (err as Error).stack }, 'deciding whether a view shares the base failed; compiling it whole');
      return false;
    }
  }

  /** Compile the base; false (and no base) when that failed: views are then compiled whole. */
  private compileBase(): Map<K, Map<string, string | undefined>> | undefined {
    const t0 = performance.now();
    let out: ReturnType<SharedBase<K>['compile']>;
    try {
      // Without a base yet there is nothing to patch: the source is told so by baseItem answering nothing.
      const kinds = this.baseKinds;
      out = this.opts.base!.compile((kind, itemKey) => kinds?.[kind].get(itemKey));
      if (!kinds && !('full' in out)) throw new Error('an incremental base compile without a base');
    } catch (err) {
      this.opts.logger.error({ err: (err as Error).stack }, 'compiling the shared base view failed; compiling views whole');
      return undefined;
    }
    this.compiles++;
    this.baseCompiles++;
    this.lastCompileMs = performance.now() - t0;
    this.baseKinds ??= this.wholeKinds() as Record<K, VersionedKind<unknown>>;
    const changes = new Map<K, Map<string, string | undefined>>();
    for (const k of this.opts.kinds) {
      const kind = this.baseKinds[k];
      const c = 'full' in out ? kind.replaceAllChanges(out.full[k])
        : out.replace[k] ? kind.replaceAllChanges(out.replace[k]) : out.upsert[k] ? kind.upsertChanges(out.upsert[k]) : undefined;
      if (c) changes.set(k, c);
    }
    return changes;
  }

  private ensureBase(): boolean {
    return this.baseKinds !== undefined || this.compileBase() !== undefined;
  }

  private dropBase(): void {
    if (!this.baseKinds) return;
    for (const k of this.opts.kinds) this.baseKinds[k].dispose();
    this.baseKinds = undefined;
    this.opts.base?.drop?.();
  }

  /** Make `v` the base plus its overlay (new feeds: its proxies get each kind whole, their versions being unknown here). */
  private layer(v: View<K>): void {
    const overlay: Partial<Items<K>> = this.overlayOf(v.key) ?? {};
    for (const k of this.opts.kinds) v.kinds[k].dispose();
    v.kinds = Object.fromEntries(this.opts.kinds.map((k) => [k, new LayeredKind(this.baseKinds![k], (item) => keyOf(k, item as never), overlay[k] ?? [], this.nextVersion)])) as Kinds<K>;
    v.layered = true;
    this.overlayUpdates++;
  }

  private overlayOf(key: string): Partial<Items<K>> | undefined {
    try {
      const base = this.baseKinds!;
      return this.opts.base!.overlay(key, (kind, itemKey) => base[kind].get(itemKey));
    } catch (err) {
      this.opts.logger.error({ view: key, err: (err as Error).stack }, 'compiling a view overlay failed; keeping its last one');
      return undefined;
    }
  }

  /**
   * The round's first step: which views are layered now, the base compiled
   * once for them, and each layered view updated in this same turn (so no
   * proxy is ever sent the new base with its view's old overlay). Views to be
   * compiled whole stay due.
   */
  private refreshLayered(): void {
    const layered = [...this.views.values()].filter((v) => this.isLayered(v.key));
    if (layered.length === 0) { this.unlayer(); this.dropBase(); return; }
    const changes = this.compileBase();
    // A failed base compile (a translator bug): layered views keep the last good base (drain() skips them), as a view compiled whole keeps its last output.
    if (!changes) return;
    const want = new Set(layered);
    for (const v of this.views.values()) {
      if (!want.has(v)) continue;
      this.due.delete(v.key);
      if (!v.layered) { this.layer(v); this.opts.onChanged(v.key, [...this.opts.kinds]); continue; }
      const overlay = this.overlayOf(v.key);
      if (!overlay) continue;
      const changed = this.opts.kinds.filter((k) => (v.kinds[k] as LayeredKind).update(changes.get(k), overlay[k] ?? []));
      this.overlayUpdates++;
      if (changed.length) this.opts.onChanged(v.key, changed);
    }
    this.unlayer(want);
  }

  /** Layered views not in `keep` are compiled whole now (at once: their feeds must never be seen empty). */
  private unlayer(keep: ReadonlySet<View<K>> = new Set()): void {
    for (const v of this.views.values()) {
      if (!v.layered || keep.has(v)) continue;
      const kinds = v.kinds;
      v.kinds = this.wholeKinds();
      v.layered = false;
      this.due.delete(v.key);
      this.recompile(v);
      for (const k of this.opts.kinds) kinds[k].dispose();
      this.opts.onChanged(v.key, [...this.opts.kinds]);
    }
  }

  /** Counts for tests and stats: views layered on the base, and the items their overlays replace. */
  layering(): { base: boolean; layered: string[]; overlayItems: number } {
    const layered = [...this.views.values()].filter((v) => v.layered);
    return { base: this.baseKinds !== undefined, layered: layered.map((v) => v.key), overlayItems: layered.reduce((n, v) => n + this.opts.kinds.reduce((m, k) => m + (v.kinds[k] as LayeredKind).overlayItems().size, 0), 0) };
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
    return this.opts.kinds.filter((k) => (v.kinds[k] as VersionedKind<unknown>).replaceAll(items[k]));
  }
}
