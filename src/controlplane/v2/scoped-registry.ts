// The Registry kind of a view whose Sidecar lists egress hosts: only what
// that Sidecar makes visible (each service trimmed to the ports visible when
// egress listeners are bound to ports), plus the services whose endpoints are
// pods of the view's namespace (a proxy classifies its own inbound traffic by
// them). The proxy's DNS answers come from this registry, so a name outside
// it is not answered locally: it is forwarded upstream, as Istio's DNS proxy
// forwards what its proxy's config does not hold (docs/proxy-protocol.md).
//
// Items are the node registry's JSON text when untrimmed (shared with the
// builder, not copied per view). A node registry change touching nothing in
// scope costs this view no version and its proxies no push.
//
// Versions are drawn from the views' counter, offset above any node registry
// version: a version then never names both the node registry and a scoped one
// (or two scopes), so a proxy resuming into another view gets the kind whole.
import type { RegistryBuilder } from '../registry-builder.js';
import type { RegistryDelta, RegistryService } from '../types.js';
import { deltaSince, type KindDelta, type KindFeed } from './versioned-kind.js';

export const SCOPED_VERSION_BASE = 2 ** 40;

export interface RegistryScope {
  /** Equal signatures filter the same way (a recompile with an unchanged Sidecar keeps the feed). */
  signature: string;
  /** The service as this view sees it (possibly with fewer ports), or undefined when out of scope. */
  filter(svc: RegistryService): RegistryService | undefined;
}

interface Change { version: number; prev: number; keys: string[]; nodeVersion: number }

export class ScopedRegistry implements KindFeed {
  private readonly items = new Map<string, string>();
  private history: Change[] = [];
  private current = 0;
  /** The version the feed was (re)built at: it has no history before it. */
  private base = 0;
  /** The node registry version the current content reflects. */
  private nodeVersion = 0;
  private scopeNow!: RegistryScope;

  constructor(private readonly builder: RegistryBuilder, scope: RegistryScope, private readonly nextVersion: () => number, private readonly historyLimit = 256) {
    this.rebuild(scope);
  }

  get scope(): RegistryScope { return this.scopeNow; }
  size(): number { return this.items.size; }
  version(): number { return this.current; }

  /** The scope changed (a Sidecar edit): filter the whole node registry anew; holders get the kind whole. */
  rebuild(scope: RegistryScope): void {
    this.scopeNow = scope;
    this.items.clear();
    this.history = [];
    for (const svc of this.builder.services()) {
      const key = `${svc.namespace}/${svc.name}`;
      const json = this.encode(key, svc);
      if (json !== undefined) this.items.set(key, json);
    }
    this.current = this.base = SCOPED_VERSION_BASE + this.nextVersion();
    this.nodeVersion = this.builder.currentVersion();
  }

  /** One node registry change; true when this view's registry changed (and got a new version). */
  apply(delta: RegistryDelta): boolean {
    const changed: string[] = [];
    for (const svc of delta.upserts) {
      const key = `${svc.namespace}/${svc.name}`;
      const json = this.encode(key, svc);
      if (json === undefined) { if (this.items.delete(key)) changed.push(key); }
      else if (this.items.get(key) !== json) { this.items.set(key, json); changed.push(key); }
    }
    for (const key of delta.deletes) if (this.items.delete(key)) changed.push(key);
    this.nodeVersion = delta.version;
    if (changed.length === 0) return false;
    const prev = this.current;
    this.current = SCOPED_VERSION_BASE + this.nextVersion();
    this.history.push({ version: this.current, prev, keys: changed, nodeVersion: delta.version });
    if (this.history.length > this.historyLimit) this.history.shift();
    return true;
  }

  /**
   * The node registry version a proxy holding `version` of this feed is up
   * to date with (fan-out accounting: a change outside the scope is "acked"
   * by every proxy already holding the latest scoped version); -1 if unknown.
   */
  reflects(version: number): number {
    if (version === this.current) return this.nodeVersion;
    const i = version === this.base ? -1 : this.history.findIndex((h) => h.version === version);
    if (i < 0 && version !== this.base) return -1;
    return this.history[i + 1].nodeVersion - 1;
  }

  full(): { version: number; upserts: string[] } {
    return { version: this.current, upserts: [...this.items.values()] };
  }

  since(fromVersion: number): KindDelta | undefined {
    // Every version is unique to one content of one feed (see above), so holding it means holding this content.
    return deltaSince(fromVersion, this.current, this.history, this.items);
  }

  private encode(key: string, svc: RegistryService): string | undefined {
    const seen = this.scopeNow.filter(svc);
    if (!seen) return undefined;
    return seen === svc ? (this.builder.serviceJson(key) ?? JSON.stringify(svc)) : JSON.stringify(seen);
  }
}
