// Runs weir's node-agent side as a child process for the runtime suite and
// the demo: today test/e2e/runtime/agent-harness.ts (the agent's parts, pods
// from JSON files), so it can be killed and started again like the agent.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import type { Containerd } from '../../support/containerd.js';
import type { PodSpec } from '../../support/cri.js';
import type { Pod } from '../../../src/kube/pod-types.js';
import { waitFor } from './pods.js';

const REPO = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..', '..');
export const WEIR_CNI = path.join(REPO, 'dist', 'weir-cni');
const HARNESS = path.join(REPO, 'test', 'e2e', 'runtime', 'agent-harness.ts');

/** The Pod object the agent resolves for a sandbox: what the API server would hold for it. */
export function podObject(spec: PodSpec, uid: string): Pod {
  return {
    apiVersion: 'v1', kind: 'Pod',
    metadata: { name: spec.name, namespace: spec.namespace, uid, labels: spec.labels ?? {}, annotations: spec.annotations ?? {} },
    spec: {
      containers: spec.containers.map((c) => ({
        name: c.name, image: c.image,
        ...(c.runAsUser !== undefined ? { securityContext: { runAsUser: c.runAsUser, runAsGroup: c.runAsGroup } } : {}),
      })),
    },
  };
}

export class AgentProcess {
  private child: ChildProcess | null = null;
  log = '';

  /**
   * @param servicesDir when given, the agent also serves the proxies'
   *   control plane on <runDir>/proxy.sock from the Service/EndpointSlice
   *   JSON files there (see putObject).
   */
  constructor(private readonly containerd: Containerd, readonly runDir: string, readonly podsDir: string, readonly servicesDir?: string) {}

  /** Add or replace a Service or EndpointSlice the agent's registry is built from. */
  putObject(obj: { kind: 'Service' | 'EndpointSlice'; metadata: { name: string; namespace: string } }): void {
    if (!this.servicesDir) throw new Error('AgentProcess: putObject needs servicesDir');
    const file = path.join(this.servicesDir, `${obj.kind}-${obj.metadata.namespace}-${obj.metadata.name}.json`);
    fs.writeFileSync(`${file}.tmp`, JSON.stringify(obj));
    fs.renameSync(`${file}.tmp`, file);
  }

  /** Record the Pod object for `spec` (with its uid) where the agent reads pods. */
  declare(spec: PodSpec & { uid: string }): void {
    fs.writeFileSync(path.join(this.podsDir, `${spec.name}.json`), JSON.stringify(podObject(spec, spec.uid)));
  }

  /** Start, wait for "ready", then until containerd can see weir-cni chained in its conf dir. */
  async start(): Promise<void> {
    this.log = '';
    const child = spawn(process.execPath, ['--import', 'tsx', HARNESS,
      '--run-dir', this.runDir, '--cni-conf-dir', this.containerd.cniConfDir, '--cni-bin-dir', this.containerd.cniBinDir,
      '--pods-dir', this.podsDir, '--plugin-binary', WEIR_CNI,
      ...(this.servicesDir ? ['--services-dir', this.servicesDir] : [])], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    child.stderr!.on('data', (d) => { this.log += d.toString(); });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`agent not ready in 30 s:\n${this.log}`)), 30_000);
      child.stdout!.on('data', (d) => { if (d.toString().includes('ready')) { clearTimeout(timer); resolve(); } });
      child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`agent exited ${code}:\n${this.log}`)); });
    });
    const confDir = this.containerd.cniConfDir;
    await waitFor(async () => fs.readdirSync(confDir)
      .some((f) => fs.readFileSync(path.join(confDir, f), 'utf8').includes('"weir-cni"')), 10_000, 'weir-cni chained');
    // containerd's CRI reloads the conf dir on an fsnotify event; give it a moment.
    await new Promise((r) => setTimeout(r, 1500));
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.child;
    this.child = null;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill(signal);
    await exited;
  }
}
