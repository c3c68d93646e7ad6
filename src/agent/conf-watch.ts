// Watches a directory and calls back (debounced) on any change, plus a
// periodic safety call: inotify can drop events (queue overflow, directory
// replaced), and a missed rewrite of the CNI conf would leave new pods
// uncaptured until the next change.
import { watch, type FSWatcher } from 'node:fs';

export interface DirWatchOptions {
  dir: string;
  onChange: (why: 'event' | 'periodic') => void;
  /** Coalesces bursts of events (write + rename of one update). Default 10 ms. */
  debounceMs?: number;
  /** Default 2000 ms. */
  periodicMs?: number;
  onError?: (e: Error) => void;
}

export class DirWatch {
  private watcher?: FSWatcher;
  private debounce?: NodeJS.Timeout;
  private periodic?: NodeJS.Timeout;
  private readonly opts: DirWatchOptions;

  constructor(opts: DirWatchOptions) {
    this.opts = opts;
  }

  start(): void {
    this.openWatcher();
    this.periodic = setInterval(() => {
      // The directory may have been replaced (watcher dead): reopen.
      if (!this.watcher) this.openWatcher();
      this.opts.onChange('periodic');
    }, this.opts.periodicMs ?? 2000);
    this.periodic.unref();
  }

  private openWatcher(): void {
    try {
      const w = watch(this.opts.dir, { persistent: false });
      w.on('change', () => this.schedule());
      w.on('error', (e) => {
        this.opts.onError?.(e);
        w.close();
        if (this.watcher === w) this.watcher = undefined;
      });
      this.watcher = w;
    } catch (e) {
      this.opts.onError?.(e as Error);
    }
  }

  private schedule(): void {
    if (this.debounce) return;
    this.debounce = setTimeout(() => {
      this.debounce = undefined;
      this.opts.onChange('event');
    }, this.opts.debounceMs ?? 10);
  }

  stop(): void {
    this.watcher?.close();
    this.watcher = undefined;
    clearTimeout(this.debounce);
    clearInterval(this.periodic);
  }
}

/** Token bucket: `burst` actions at once, then `perSecond`. */
export class RateLimiter {
  private tokens: number;
  private last = Date.now();
  constructor(private readonly burst: number, private readonly perSecond: number) {
    if (!(burst >= 1) || !(perSecond > 0)) throw new Error('RateLimiter: burst must be ≥ 1 and perSecond > 0');
    this.tokens = burst;
  }

  private refill(): void {
    const now = Date.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.perSecond);
    this.last = now;
  }

  /** Takes a token; or returns how many ms until one is available. */
  take(): { ok: true } | { ok: false; waitMs: number } {
    this.refill();
    if (this.tokens >= 1) { this.tokens -= 1; return { ok: true }; }
    return { ok: false, waitMs: Math.ceil(((1 - this.tokens) / this.perSecond) * 1000) };
  }
}
