// A small CRI v1 client over containerd's socket (the same gRPC API the
// kubelet speaks), plus a helper that runs a whole pod — sandbox and
// containers — the way the kubelet would, so tests exercise the CNI path a
// real node takes. The proto is our own minimal subset (proto/cri.proto).
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const PROTO = path.join(path.dirname(new URL(import.meta.url).pathname), 'proto', 'cri.proto');

export interface PodSandboxMetadata { name: string; uid: string; namespace: string; attempt?: number }
export interface KeyValue { key: string; value: string }
export interface CriMount { container_path: string; host_path: string; readonly?: boolean }

export interface PodSandboxConfig {
  metadata: PodSandboxMetadata;
  hostname?: string;
  log_directory?: string;
  dns_config?: { servers?: string[]; searches?: string[]; options?: string[] };
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  linux?: { cgroup_parent?: string; security_context?: Record<string, unknown>; sysctls?: Record<string, string> };
}

export interface ContainerConfig {
  metadata: { name: string; attempt?: number };
  image: { image: string };
  command?: string[];
  args?: string[];
  working_dir?: string;
  envs?: KeyValue[];
  mounts?: CriMount[];
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  log_path?: string;
  linux?: { security_context?: { run_as_user?: { value: number }; run_as_group?: { value: number }; privileged?: boolean; capabilities?: { add_capabilities?: string[] } } };
}

export interface PodSandboxStatusResponse {
  status: { id: string; state: 'SANDBOX_READY' | 'SANDBOX_NOTREADY'; network?: { ip: string; additional_ips: { ip: string }[] } | null; annotations: Record<string, string> };
  info: Record<string, string>;
}

export interface ContainerStatusResponse {
  status: { id: string; state: 'CONTAINER_CREATED' | 'CONTAINER_RUNNING' | 'CONTAINER_EXITED' | 'CONTAINER_UNKNOWN'; exit_code: number; reason: string; message: string; log_path: string };
  info: Record<string, string>;
}

export interface ExecResult { stdout: string; stderr: string; exitCode: number }

type Unary = (req: object, meta: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: unknown) => void) => void;

function loadServices(): { runtime: grpc.ServiceClientConstructor; image: grpc.ServiceClientConstructor } {
  const def = protoLoader.loadSync(PROTO, { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true });
  const pkg = grpc.loadPackageDefinition(def) as unknown as { runtime: { v1: Record<string, grpc.ServiceClientConstructor> } };
  return { runtime: pkg.runtime.v1.RuntimeService, image: pkg.runtime.v1.ImageService };
}

export class CriClient {
  private readonly runtime: grpc.Client;
  private readonly image: grpc.Client;

  /**
   * @param logRoot where pods' log directories go; put it under the
   *   containerd temp dir so they go away with it.
   */
  constructor(readonly socket: string, readonly logRoot: string = os.tmpdir()) {
    const { runtime, image } = loadServices();
    // grpc-js dials unix sockets by `unix:` URI; the default 4 MiB message
    // limit is plenty for CRI calls.
    this.runtime = new runtime(`unix:${socket}`, grpc.credentials.createInsecure());
    this.image = new image(`unix:${socket}`, grpc.credentials.createInsecure());
  }

  close(): void { this.runtime.close(); this.image.close(); }

  private call<T>(client: grpc.Client, method: string, req: object, timeoutMs = 120_000): Promise<T> {
    const fn = (client as unknown as Record<string, Unary>)[method];
    if (typeof fn !== 'function') throw new Error(`CRI: no method ${method} in proto/cri.proto`);
    return new Promise<T>((resolve, reject) => {
      fn.call(client, req, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => {
        if (err) reject(new Error(`CRI ${method}: ${err.details || err.message}`, { cause: err }));
        else resolve(res as T);
      });
    });
  }

  version(): Promise<{ version: string; runtime_name: string; runtime_version: string; runtime_api_version: string }> {
    return this.call(this.runtime, 'Version', { version: 'v1' });
  }

  async runPodSandbox(config: PodSandboxConfig): Promise<string> {
    const res = await this.call<{ pod_sandbox_id: string }>(this.runtime, 'RunPodSandbox', { config });
    return res.pod_sandbox_id;
  }

