// Which Registry feed each view's proxies get: the node registry (no
// Sidecar egress applies to the view) or a ScopedRegistry kept for that
// view key while the view lives. service.ts asks here for a proxy's feed and
// passes every node registry change and every Istio change through.
import type { RegistryBuilder } from '../registry-builder.js';
import type { RegistryDelta } from '../types.js';
import { ScopedRegistry, type RegistryScope } from './scoped-registry.js';
import { counter, type KindFeed } from './versioned-kind.js';

export class RegistryScopes {
  private readonly scoped = new Map<string, ScopedRegistry>();
  private readonly nextVersion = counter();

  constructor(
    private readonly builder: RegistryBuilder,
    private readonly nodeFeed: KindFeed,
    /** The view's scope now; undefined = the whole node registry. */
    private readonly scopeOf: (key: string) => RegistryScope | undefined,
  ) {}

  /** A view is live: make sure its feed exists. */
  ensure(key: string): void {
    if (this.scoped.has(key)) return;
    const scope = this.scopeOf(key);
    if (scope) this.scoped.set(key, new ScopedRegistry(this.builder, scope, this.nextVersion));
  }

  feed(key: string | undefined): KindFeed {
    return (key !== undefined && this.scoped.get(key)) || this.nodeFeed;
  }

  isScoped(key: string | undefined): boolean { return key !== undefined && this.scoped.has(key); }

  /**
   * Istio resources changed: re-read every live view's scope. Returns the
   * view keys whose feed now holds other content (their proxies need the kind whole).
   * Views no longer live are forgotten.
   */
  refresh(liveKeys: Iterable<string>): string[] {
    const live = new Set(liveKeys);
    for (const k of this.scoped.keys()) if (!live.has(k)) this.scoped.delete(k);
    const restarted: string[] = [];
    for (const key of live) {
      const scope = this.scopeOf(key);
      const have = this.scoped.get(key);
      if (!scope) {
        if (have) { this.scoped.delete(key); restarted.push(key); }
      } else if (!have) {
        this.scoped.set(key, new ScopedRegistry(this.builder, scope, this.nextVersion));
        restarted.push(key);
      } else if (have.scope.signature !== scope.signature) {
        have.rebuild(scope);
        restarted.push(key);
      }
    }
    return restarted;
  }

  /** A node registry change reaches every scoped feed (each keeps only what is in its scope). */
  onDelta(delta: RegistryDelta): void {
    for (const f of this.scoped.values()) f.apply(delta);
  }

  /** The node registry version a proxy of view `key` holding Registry `version` is current with (fan-out accounting). */
  nodeVersionOf(key: string | undefined, version: number): number {
    const f = key !== undefined ? this.scoped.get(key) : undefined;
    return f ? f.reflects(version) : version;
  }

  stats(): Record<string, number> {
    return Object.fromEntries([...this.scoped].map(([k, f]) => [k, f.size()]));
  }
}
