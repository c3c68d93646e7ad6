// ResilientInformer: a list-then-watch cache of one Kubernetes resource that
// never gives up. client-node's own informer (ListWatch) stops for good on most
// watch errors, never notices a watch that went silent (a wedged apiserver or
// load balancer keeps the TCP connection open), and does not ask for
// bookmarks; a node agent that stops seeing pods stops capturing them. This
// runs its own loop over client-node's Watch (which brings the kubeconfig's
// auth and TLS):
//   list once → watch from the list's resourceVersion (with bookmarks) →
//   on a clean close re-watch from the last resourceVersion (no relist) →
//   on 410 Gone relist (diffing the cache so handlers see real changes) →
//   on an error or a silent watch (no event nor bookmark for watchdogMs)
//   restart with exponential backoff and jitter.
// Cold start costs one LIST and one WATCH however many objects there are.
import { EventEmitter } from 'node:events';
import { Watch, type KubeConfig } from '@kubernetes/client-node';
import type { Logger } from '../common/log.js';

export interface KubeListLike<T> { items: T[]; metadata?: { resourceVersion?: string } }
export interface MetaLike { metadata?: { name?: string; namespace?: string; resourceVersion?: string } }

export interface ResilientInformerOptions<T> {
  kubeConfig: KubeConfig;
  /** For logs and metrics: "pods", "namespaces", … */
  name: string;
  /** Watch path, e.g. /api/v1/pods. */
  path: string;
  /** The LIST call (same selectors as the watch). */
  listFn: () => Promise<KubeListLike<T>>;
  fieldSelector?: string;
  labelSelector?: string;
  logger: Logger;
  /** Restart a watch that delivered neither an event nor a bookmark for this long. Default 90 s (apiservers bookmark about once a minute). */
  watchdogMs?: number;
  /** Backoff bounds for restarts after errors. Defaults 250 ms … 30 s. */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** Server-side watch timeout asked for; the client re-watches after it. Default 300 s. */
  watchTimeoutSeconds?: number;
  /**
   * Reduce each object to what its consumers read before it is cached or
   * emitted (a cluster-wide pod cache holding whole pods would cost GBs at
   * 100k pods). Must keep metadata.namespace/name/resourceVersion.
   */
  slim?: (obj: T) => T;
}

export interface InformerHealth {
  synced: boolean;
  /** Watches restarted for any reason but the first start (closes, 410s, errors, stalls). */
  restarts: number;
  /** Full relists after the first (each follows a 410 or an error the watch could not resume from). */
  relists: number;
  /** ms since epoch of the last event or bookmark; 0 before any. */
  lastEventAt: number;
  lastError?: string;
  objects: number;
}

export interface ResilientInformerEvents<T> {
  add: [T];
  update: [T, T];
  delete: [T];
  synced: [];
  error: [Error];
}

class WatchExpired extends Error {}
class WatchStalled extends Error {}

function keyOf(o: MetaLike): string {
  return `${o.metadata?.namespace ?? ''}/${o.metadata?.name ?? ''}`;
}

export class ResilientInformer<T extends MetaLike> extends EventEmitter<ResilientInformerEvents<T>> {
  private readonly opts: Required<Pick<ResilientInformerOptions<T>, 'watchdogMs' | 'minBackoffMs' | 'maxBackoffMs' | 'watchTimeoutSeconds'>> & ResilientInformerOptions<T>;
  private readonly watch: Watch;
  private readonly cache = new Map<string, T>();
  private resourceVersion = '';
  private stopped = true;
  private synced = false;
  private restarts = 0;
  private relists = 0;
  private lastEventAt = 0;
  private lastError?: string;
  private abortCurrent?: () => void;
  private wakeSleep?: () => void;
  private loop?: Promise<void>;
  private syncWaiters: (() => void)[] = [];

  constructor(opts: ResilientInformerOptions<T>) {
    super();
    this.opts = { watchdogMs: 90_000, minBackoffMs: 250, maxBackoffMs: 30_000, watchTimeoutSeconds: 300, ...opts };
    this.watch = new Watch(opts.kubeConfig);
  }

  /** Starts the loop; resolves after the first successful list (or when stopped first). */
  start(): Promise<void> {
    if (this.stopped) {
      this.stopped = false;
      this.loop = this.run();
    }
    if (this.synced) return Promise.resolve();
    return new Promise((resolve) => this.syncWaiters.push(resolve));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.abortCurrent?.();
    this.wakeSleep?.();
    for (const w of this.syncWaiters.splice(0)) w();
    await this.loop;
  }

  list(): T[] { return [...this.cache.values()]; }

  get(namespace: string | undefined, name: string): T | undefined {
    return this.cache.get(`${namespace ?? ''}/${name}`);
  }

  health(): InformerHealth {
    return { synced: this.synced, restarts: this.restarts, relists: this.relists, lastEventAt: this.lastEventAt, lastError: this.lastError, objects: this.cache.size };
  }