  async stopPodSandbox(id: string): Promise<void> { await this.call(this.runtime, 'StopPodSandbox', { pod_sandbox_id: id }); }
  async removePodSandbox(id: string): Promise<void> { await this.call(this.runtime, 'RemovePodSandbox', { pod_sandbox_id: id }); }

  podSandboxStatus(id: string, verbose = true): Promise<PodSandboxStatusResponse> {
    return this.call(this.runtime, 'PodSandboxStatus', { pod_sandbox_id: id, verbose });
  }

  async listPodSandbox(): Promise<{ id: string; metadata: PodSandboxMetadata; state: string }[]> {
    const res = await this.call<{ items: { id: string; metadata: PodSandboxMetadata; state: string }[] }>(this.runtime, 'ListPodSandbox', {});
    return res.items;
  }

  async createContainer(podSandboxId: string, config: ContainerConfig, sandboxConfig: PodSandboxConfig): Promise<string> {
    const res = await this.call<{ container_id: string }>(this.runtime, 'CreateContainer', { pod_sandbox_id: podSandboxId, config, sandbox_config: sandboxConfig });
    return res.container_id;
  }

  async startContainer(id: string): Promise<void> { await this.call(this.runtime, 'StartContainer', { container_id: id }); }
  async stopContainer(id: string, timeoutSec = 0): Promise<void> { await this.call(this.runtime, 'StopContainer', { container_id: id, timeout: timeoutSec }); }
  async removeContainer(id: string): Promise<void> { await this.call(this.runtime, 'RemoveContainer', { container_id: id }); }

  containerStatus(id: string): Promise<ContainerStatusResponse> {
    return this.call(this.runtime, 'ContainerStatus', { container_id: id, verbose: true });
  }

  async execSync(containerId: string, cmd: string[], timeoutSec = 30): Promise<ExecResult> {
    const res = await this.call<{ stdout: Buffer; stderr: Buffer; exit_code: number }>(
      this.runtime, 'ExecSync', { container_id: containerId, cmd, timeout: timeoutSec }, (timeoutSec + 10) * 1000);
    return { stdout: res.stdout.toString('utf8'), stderr: res.stderr.toString('utf8'), exitCode: res.exit_code };
  }

  /** Runtime conditions, and with verbose containerd's loaded CNI config under info.cniconfig. */
  status(verbose = true): Promise<{ status: { conditions: { type: string; status: boolean; reason: string; message: string }[] }; info: Record<string, string> }> {
    return this.call(this.runtime, 'Status', { verbose });
  }

  /**
   * Wait until containerd has loaded a CNI config containing `needle` (it
   * reloads the conf dir on fsnotify events, asynchronously): a pod created
   * before that would run the old chain.
   */
  async waitForCniConfig(needle: string, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < deadline) {
      last = (await this.status()).info?.cniconfig ?? '';
      if (last.includes(needle)) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`containerd did not load a CNI config with ${needle} within ${timeoutMs} ms; it has: ${last.slice(0, 500)}`);
  }

  async listImages(): Promise<{ id: string; repo_tags: string[] }[]> {
    const res = await this.call<{ images: { id: string; repo_tags: string[] }[] }>(this.image, 'ListImages', {});
    return res.images;
  }
}

/** The netns path of a sandbox, from containerd's verbose status (runtime spec → linux.namespaces). */
export function sandboxNetnsPath(st: PodSandboxStatusResponse): string {
  const raw = st.info?.info;
  if (!raw) throw new Error(`sandbox ${st.status.id}: no verbose info (was verbose set?)`);
  const info = JSON.parse(raw) as { runtimeSpec?: { linux?: { namespaces?: { type: string; path?: string }[] } } };
  const ns = info.runtimeSpec?.linux?.namespaces?.find((n) => n.type === 'network');
  if (!ns?.path) throw new Error(`sandbox ${st.status.id}: runtime spec has no network namespace path`);
  return ns.path;
}

export interface ContainerSpec {
  name: string;
  image: string;
  command: string[];
  env?: Record<string, string>;
  mounts?: CriMount[];
  runAsUser?: number;
  runAsGroup?: number;
  privileged?: boolean;
  addCapabilities?: string[];
}

export interface PodSpec {
  name: string;
  namespace: string;
  uid?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  containers: ContainerSpec[];
  dnsServers?: string[];
  dnsSearches?: string[];
}

