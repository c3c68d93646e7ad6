// Installs weir-cni on the node: copies the plugin binary into the CNI bin
// dir and chains a weir-cni entry into the primary CNI's conf (or, in
// standalone mode, writes weir's own conf). Keeps it chained when the
// primary CNI rewrites its file, without fighting a rewrite loop forever,
// and undoes exactly its own changes on shutdown.
import { readFile, unlink, mkdir } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { copyFileAtomic, writeFileAtomic, PreconditionFailed } from '../cni/atomic-file.js';
import { chainedConf, findPrimaryConf, readConf, sameJson, unchainedConf, weirEntryIndex, pluginsOf, type ConfFile } from './installer-conf.js';
import { DirWatch, RateLimiter } from './conf-watch.js';
import type { ControllerLogger } from './capture-controller.js';

export const PLUGIN_TYPE = 'weir-cni';

export interface InstallerEvent {
  kind: 'binary-installed' | 'binary-unchanged' | 'chained' | 'waiting-for-primary' | 'rate-limited' | 'standalone-written' | 'removed' | 'error';
  file?: string;
  detail?: string;
}

export interface InstallerOptions {
  /** /etc/cni/net.d */
  confDir: string;
  /** /opt/cni/bin */
  binDir: string;
  /** The built single executable (dist/weir-cni). */
  pluginBinary: string;
  /** Chain into this file (name in confDir) instead of the lexically first valid conf. */
  primaryConfName?: string;
  mode?: 'chained' | 'standalone';
  /** Standalone mode: weir's own conf file name. Default 99-weir.conflist. */
  standaloneConfName?: string;
  /** Standalone mode: network name and cniVersion. */
  standaloneNetwork?: { name: string; cniVersion: string };
  /** Extra fields of weir's plugin entry: agentSocket, excludeNamespaces, agentTimeoutMs, logLevel. */
  pluginConf?: Record<string, unknown>;
  /** Keep the entry and binary on stop(): new pods then fail closed until the next agent. */
  keepOnShutdown?: boolean;
  /** A rewrite of the primary conf may leave weir unchained this long without readiness dropping. Default 1000 ms. */
  readyGraceMs?: number;
  /** Re-chain writes allowed in a burst, then per second. Default 50 and 5. */
  rechainBurst?: number;
  rechainPerSecond?: number;
  periodicCheckMs?: number;
  logger?: ControllerLogger;
  onEvent?: (e: InstallerEvent) => void;
}

const NOOP: ControllerLogger = { debug() {}, info() {}, warn() {}, error() {} };