  private async run(): Promise<void> {
    let failures = 0;
    let first = true;
    while (!this.stopped) {
      try {
        if (!this.resourceVersion) await this.relist();
        if (!first) this.restarts++;
        first = false;
        const healthy = await this.watchOnce();
        // A watch that closed at once without delivering anything is treated
        // like a failure, so a server that hangs up immediately is not hammered.
        failures = healthy ? 0 : failures + 1;
      } catch (err) {
        const e = err instanceof Error ? err : new Error(String(err));
        if (this.stopped) break;
        if (e instanceof WatchExpired) {
          this.opts.logger.info({ informer: this.opts.name }, 'watch expired (410 Gone); relisting');
          this.resourceVersion = '';
          failures = 0;
          continue;
        }
        failures++;
        this.lastError = e.message;
        this.opts.logger.warn({ informer: this.opts.name, err: e.message, failures }, e instanceof WatchStalled ? 'watch stalled; restarting' : 'list/watch failed; retrying');
        if (this.listenerCount('error') > 0) this.emit('error', e);
      }
      if (failures > 0 && !this.stopped) await this.sleep(this.backoff(failures));
    }
  }

  private backoff(failures: number): number {
    const base = Math.min(this.opts.maxBackoffMs, this.opts.minBackoffMs * 2 ** Math.min(failures - 1, 16));
    return base / 2 + Math.random() * (base / 2);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => { this.wakeSleep = undefined; resolve(); }, ms);
      this.wakeSleep = () => { clearTimeout(t); this.wakeSleep = undefined; resolve(); };
    });
  }

  private async relist(): Promise<void> {
    const list = await this.opts.listFn();
    if (this.synced) this.relists++;
    const fresh = new Map<string, T>();
    const slim = this.opts.slim;
    for (const item of list.items ?? []) fresh.set(keyOf(item), slim ? slim(item) : item);
    for (const [k, old] of this.cache) {
      if (!fresh.has(k)) { this.cache.delete(k); this.emit('delete', old); }
    }
    for (const [k, obj] of fresh) {
      const old = this.cache.get(k);
      this.cache.set(k, obj);
      if (!old) this.emit('add', obj);
      else if (old.metadata?.resourceVersion !== obj.metadata?.resourceVersion) this.emit('update', obj, old);
    }
    this.resourceVersion = list.metadata?.resourceVersion ?? '';
    this.lastEventAt = Date.now();
    if (!this.synced) {
      this.synced = true;
      this.opts.logger.info({ informer: this.opts.name, objects: this.cache.size }, 'informer synced');
      this.emit('synced');
      for (const w of this.syncWaiters.splice(0)) w();
    }
  }

  /** One watch connection. Resolves on a clean close (true when it carried at least one event or lasted a while). */
  private watchOnce(): Promise<boolean> {
    return new Promise<boolean>((resolve, reject) => {
      const startedAt = Date.now();
      let delivered = false;
      let settled = false;
      let controller: AbortController | undefined;
      let watchdog: NodeJS.Timeout | undefined;
      const finish = (err: Error | null): void => {
        if (settled) return;
        settled = true;
        clearTimeout(watchdog);
        this.abortCurrent = undefined;
        controller?.abort();
        if (err) reject(err);
        else resolve(delivered || Date.now() - startedAt > 1000);
      };
      const armWatchdog = (): void => {
        clearTimeout(watchdog);
        watchdog = setTimeout(() => finish(new WatchStalled(`no event nor bookmark for ${this.opts.watchdogMs} ms`)), this.opts.watchdogMs);
      };
      this.abortCurrent = () => finish(null);
      armWatchdog();
      const params: Record<string, string | number | boolean> = {
        resourceVersion: this.resourceVersion,
        allowWatchBookmarks: true,
        timeoutSeconds: this.opts.watchTimeoutSeconds,
      };
      if (this.opts.fieldSelector) params.fieldSelector = this.opts.fieldSelector;
      if (this.opts.labelSelector) params.labelSelector = this.opts.labelSelector;
      this.watch.watch(this.opts.path, params, (type: string, obj: T & { code?: number; message?: string }) => {
        if (settled) return;
        this.lastEventAt = Date.now();
        armWatchdog();
        if (type === 'ERROR') {
          if (obj.code === 410) finish(new WatchExpired(obj.message ?? '410 Gone'));
          else finish(new Error(`watch ERROR ${obj.code ?? ''}: ${obj.message ?? JSON.stringify(obj)}`));
          return;
        }
        delivered = true;
        const rv = obj.metadata?.resourceVersion;
        if (rv) this.resourceVersion = rv;
        if (type === 'BOOKMARK') return;
        if (this.opts.slim) obj = this.opts.slim(obj) as typeof obj;
        const k = keyOf(obj);
        const old = this.cache.get(k);
        if (type === 'DELETED') {
          this.cache.delete(k);
          this.emit('delete', old ?? obj);
        } else {
          this.cache.set(k, obj);
          if (old) this.emit('update', obj, old); else this.emit('add', obj);
        }
      }, (err: unknown) => {
        if (!err) return finish(null);
        const e = err as { statusCode?: number; message?: string; name?: string };
        if (e.name === 'AbortError') return finish(null);
        if (e.statusCode === 410) return finish(new WatchExpired('410 Gone'));
        finish(err instanceof Error ? err : new Error(String(e.message ?? err)));
      }).then((c) => {
        controller = c;
        if (settled) c.abort();
      }, (err: unknown) => finish(err instanceof Error ? err : new Error(String(err))));
    });
  }
}
