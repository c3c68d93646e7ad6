// `weir agent` as a child process (from source, so always the current code)
// against a TestApiServer in the test process: the suites that attack the
// agent from outside (fuzz, crash points, last resort, hostile sockets) need
// a real process whose death, fds and restart they can observe.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { TestApiServer, type KubeObject } from './apiserver.js';

export const REPO = path.resolve(import.meta.dirname, '../..');
export const RELAY = path.join(REPO, 'dist', 'weir-cni');
const MAIN = path.join(REPO, 'src', 'cli', 'main.ts');

export interface AgentChildOptions {
  backend?: 'nftables' | 'iptables';
  controlPlane?: boolean;
  env?: Record<string, string>;
}

/** A pod of the agent's node with a proxy container: decideCapture says capture. */
export function meshPod(name: string, namespace = 'default', nodeName = 'wk-child-node'): KubeObject {
  return {
    apiVersion: 'v1', kind: 'Pod',
    metadata: { name, namespace, uid: `u-${name}`, creationTimestamp: new Date().toISOString() },
    spec: { nodeName, containers: [{ name: 'app' }, { name: 'weir-proxy' }] },
    status: { phase: 'Running' },
  } as KubeObject;
}

export class AgentChild {
  child?: ChildProcess;
  log = '';
  metricsUrl = '';
  readonly runDir: string;
  private readonly kubeconfig: string;
  private exited?: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  private constructor(readonly api: TestApiServer, readonly dir: string, readonly nodeName: string) {
    this.runDir = path.join(dir, 'run');
    mkdirSync(path.join(dir, 'proc'), { recursive: true });
    this.kubeconfig = api.writeKubeconfig(dir);
  }

  static async create(nodeName = 'wk-child-node'): Promise<AgentChild> {
    const api = await TestApiServer.start();
    api.put({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default' } } as KubeObject);
    return new AgentChild(api, mkdtempSync(path.join(tmpdir(), 'wk-child-')), nodeName);
  }

  get cniSocket(): string { return path.join(this.runDir, 'cni.sock'); }
  get adminSocket(): string { return path.join(this.runDir, 'admin.sock'); }
  get proxySocket(): string { return path.join(this.runDir, 'proxy.sock'); }
  get pid(): number { return this.child?.pid ?? -1; }
  get alive(): boolean { return !!this.child && this.child.exitCode === null && this.child.signalCode === null; }

  /** Starts the agent and waits for "agent started". */
  async start(o: AgentChildOptions = {}): Promise<void> {
    this.log = '';
    const args = [
      '--import', 'tsx', MAIN, 'agent', '--node-name', this.nodeName, '--kubeconfig', this.kubeconfig, '--no-install',
      '--run-dir', this.runDir, '--host-proc', path.join(this.dir, 'proc'), '--metrics-addr', '127.0.0.1:0',
      '--repair-interval', '1h', '--backend', o.backend ?? 'nftables', '--log-level', 'debug',
    ];
    if (o.controlPlane === false) args.push('--no-control-plane');
    const child = spawn(process.execPath, args, { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...o.env } });
    this.child = child;
    const keep = (c: Buffer): void => { this.log += c.toString(); };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    const deadline = Date.now() + 40_000;
    while (!/"msg":"agent started"/.test(this.log)) {
      if (Date.now() > deadline || !this.alive) throw new Error(`agent did not start:\n${this.log.slice(-4000)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const line = this.log.split('\n').find((l) => l.includes('"agent started"'))!;
    this.metricsUrl = (JSON.parse(line) as { metrics: string }).metrics;
  }

  /** Resolves when the child exits (already exited: at once). */
  async waitExit(timeoutMs = 20_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (!this.exited) throw new Error('never started');
    let t: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([this.exited, new Promise<never>((_, rej) => { t = setTimeout(() => rej(new Error(`agent still running after ${timeoutMs} ms:\n${this.log.slice(-2000)}`)), timeoutMs); })]);
    } finally { clearTimeout(t); }
  }

  async kill(): Promise<void> {
    if (this.alive) this.child!.kill('SIGKILL');
    if (this.exited) await this.exited;
  }

  /** Open fds of the agent process now. */
  fdCount(): number { return readdirSync(`/proc/${this.pid}/fd`).length; }

  /** Waits until the fd count is back at or below `baseline` (connections closed, handles freed). */
  async fdsSettle(baseline: number, timeoutMs = 10_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    let n = this.fdCount();
    while (n > baseline && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      n = this.fdCount();
    }
    return n;
  }

  async stop(): Promise<void> {
    await this.kill();
    await this.api.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