/** A running pod: sandbox id, its IP and netns, and its containers by name. */
export class RunningPod {
  removed = false;
  constructor(
    readonly cri: CriClient,
    readonly spec: PodSpec,
    readonly uid: string,
    readonly sandboxId: string,
    readonly sandboxConfig: PodSandboxConfig,
    readonly ip: string,
    readonly netnsPath: string,
    readonly containers: Map<string, string>,
    readonly logDir: string,
  ) {}

  containerId(name: string): string {
    const id = this.containers.get(name);
    if (!id) throw new Error(`pod ${this.spec.name}: no container ${name}`);
    return id;
  }

  exec(container: string, cmd: string[], timeoutSec = 30): Promise<ExecResult> {
    return this.cri.execSync(this.containerId(container), cmd, timeoutSec);
  }

  /** The container's stdout/stderr as CRI wrote it (one "time stream tag text" line per write). */
  logs(container: string): string {
    try {
      return fs.readFileSync(path.join(this.logDir, `${container}.log`), 'utf8')
        .split('\n').filter(Boolean).map((l) => l.split(' ').slice(3).join(' ')).join('\n');
    } catch { return ''; }
  }

  /** What the kubelet does on pod deletion: stop (CNI DEL with netns), then remove (CNI DEL again, without). */
  async remove(): Promise<void> {
    if (this.removed) return;
    this.removed = true;
    await this.cri.stopPodSandbox(this.sandboxId);
    await this.cri.removePodSandbox(this.sandboxId);
    fs.rmSync(this.logDir, { recursive: true, force: true });
  }
}

/**
 * Run a pod the way the kubelet does: RunPodSandbox (which runs the CNI
 * chain), then create and start each container. If any step fails, the
 * sandbox is stopped and removed before the error is thrown, so a failed
 * pod leaves nothing behind.
 */
export async function runPod(cri: CriClient, spec: PodSpec, onNetns?: (p: string) => void): Promise<RunningPod> {
  const uid = spec.uid ?? randomUUID();
  const logDir = fs.mkdtempSync(path.join(cri.logRoot, `we-podlog-${spec.name}-`));
  const sandboxConfig: PodSandboxConfig = {
    metadata: { name: spec.name, uid, namespace: spec.namespace, attempt: 0 },
    hostname: spec.name,
    log_directory: logDir,
    labels: spec.labels ?? {},
    annotations: spec.annotations ?? {},
    dns_config: { servers: spec.dnsServers ?? [], searches: spec.dnsSearches ?? [], options: spec.dnsSearches ? ['ndots:5'] : [] },
    linux: {},
  };
  let sandboxId: string;
  try {
    sandboxId = await cri.runPodSandbox(sandboxConfig);
  } catch (err) {
    fs.rmSync(logDir, { recursive: true, force: true });
    throw err;
  }
  try {
    const st = await cri.podSandboxStatus(sandboxId);
    const netns = sandboxNetnsPath(st);
    onNetns?.(netns);
    const ip = st.status.network?.ip ?? '';
    const containers = new Map<string, string>();
    for (const c of spec.containers) {
      const config: ContainerConfig = {
        metadata: { name: c.name, attempt: 0 },
        image: { image: c.image },
        command: c.command,
        envs: Object.entries(c.env ?? {}).map(([key, value]) => ({ key, value })),
        mounts: c.mounts ?? [],
        log_path: `${c.name}.log`,
        linux: {
          security_context: {
            ...(c.runAsUser !== undefined ? { run_as_user: { value: c.runAsUser } } : {}),
            ...(c.runAsGroup !== undefined ? { run_as_group: { value: c.runAsGroup } } : {}),
            privileged: c.privileged ?? false,
            ...(c.addCapabilities ? { capabilities: { add_capabilities: c.addCapabilities } } : {}),
          },
        },
      };
      const id = await cri.createContainer(sandboxId, config, sandboxConfig);
      containers.set(c.name, id);
      await cri.startContainer(id);
    }
    return new RunningPod(cri, spec, uid, sandboxId, sandboxConfig, ip, netns, containers, logDir);
  } catch (err) {
    await cri.stopPodSandbox(sandboxId).catch(() => {});
    await cri.removePodSandbox(sandboxId).catch(() => {});
    fs.rmSync(logDir, { recursive: true, force: true });
    throw err;
  }
}
