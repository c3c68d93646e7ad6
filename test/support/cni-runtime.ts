// A container runtime's CNI side, as libcni does it, for tests and benches:
// runs each plugin of a conflist in order (DEL in reverse), with the CNI_*
// environment and the plugin's conf on stdin (name, cniVersion,
// runtimeConfig for declared capabilities, prevResult injected), and caches
// each ADD's result so DEL and CHECK get it as prevResult.
//
//   const rt = new CniRuntime({ conflist, binDirs: [pluginDir, '/usr/lib/cni'] });
//   const r = await rt.add({ containerId, netns: ns.path, args: { K8S_POD_NAMESPACE: 'default', K8S_POD_NAME: 'a' } });
//   if (!r.ok) console.log(r.error.code, r.error.msg);
//   await rt.del({ containerId, netns: ns.path });
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

export interface CniErrorResult { cniVersion?: string; code: number; msg: string; details?: string }

export interface PluginRun {
  plugin: string;
  exitCode: number;
  stdout: string;
  stderr: string;
  durationMs: number;
}

export type CniOutcome =
  | { ok: true; result: Record<string, unknown> | undefined; runs: PluginRun[] }
  | { ok: false; error: CniErrorResult; failedPlugin: string; runs: PluginRun[] };

export interface Conflist {
  cniVersion: string;
  name: string;
  plugins: Record<string, unknown>[];
  [k: string]: unknown;
}

export interface SandboxSpec {
  containerId: string;
  /** '' = no netns (containerd's second DEL). */
  netns: string;
  ifName?: string;
  /** CNI_ARGS as a map, e.g. K8S_POD_NAMESPACE, K8S_POD_NAME, K8S_POD_UID. */
  args?: Record<string, string>;
  /** Runtime-provided capability data (portMappings, ...), given only to plugins that declare the capability. */
  capabilityArgs?: Record<string, unknown>;
}

export interface CniRuntimeOptions {
  /** The conflist object, or a path to a .conflist/.conf file (read at each call, as runtimes reload). */
  conflist: Conflist | string;
  /** CNI_PATH: where plugin binaries are looked up, in order. */
  binDirs: string[];
  /** Per-plugin timeout; the plugin is killed and the call fails with code 999 after it. */
  timeoutMs?: number;
}

function loadConflist(source: Conflist | string): Conflist {
  if (typeof source !== 'string') return source;
  const raw = JSON.parse(readFileSync(source, 'utf8')) as Record<string, unknown>;
  // A single .conf is a one-plugin list (libcni's ConfListFromConf).
  if (!Array.isArray(raw.plugins)) return { cniVersion: raw.cniVersion as string, name: raw.name as string, plugins: [raw] };
  return raw as Conflist;
}

export class CniRuntime {
  private readonly opts: CniRuntimeOptions;
  /** libcni's result cache: containerId/ifName → final ADD result. */
  private readonly cache = new Map<string, Record<string, unknown>>();

  constructor(opts: CniRuntimeOptions) {
    this.opts = opts;
  }

  conflist(): Conflist {
    return loadConflist(this.opts.conflist);
  }

  cachedResult(s: SandboxSpec): Record<string, unknown> | undefined {
    return this.cache.get(`${s.containerId}/${s.ifName ?? 'eth0'}`);
  }

  private findPlugin(type: string): string {
    for (const d of this.opts.binDirs) {
      const p = path.join(d, type);
      if (existsSync(p)) return p;
    }
    throw new Error(`CniRuntime: plugin ${JSON.stringify(type)} not found in ${this.opts.binDirs.join(':')}`);
  }

