// One compiled kind of a view that is the shared base plus an overlay
// (translate/shared-base.ts): the base's items, by reference, with a few of
// them replaced by this view's own (at 10k Services: a namespace's 100
// virtual hosts with their bare-name alias). 100 unscoped namespaces then
// hold one copy of the mesh instead of 100 (each was ~2 MB of maps, and
// 8.7 MB of encoded whole push while a proxy was being sent it).
//
// The view has its own versions (from the views' shared counter, as every
// feed) and history: a base change is a new version of every layered view
// whose shown items it changed, an overlay change of that view alone.
import { deltaSince, type KindDelta, type KindFeed, type VersionedKind } from './versioned-kind.js';

interface Change { version: number; prev: number; keys: readonly string[] }

/** One array of a base change's keys for all the views it reaches (their histories share it). */
const changedKeys = new WeakMap<ReadonlyMap<string, string | undefined>, readonly string[]>();
function keysOf(changes: ReadonlyMap<string, string | undefined>): readonly string[] {
  let keys = changedKeys.get(changes);
  if (!keys) { keys = [...changes.keys()]; changedKeys.set(changes, keys); }
  return keys;
}

export class LayeredKind implements KindFeed {
  private overlay = new Map<string, string>();
  private current = 0;
  private readonly history: Change[] = [];

  constructor(readonly base: VersionedKind<unknown>, private readonly keyOf: (item: unknown) => string, items: readonly unknown[], private readonly nextVersion: () => number, private readonly historyLimit = 256) {
    for (const it of items) this.overlay.set(this.keyOf(it), JSON.stringify(it));
    // Version 0 is the empty kind in every view: a view that shows nothing stays at 0.
    if (this.base.size() > 0 || this.overlay.size > 0) this.current = this.nextVersion();
  }

  version(): number { return this.current; }
  size(): number { let n = this.base.size(); for (const k of this.overlay.keys()) if (this.base.get(k) === undefined) n++; return n; }
  get(key: string): string | undefined { return this.overlay.get(key) ?? this.base.get(key); }
  /** This view's own items (key → JSON) that replace the base's (or add to it). */
  overlayItems(): ReadonlyMap<string, string> { return this.overlay; }

  /**
   * The base changed (`baseChanges`: each changed key with its text before,
   * from VersionedKind.replaceAllChanges), and this view's overlay is now
   * `items`. True when what the view shows changed (it then has a new version).
   */
  update(baseChanges: ReadonlyMap<string, string | undefined> | undefined, items: readonly unknown[]): boolean {
    const next = new Map<string, string>();
    for (const it of items) next.set(this.keyOf(it), JSON.stringify(it));
    const before = (k: string): string | undefined => (this.overlay.has(k) ? this.overlay.get(k) : baseChanges?.has(k) ? baseChanges.get(k) : this.base.get(k));
    const after = (k: string): string | undefined => next.get(k) ?? this.base.get(k);
    let keys: readonly string[];
    const touchesOverlay = (k: string): boolean => this.overlay.has(k) || next.has(k);
    let overlayChanged = next.size !== this.overlay.size;
    if (!overlayChanged) for (const [k, v] of next) if (this.overlay.get(k) !== v) { overlayChanged = true; break; }
    let shadowed = false;
    if (baseChanges) for (const k of this.overlay.keys()) if (baseChanges.has(k)) { shadowed = true; break; }
    if (baseChanges && !shadowed) for (const k of next.keys()) if (baseChanges.has(k)) { shadowed = true; break; }
    if (!overlayChanged && !shadowed) {
      // The common case (a VirtualService change of another namespace): exactly the base's changes.
      keys = baseChanges ? keysOf(baseChanges) : [];
    } else {
      const candidates = new Set<string>([...(baseChanges?.keys() ?? []), ...this.overlay.keys(), ...next.keys()]);
      keys = [...candidates].filter((k) => !touchesOverlay(k) ? true : before(k) !== after(k));
    }
    this.overlay = next;
    if (keys.length === 0) return false;
    const prev = this.current;
    this.current = this.nextVersion();
    this.history.push({ version: this.current, prev, keys });
    if (this.history.length > this.historyLimit) this.history.shift();
    return true;
  }

  full(): { version: number; upserts: string[] } {
    const upserts: string[] = [];
    for (const [k, json] of this.base.entries()) upserts.push(this.overlay.get(k) ?? json);
    for (const [k, json] of this.overlay) if (this.base.get(k) === undefined) upserts.push(json);
    return { version: this.current, upserts };
  }

  since(fromVersion: number): KindDelta | undefined {
    return deltaSince(fromVersion, this.current, this.history, this);
  }

  dispose(): void { this.overlay.clear(); }
}