async function sha256(file: string): Promise<string | undefined> {
  try {
    return createHash('sha256').update(await readFile(file)).digest('hex');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

export class Installer {
  private readonly opts: InstallerOptions;
  private readonly log: ControllerLogger;
  private readonly limiter: RateLimiter;
  private watch?: DirWatch;
  private binaryInstalled = false;
  private binaryAddedByUs = false;
  /** The file that currently carries weir's entry. */
  private chainedFile?: string;
  /** When a single .conf was converted: its path and original text, to restore on shutdown. */
  private converted?: { confPath: string; text: string; mode: number; listPath: string };
  private unchainedSince?: number = Date.now();
  private reconciling?: Promise<void>;
  private again = false;
  private retryTimer?: NodeJS.Timeout;
  private rateLimited = false;
  private waitingForPrimary = false;
  private stopped = false;
  /** Number of times weir's entry was (re)written. */
  chainWrites = 0;

  constructor(opts: InstallerOptions) {
    this.opts = opts;
    this.log = opts.logger ?? NOOP;
    this.limiter = new RateLimiter(opts.rechainBurst ?? 50, opts.rechainPerSecond ?? 5);
  }

  private emit(e: InstallerEvent): void {
    try { this.opts.onEvent?.(e); } catch { /* a metrics hook must not break installation */ }
  }

  private get standaloneFile(): string {
    return path.join(this.opts.confDir, this.opts.standaloneConfName ?? '99-weir.conflist');
  }

  entry(): Record<string, unknown> {
    return { type: PLUGIN_TYPE, ...this.opts.pluginConf };
  }

  /** Installs the binary, chains (or waits for a primary conf), and starts watching. */
  async start(): Promise<void> {
    await mkdir(this.opts.confDir, { recursive: true });
    await this.installBinary();
    this.watch = new DirWatch({
      dir: this.opts.confDir,
      periodicMs: this.opts.periodicCheckMs,
      onChange: () => { void this.reconcile(); },
      onError: (e) => this.log.warn({ err: e.message }, 'conf dir watch error'),
    });
    this.watch.start();
    await this.reconcile();
  }

  private async installBinary(): Promise<void> {
    await mkdir(this.opts.binDir, { recursive: true });
    const target = path.join(this.opts.binDir, PLUGIN_TYPE);
    const [want, have] = await Promise.all([sha256(this.opts.pluginBinary), sha256(target)]);
    if (want === undefined) throw new Error(`pluginBinary: ${this.opts.pluginBinary} does not exist (run npm run build)`);
    if (want === have) {
      this.emit({ kind: 'binary-unchanged', file: target });
    } else {
      await copyFileAtomic(this.opts.pluginBinary, target, 0o755);
      this.binaryAddedByUs = true;
      this.emit({ kind: 'binary-installed', file: target });
      this.log.info({ file: target }, 'weir-cni binary installed');
    }
    this.binaryInstalled = true;
  }

  /** True when the binary is installed and weir is chained (a re-chain in progress within the grace period counts). */
  ready(): { ready: boolean; reason: string } {
    if (!this.binaryInstalled) return { ready: false, reason: 'plugin binary not installed' };
    if (this.unchainedSince === undefined) return { ready: true, reason: 'chained' };
    const grace = this.opts.readyGraceMs ?? 1000;
    if (this.chainedFile !== undefined && Date.now() - this.unchainedSince < grace) return { ready: true, reason: 're-chaining' };
    return { ready: false, reason: this.chainedFile === undefined ? 'no primary CNI conf yet' : 'weir-cni not chained' };
  }

  /** Re-check the conf dir now. Concurrent calls coalesce into one more pass. */
  reconcile(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (this.reconciling) { this.again = true; return this.reconciling; }
    this.reconciling = (async () => {
      try {
        do {
          this.again = false;
          await this.reconcileOnce().catch((e: Error) => {
            this.log.warn({ err: e.message }, 'installer reconcile failed; will retry');
            this.emit({ kind: 'error', detail: e.message });
          });
        } while (this.again && !this.stopped);
      } finally {
        this.reconciling = undefined;
      }
    })();
    return this.reconciling;
  }

  private markChained(file: string): void {
    this.chainedFile = file;
    this.unchainedSince = undefined;
  }

  private markUnchained(): void {
    this.unchainedSince ??= Date.now();
  }

  private async reconcileOnce(): Promise<void> {
    if (this.opts.mode === 'standalone') return this.reconcileStandalone();
    const ignore = [path.basename(this.standaloneFile)];
    const primary = await findPrimaryConf(this.opts.confDir, { name: this.opts.primaryConfName, ignore });
    if (!primary) {
      // Report the transition once, not on every periodic pass.
      if (!this.waitingForPrimary) {
        this.waitingForPrimary = true;
        this.emit({ kind: 'waiting-for-primary' });
        this.log.info({ confDir: this.opts.confDir }, 'no primary CNI conf yet; waiting');
      }
      this.markUnchained();
      return;
    }
    this.waitingForPrimary = false;
    const idx = weirEntryIndex(primary, PLUGIN_TYPE);
    if (primary.isList && idx >= 0 && sameJson(pluginsOf(primary)[idx], this.entry()) && idx === pluginsOf(primary).length - 1) {
      this.markChained(primary.path);
      return;
    }
    this.markUnchained();
    const token = this.limiter.take();
    if (!token.ok) {
      if (!this.rateLimited) {
        this.rateLimited = true;
        this.emit({ kind: 'rate-limited', file: primary.path, detail: `primary CNI conf rewritten faster than ${this.opts.rechainPerSecond ?? 5}/s; re-chaining slowed down` });
        this.log.warn({ file: primary.path }, 'primary CNI conf keeps dropping weir-cni; re-chaining rate-limited');
      }
      clearTimeout(this.retryTimer);
      this.retryTimer = setTimeout(() => { void this.reconcile(); }, token.waitMs);
      return;
    }
    this.rateLimited = false;
    await this.chain(primary);
  }

  private async chain(primary: ConfFile): Promise<void> {
    const next = JSON.stringify(chainedConf(primary, this.entry()), null, 2) + '\n';
    const target = primary.isList ? primary.path : primary.path.replace(/\.(conf|json)$/, '.conflist');
    // Never overwrite a rewrite by the primary CNI that landed after we read
    // its file: check again right before the rename, and start over if so.
    const unchanged = async () => (await readFile(primary.path, 'utf8').catch(() => undefined)) === primary.text;
    try {
      await writeFileAtomic(target, next, primary.mode, unchanged);
    } catch (e) {
      if (e instanceof PreconditionFailed) { this.again = true; return; }
      throw e;
    }
    if (!primary.isList) {
      this.converted = { confPath: primary.path, text: primary.text, mode: primary.mode, listPath: target };
      if (target !== primary.path) await unlink(primary.path).catch(() => undefined);
    } else if (this.converted && this.converted.listPath !== target) {
      this.converted = undefined;
    }
    this.chainWrites++;
    this.markChained(target);
    this.emit({ kind: 'chained', file: target });
    this.log.info({ file: target }, 'weir-cni chained into the primary CNI conf');
  }

  private async reconcileStandalone(): Promise<void> {
    const net = this.opts.standaloneNetwork ?? { name: 'weir', cniVersion: '1.0.0' };
    const want = { cniVersion: net.cniVersion, name: net.name, plugins: [this.entry()] };
    const have = await readConf(this.standaloneFile);
    if (have && sameJson(have.json, want)) { this.markChained(this.standaloneFile); return; }
    await writeFileAtomic(this.standaloneFile, JSON.stringify(want, null, 2) + '\n', 0o644);
    this.chainWrites++;
    this.markChained(this.standaloneFile);
    this.emit({ kind: 'standalone-written', file: this.standaloneFile });
  }

  /** Stops watching; unless keepOnShutdown, removes exactly what start() added. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.watch?.stop();
    clearTimeout(this.retryTimer);
    await this.reconciling;
    if (this.opts.keepOnShutdown) return;
    if (this.opts.mode === 'standalone') {
      await unlink(this.standaloneFile).catch(() => undefined);
    } else if (this.chainedFile) {
      const conf = await readConf(this.chainedFile);
      if (conf && weirEntryIndex(conf, PLUGIN_TYPE) >= 0) {
        const without = unchainedConf(conf, PLUGIN_TYPE);
        const c = this.converted;
        if (c && c.listPath === conf.path && (without.plugins as unknown[]).length === 1 && sameJson((without.plugins as unknown[])[0], JSON.parse(c.text))) {
          // We turned a single .conf into a list: put the .conf back as it was.
          await writeFileAtomic(c.confPath, c.text, c.mode);
          if (c.confPath !== c.listPath) await unlink(c.listPath).catch(() => undefined);
        } else {
          await writeFileAtomic(conf.path, JSON.stringify(without, null, 2) + '\n', conf.mode);
        }
      }
    }
    if (this.binaryAddedByUs) await unlink(path.join(this.opts.binDir, PLUGIN_TYPE)).catch(() => undefined);
    this.binaryInstalled = false;
    this.emit({ kind: 'removed', file: this.chainedFile });
  }

  /** For tests and the admin socket. */
  status(): { chainedFile?: string; chainWrites: number; rateLimited: boolean } {
    return { chainedFile: this.chainedFile, chainWrites: this.chainWrites, rateLimited: this.rateLimited };
  }
}