  private pluginConf(list: Conflist, plugin: Record<string, unknown>, s: SandboxSpec, prevResult: unknown, extra: Record<string, unknown> = {}): string {
    const conf: Record<string, unknown> = { ...plugin, name: list.name, cniVersion: list.cniVersion, ...extra };
    const caps = plugin.capabilities as Record<string, boolean> | undefined;
    if (caps && s.capabilityArgs) {
      const rc: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(s.capabilityArgs)) if (caps[k]) rc[k] = v;
      if (Object.keys(rc).length) conf.runtimeConfig = rc;
    }
    if (prevResult !== undefined) conf.prevResult = prevResult;
    return JSON.stringify(conf);
  }

  /** Run one plugin binary as a runtime does. Exposed for tests of a single plugin. */
  exec(pluginPath: string, env: Record<string, string>, stdin: string): Promise<PluginRun> {
    const started = performance.now();
    return new Promise((resolve, reject) => {
      const child = spawn(pluginPath, [], { env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', CNI_PATH: this.opts.binDirs.join(':'), ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      const timer = setTimeout(() => child.kill('SIGKILL'), this.opts.timeoutMs ?? 30000);
      child.stdout.on('data', (c: Buffer) => out.push(c));
      child.stderr.on('data', (c: Buffer) => err.push(c));
      child.on('error', (e) => { clearTimeout(timer); reject(e); });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        resolve({ plugin: path.basename(pluginPath), exitCode: code ?? (signal ? 128 : 1), stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8'), durationMs: performance.now() - started });
      });
      child.stdin.on('error', () => undefined); // a plugin may exit without reading stdin
      child.stdin.end(stdin);
    });
  }

  private envFor(command: string, s: SandboxSpec): Record<string, string> {
    const args = Object.entries(s.args ?? {}).map(([k, v]) => `${k}=${v}`);
    return {
      CNI_COMMAND: command,
      CNI_CONTAINERID: s.containerId,
      CNI_NETNS: s.netns,
      CNI_IFNAME: s.ifName ?? 'eth0',
      CNI_ARGS: args.length ? ['IgnoreUnknown=1', ...args].join(';') : '',
    };
  }

  private static failure(run: PluginRun): CniErrorResult {
    try {
      const e = JSON.parse(run.stdout) as CniErrorResult;
      if (typeof e.code === 'number') return e;
    } catch { /* not JSON */ }
    return { code: 999, msg: `plugin ${run.plugin} exited ${run.exitCode} without an error object: ${run.stdout || run.stderr}`.trim() };
  }

  private async chain(command: 'ADD' | 'DEL' | 'CHECK', s: SandboxSpec, reverse: boolean, prevResult: unknown, passResults: boolean): Promise<CniOutcome> {
    const list = this.conflist();
    const plugins = reverse ? [...list.plugins].reverse() : list.plugins;
    const runs: PluginRun[] = [];
    let prev = prevResult;
    for (const plugin of plugins) {
      const bin = this.findPlugin(String(plugin.type));
      const run = await this.exec(bin, this.envFor(command, s), this.pluginConf(list, plugin, s, prev));
      runs.push(run);
      if (run.exitCode !== 0) return { ok: false, error: CniRuntime.failure(run), failedPlugin: String(plugin.type), runs };
      if (passResults) {
        try {
          prev = JSON.parse(run.stdout);
        } catch {
          return { ok: false, error: { code: 999, msg: `plugin ${run.plugin}: result is not JSON: ${run.stdout}` }, failedPlugin: String(plugin.type), runs };
        }
      }
    }
    return { ok: true, result: prev as Record<string, unknown> | undefined, runs };
  }

  /** ADD through the chain; the final result is cached for DEL/CHECK. */
  async add(s: SandboxSpec): Promise<CniOutcome> {
    const r = await this.chain('ADD', s, false, undefined, true);
    if (r.ok && r.result) this.cache.set(`${s.containerId}/${s.ifName ?? 'eth0'}`, r.result);
    return r;
  }

  /** DEL in reverse order with the cached result (if any) as prevResult; drops the cache entry. */
  async del(s: SandboxSpec, opts: { withoutPrevResult?: boolean } = {}): Promise<CniOutcome> {
    const key = `${s.containerId}/${s.ifName ?? 'eth0'}`;
    const r = await this.chain('DEL', s, true, opts.withoutPrevResult ? undefined : this.cache.get(key), false);
    if (r.ok) this.cache.delete(key);
    return r;
  }

  /** CHECK every plugin with the cached result as prevResult. */
  async check(s: SandboxSpec): Promise<CniOutcome> {
    const cached = this.cache.get(`${s.containerId}/${s.ifName ?? 'eth0'}`);
    if (!cached) throw new Error(`CniRuntime.check: no cached ADD result for ${s.containerId}`);
    return this.chain('CHECK', s, false, cached, false);
  }

  /** Run a non-sandbox command (VERSION, STATUS, GC) against one plugin type of the list. */
  async command(type: string, command: 'VERSION' | 'STATUS' | 'GC', extra: Record<string, unknown> = {}): Promise<PluginRun> {
    const list = this.conflist();
    const plugin = list.plugins.find((p) => p.type === type);
    if (!plugin) throw new Error(`CniRuntime.command: no plugin of type ${type} in the list`);
    return this.exec(this.findPlugin(type), { CNI_COMMAND: command }, this.pluginConf(list, plugin, { containerId: '', netns: '' }, undefined, extra));
  }
}
