// One kind of compiled resource as the agent holds it for one view: the
// items by key (kept as their JSON text, so an unchanged recompile costs no
// version and a push costs no re-encoding), a version that rises by one per
// change, and the keys each recent version changed, so a proxy at version N
// gets only what changed since N. Versions come from a counter shared by
// every view of the agent (views.ts), so a version number names one content
// of one view: a proxy that resumes with a version of another view (it moved,
// or its view was dropped and compiled anew) is never sent a delta against
// content it does not hold. 0 is the empty kind in every view.
export interface KindDelta { fromVersion: number; version: number; upserts: string[]; deletes: string[] }

export interface KindFeed {
  version(): number;
  /** Every item as JSON text. */
  full(): { version: number; upserts: string[] };
  /** What brings a holder of `fromVersion` to the current version; undefined when not covered (send full). */
  since(fromVersion: number): KindDelta | undefined;
}

export class VersionedKind<T> implements KindFeed {
  private current = 0;
  private readonly items = new Map<string, string>();
  private readonly history: { version: number; prev: number; keys: string[] }[] = [];

  constructor(private readonly keyOf: (item: T) => string, private readonly nextVersion: () => number = counter(), private readonly historyLimit = 256, private readonly strings: Interner = new Interner()) {}

  version(): number { return this.current; }
  size(): number { return this.items.size; }

  /** Make the kind hold exactly `items`; returns true when that changed anything (and so bumped the version). */
  replaceAll(items: readonly T[]): boolean {
    return this.replaceAllChanges(items) !== undefined;
  }

  /**
   * replaceAll(), returning what changed: each changed key with the text it
   * had before (undefined: it is new). A view layered on this kind (layered-kind.ts)
   * needs the old texts to tell whether what it shows changed.
   */
  replaceAllChanges(items: readonly T[]): Map<string, string | undefined> | undefined {
    return this.apply(items, true);
  }

  /** Upsert `items`, keeping every other item (an incremental compile's output); what changed, as replaceAllChanges. */
  upsertChanges(items: readonly T[]): Map<string, string | undefined> | undefined {
    return this.apply(items, false);
  }

  private apply(items: readonly T[], whole: boolean): Map<string, string | undefined> | undefined {
    const next = new Map<string, string>();
    for (const it of items) next.set(this.keyOf(it), JSON.stringify(it));
    const changed: string[] = [];
    for (const [k, json] of next) if (this.items.get(k) !== json) changed.push(k);
    if (whole) for (const k of this.items.keys()) if (!next.has(k)) changed.push(k);
    if (changed.length === 0) return undefined;
    const before = new Map<string, string | undefined>();
    for (let i = 0; i < changed.length; i++) {
      const k = changed[i];
      const json = next.get(k);
      const old = this.items.get(k);
      if (old !== undefined) this.strings.drop(old);
      if (json === undefined) { before.set(k, old); this.items.delete(k); this.strings.drop(k); continue; }
      // Views of different namespaces mostly hold equal items: one copy of each text and key for all of them.
      if (old === undefined) changed[i] = this.strings.take(k);
      this.items.set(changed[i], this.strings.take(json));
      before.set(changed[i], old);
    }
    const prev = this.current;
    this.current = this.nextVersion();
    this.history.push({ version: this.current, prev, keys: changed });
    if (this.history.length > this.historyLimit) this.history.shift();
    return before;
  }

  get(key: string): string | undefined { return this.items.get(key); }
  /** Key → JSON text, in a stable order while the kind does not change (full-body.ts indexes the encoded whole kind by it). */
  entries(): IterableIterator<[string, string]> { return this.items.entries(); }

  full(): { version: number; upserts: string[] } {
    return { version: this.current, upserts: [...this.items.values()] };
  }

  /** The view is gone: release its texts from the shared pool. */
  dispose(): void {
    for (const [k, json] of this.items) { this.strings.drop(k); this.strings.drop(json); }
    this.items.clear();
  }

  since(fromVersion: number): KindDelta | undefined {
    return deltaSince(fromVersion, this.current, this.history, this.items);
  }
}

/**
 * The delta from `fromVersion` to `current` of a feed that keeps its items (key → JSON) and, per
 * version, the keys it changed. Only versions the feed really had (and whose later changes are
 * all retained) can be continued: else undefined, and the proxy gets the whole kind.
 */
export function deltaSince(fromVersion: number, current: number, history: readonly { prev: number; keys: readonly string[] }[], items: { get(key: string): string | undefined }): KindDelta | undefined {
  if (fromVersion === current) return { fromVersion, version: current, upserts: [], deletes: [] };
  const from = history.findIndex((h) => h.prev === fromVersion);
  if (from < 0) return undefined;
  const keys = new Set<string>();
  for (let i = from; i < history.length; i++) for (const k of history[i].keys) keys.add(k);
  const upserts: string[] = [];
  const deletes: string[] = [];
  for (const k of [...keys].sort()) {
    const json = items.get(k);
    if (json === undefined) deletes.push(k);
    else upserts.push(json);
  }
  return { fromVersion, version: current, upserts, deletes };
}

/** A version counter (views.ts shares one between all views). */
export function counter(): () => number {
  let n = 0;
  return () => ++n;
}

/**
 * Reference-counted strings shared between the views of one agent: at 100
 * namespaces × 10k hosts, per-view copies of equal item texts were most of
 * the agent's memory. take() returns the pooled copy of an equal string.
 */
export class Interner {
  private readonly pool = new Map<string, { s: string; refs: number }>();

  take(s: string): string {
    const e = this.pool.get(s);
    if (e) { e.refs++; return e.s; }
    this.pool.set(s, { s, refs: 1 });
    return s;
  }

  drop(s: string): void {
    const e = this.pool.get(s);
    if (e && --e.refs <= 0) this.pool.delete(s);
  }

  size(): number { return this.pool.size; }
}
