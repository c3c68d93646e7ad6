// Runs `weir agent` as a child process for the runtime suite and the demo,
// against a TestApiServer (in this process) that holds the Pods, Namespaces,
// Services and EndpointSlices, with its installer chaining weir-cni into the
// private containerd's CNI conf dir. The API server outlives agent restarts,
// so tests can kill the agent and start it again as a DaemonSet would.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
/** Where the node's CNI conf and plugins live (a private containerd's dirs, or plain dirs for the netns demo). */
export interface CniDirs { cniConfDir: string; cniBinDir: string }
import type { CriClient, PodSpec } from '../../support/cri.js';
import { TestApiServer, type KubeObject } from '../../support/apiserver.js';
import type { Pod } from '../../../src/kube/pod-types.js';
import { waitFor } from './pods.js';

const REPO = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..', '..');
export const WEIR_CNI = path.join(REPO, 'dist', 'weir-cni');
const WEIR_MAIN = path.join(REPO, 'src', 'cli', 'main.ts');
export const NODE_NAME = 'we-node';

/** The Pod object the API server holds for a CRI pod: scheduled to our node, proxy container with its UID. */
export function podObject(spec: PodSpec, uid: string): Pod {
  return {
    apiVersion: 'v1', kind: 'Pod',
    metadata: { name: spec.name, namespace: spec.namespace, uid, labels: spec.labels ?? {}, annotations: spec.annotations ?? {} },
    spec: {
      nodeName: NODE_NAME,
      containers: spec.containers.map((c) => ({
        name: c.name, image: c.image,
        ...(c.runAsUser !== undefined ? { securityContext: { runAsUser: c.runAsUser, runAsGroup: c.runAsGroup } } : {}),
      })),
    },
    status: { phase: 'Pending' },
  };
}

/** Run `weir` (from source, so it is always the current code) and return stdout. */
export function weirCli(args: string[]): string {
  // tsx compiles the CLI at each start: seconds on a loaded 2-core machine, so a generous bound.
  return execFileSync(process.execPath, ['--import', 'tsx', WEIR_MAIN, ...args], { cwd: REPO, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000 });
}

export class AgentProcess {
  private child: ChildProcess | null = null;
  log = '';
  readonly dir: string;
  readonly runDir: string;
  readonly metricsAddr: string;
  private readonly kubeconfig: string;

  private constructor(private readonly containerd: CniDirs, private readonly cri: CriClient | undefined, readonly api: TestApiServer) {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'we-agent-'));
    this.runDir = path.join(this.dir, 'run');
    this.kubeconfig = api.writeKubeconfig(this.dir);
    // A port of our own for the agent's metrics/health (:15014 in a cluster).
    this.metricsAddr = `127.0.0.1:${20000 + Math.floor(Math.random() * 20000)}`;
  }

  /** `cri` absent: no container runtime (the netns demo); start() then waits for the chain in the conf dir only. */
  static async create(containerd: CniDirs, cri?: CriClient): Promise<AgentProcess> {
    const api = await TestApiServer.start();
    return new AgentProcess(containerd, cri, api);
  }

  /**
   * Record the Pod (and its Namespace) in the API server, as the scheduler would before the kubelet
   * runs it. A spec without a uid gets one (set on the spec: the sandbox must carry the same uid).
   */
  declare(spec: PodSpec): PodSpec & { uid: string } {
    spec.uid ??= randomUUID();
    this.api.put({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: spec.namespace } } as KubeObject);
    this.api.put(podObject(spec, spec.uid) as unknown as KubeObject);
    return spec as PodSpec & { uid: string };
  }

  /** Add or replace a Service or EndpointSlice. */
  putObject(obj: object): void {
    this.api.put(obj as KubeObject);
  }

  /** Start the agent; resolve once it is ready and containerd can see weir-cni chained. */
  async start(): Promise<void> {
    this.log = '';
    const child = spawn(process.execPath, ['--import', 'tsx', WEIR_MAIN, 'agent',
      '--node-name', NODE_NAME, '--kubeconfig', this.kubeconfig,
      '--cni-conf-dir', this.containerd.cniConfDir, '--cni-bin-dir', this.containerd.cniBinDir, '--cni-plugin-binary', WEIR_CNI,
      '--run-dir', this.runDir, '--metrics-addr', this.metricsAddr, '--keep-chain-on-shutdown', 'true'],
    { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    const keep = (d: Buffer) => { this.log += d.toString(); };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    let exited: string | null = null;
    child.once('exit', (code, sig) => { exited = `weir agent exited (code ${code}, signal ${sig})`; });
    await waitFor(async () => {
      if (exited) throw new Error(`${exited}:\n${this.log}`);
      return /"msg":"agent started"/.test(this.log);
    }, 30_000, 'weir agent started').catch((e: Error) => { throw new Error(`${e.message}\nagent log:\n${this.log.slice(-3000)}`); });
    // The installer chained weir-cni; containerd must also have reloaded it.
    if (this.cri) await this.cri.waitForCniConfig('weir-cni');
    else await waitFor(async () => fs.readdirSync(this.containerd.cniConfDir).some((f) => fs.readFileSync(path.join(this.containerd.cniConfDir, f), 'utf8').includes('"weir-cni"')), 10_000, 'weir-cni chained');
  }

  get running(): boolean { return this.child !== null && this.child.exitCode === null && this.child.signalCode === null; }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.child;
    this.child = null;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill(signal);
    await exited;
  }

  /** Kill the agent, stop the API server, remove the dirs. */
  async stop(): Promise<void> {
    await this.kill();
    await this.api.stop();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
