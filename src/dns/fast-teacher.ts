// Teaching the native UDP threads (udp-fast.ts): which answers they may
// repeat without asking JavaScript, and forgetting them all whenever the
// registry changes (on the view's 'update' event, and by a periodic identity
// check for views that change without one). Only UDP answers are taught:
// the threads serve nothing else.
import type { Logger } from '../common/log.js';
import type { Registry, RegistryView } from '../controlplane/types.js';
import type { UdpFastPath } from './udp-fast.js';

/** How often a registry view that never emits 'update' is checked for a new snapshot. */
const REGISTRY_POLL_MS = 250;

export type Transport = 'udp' | 'tcp';

export class FastPathTeacher {
  /** The native UDP threads, once they serve UDP. */
  fast: UdpFastPath | undefined;
  private fastRegistry: Registry | undefined;
  private poll: NodeJS.Timeout | undefined;
  private readonly onRegistryUpdate = () => this.registryMaybeChanged();

  constructor(private readonly registry: RegistryView, private readonly log: Logger) {}

  attach(fast: UdpFastPath): void {
    this.fast = fast;
    this.fastRegistry = this.registry.current();
    fast.forgetAll(this.fastRegistry?.version);
    this.registry.on('update', this.onRegistryUpdate);
    this.poll = setInterval(this.onRegistryUpdate, REGISTRY_POLL_MS);
    this.poll.unref();
    this.log.info({ addresses: fast.addresses(), threads: fast.stats().length }, 'DNS UDP served by native threads');
  }

  /**
   * Lets the native threads repeat this answer to questions like `query`.
   * A cached answer's lifetime is a second cache lookup, so it is asked for
   * only when it will be used.
   */
  teach(query: Buffer, answer: Buffer, lifetimeMs: number | (() => number), kind: 'local' | 'cached', transport: Transport): void {
    if (!this.fast || transport !== 'udp') return;
    this.fast.teach(query, answer, typeof lifetimeMs === 'number' ? lifetimeMs : lifetimeMs(), kind);
  }

  private registryMaybeChanged(): void {
    const r = this.registry.current();
    if (!this.fast || r === this.fastRegistry) return;
    this.fastRegistry = r;
    this.fast.forgetAll(r?.version);
  }

  /** Joins the threads and closes their sockets; misses still queued are dropped. */
  close(): void {
    if (!this.fast) return;
    if (this.poll) clearInterval(this.poll);
    const off = (this.registry as { off?: (e: string, l: () => void) => unknown }).off;
    if (typeof off === 'function') off.call(this.registry, 'update', this.onRegistryUpdate);
    this.fast.close();
  }
}
