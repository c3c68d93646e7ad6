// A small stand-in for the kubelet: runs a Kubernetes Pod object (as the
// API server stores it, e.g. after the injector mutated it) through CRI the
// way the kubelet's pod workers do. containerd knows nothing of native
// sidecars, init-container order, postStart hooks or probes; those are
// kubelet semantics, reproduced here so the injected spec is exercised as a
// node would run it:
//   - init containers in order; an init container with restartPolicy Always
//     (a native sidecar, KEP-753) is started and the next one waits for its
//     startupProbe to pass; the others must exit 0;
//   - app containers in order, each one's postStart exec hook run to the
//     end before the next container is created;
//   - env fieldRefs (metadata.name/namespace, status.podIP, spec.serviceAccountName);
//   - securityContext: runAsUser/Group, readOnlyRootFilesystem, drop ALL,
//     allowPrivilegeEscalation false → no_new_privs (seccomp is not in our CRI subset);
//   - shareProcessNamespace → the pod's PID namespace; else one per container;
//   - httpGet probes against the pod IP, as the kubelet sends them;
//   - restartPolicy Never completion: when every app container has exited,
//     native sidecars are stopped (SIGTERM, then the grace period) and the
//     pod is Succeeded if every app container exited 0.
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { sandboxNetnsPath, type ContainerConfig, type CriClient, type PodSandboxConfig } from './cri.js';
import { httpGet } from '../e2e/runtime/pods.js';

/** The slice of a Pod the kubelet stand-in reads. */
export interface KPod {
  metadata: { name: string; namespace: string; uid?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec: { containers: KContainer[]; initContainers?: KContainer[]; shareProcessNamespace?: boolean; restartPolicy?: string; serviceAccountName?: string };
}
interface KProbe { httpGet?: { path?: string; port: number; scheme?: string }; periodSeconds?: number; failureThreshold?: number; timeoutSeconds?: number }
export interface KContainer {
  name: string; image: string; command?: string[]; args?: string[]; restartPolicy?: string;
  env?: { name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } }[];
  securityContext?: { runAsUser?: number; runAsGroup?: number; readOnlyRootFilesystem?: boolean; allowPrivilegeEscalation?: boolean; privileged?: boolean; capabilities?: { drop?: string[]; add?: string[] } };
  startupProbe?: KProbe; readinessProbe?: KProbe; livenessProbe?: KProbe;
  lifecycle?: { postStart?: { exec?: { command: string[] } } };
}

export interface KubeletEvent { t: number; what: string }

export class KubeletPod {
  readonly events: KubeletEvent[] = [];
  readonly containers = new Map<string, string>();
  removed = false;
  constructor(readonly cri: CriClient, readonly pod: KPod, readonly uid: string, readonly sandboxId: string, readonly ip: string, readonly netnsPath: string, readonly logDir: string) {}

  note(what: string): void { this.events.push({ t: Date.now(), what }); }
  when(what: string): number | undefined { return this.events.find((e) => e.what === what)?.t; }

  id(name: string): string {
    const id = this.containers.get(name);
    if (!id) throw new Error(`pod ${this.pod.metadata.name}: no container ${name} (has ${[...this.containers.keys()].join(', ')})`);
    return id;
  }

  exec(container: string, cmd: string[], timeoutSec = 30) { return this.cri.execSync(this.id(container), cmd, timeoutSec); }

  async state(container: string): Promise<{ state: string; exitCode: number }> {
    const st = await this.cri.containerStatus(this.id(container));
    return { state: st.status.state, exitCode: st.status.exit_code };
  }

  logs(container: string): string {
    try {
      return fs.readFileSync(path.join(this.logDir, `${container}.log`), 'utf8').split('\n').filter(Boolean).map((l) => l.split(' ').slice(3).join(' ')).join('\n');
    } catch { return ''; }
  }

  /** One probe of `container`'s `kind`, as the kubelet sends it (httpGet to the pod IP). */
  probe(container: string, kind: 'readinessProbe' | 'livenessProbe' | 'startupProbe'): Promise<{ status: number; body: string }> {
    const c = [...(this.pod.spec.initContainers ?? []), ...this.pod.spec.containers].find((x) => x.name === container);
    const p = c?.[kind];
    if (!p?.httpGet) throw new Error(`${container}.${kind}: not an httpGet probe`);
    return httpGet(`http://${this.ip}:${p.httpGet.port}${p.httpGet.path ?? '/'}`, (p.timeoutSeconds ?? 1) * 1000);
  }

  async remove(): Promise<void> {
    if (this.removed) return;
    this.removed = true;
    await this.cri.stopPodSandbox(this.sandboxId).catch(() => {});
    await this.cri.removePodSandbox(this.sandboxId).catch(() => {});
    fs.rmSync(this.logDir, { recursive: true, force: true });
  }
}

function fieldValue(pod: KPod, ip: string, fieldPath: string): string {
  switch (fieldPath) {
    case 'metadata.name': return pod.metadata.name;
    case 'metadata.namespace': return pod.metadata.namespace;
    case 'status.podIP': return ip;
    case 'spec.serviceAccountName': return pod.spec.serviceAccountName ?? 'default';
    default: throw new Error(`kubelet stand-in: fieldRef ${fieldPath} not supported`);
  }
}

function containerConfig(pod: KPod, ip: string, c: KContainer, pidMode: string): ContainerConfig {
  const sc = c.securityContext ?? {};
  return {
    metadata: { name: c.name, attempt: 0 },
    image: { image: c.image },
    command: c.command ?? [],
    args: c.args ?? [],
    envs: (c.env ?? []).map((e) => ({ key: e.name, value: e.value ?? (e.valueFrom?.fieldRef ? fieldValue(pod, ip, e.valueFrom.fieldRef.fieldPath) : '') })),
    log_path: `${c.name}.log`,
    linux: {
      security_context: {
        ...(sc.runAsUser !== undefined ? { run_as_user: { value: sc.runAsUser } } : {}),
        ...(sc.runAsGroup !== undefined ? { run_as_group: { value: sc.runAsGroup } } : {}),
        privileged: sc.privileged ?? false,
        capabilities: { add_capabilities: sc.capabilities?.add ?? [], drop_capabilities: sc.capabilities?.drop ?? [] },
        readonly_rootfs: sc.readOnlyRootFilesystem ?? false,
        no_new_privs: sc.allowPrivilegeEscalation === false,
        namespace_options: { network: 'POD', pid: pidMode, ipc: 'POD' },
      } as never,
    },
  };
}

async function waitProbe(kp: KubeletPod, c: KContainer, p: KProbe, what: string, deadlineMs: number): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  let last = '';
  for (;;) {
    const r = await kp.probe(c.name, 'startupProbe').catch((e: Error) => ({ status: 0, body: e.message }));
    if (r.status >= 200 && r.status < 400) return;
    last = `${r.status} ${r.body.trim()}`;
    const st = await kp.state(c.name);
    if (st.state === 'CONTAINER_EXITED') throw new Error(`${what}: container exited (code ${st.exitCode}) before its startup probe passed; log:\n${kp.logs(c.name)}`);
    if (Date.now() > deadline) throw new Error(`${what}: startup probe did not pass within ${deadlineMs} ms (last: ${last}); log:\n${kp.logs(c.name)}`);
    await new Promise((r) => setTimeout(r, Math.min(1000, (p.periodSeconds ?? 1) * 1000)));
  }
}

async function waitExited(kp: KubeletPod, name: string, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const st = await kp.state(name);
    if (st.state === 'CONTAINER_EXITED') return st.exitCode;
    if (Date.now() > deadline) throw new Error(`container ${name} still ${st.state} after ${timeoutMs} ms; log:\n${kp.logs(name)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Run the pod as the kubelet would; on any failure the sandbox is removed before the error is thrown. */
export async function runKubePod(cri: CriClient, pod: KPod, opts: { logRoot: string; onNetns?: (p: string) => void; startupTimeoutMs?: number }): Promise<KubeletPod> {
  const uid = pod.metadata.uid ?? randomUUID();
  const logDir = fs.mkdtempSync(path.join(opts.logRoot, `we-kpod-${pod.metadata.name}-`));
  const pidMode = pod.spec.shareProcessNamespace ? 'POD' : 'CONTAINER';
  const sandboxConfig: PodSandboxConfig = {
    metadata: { name: pod.metadata.name, uid, namespace: pod.metadata.namespace, attempt: 0 },
    hostname: pod.metadata.name, log_directory: logDir,
    labels: pod.metadata.labels ?? {}, annotations: pod.metadata.annotations ?? {},
    linux: { security_context: { namespace_options: { network: 'POD', pid: pidMode, ipc: 'POD' } } },
  };
  let sandboxId: string;
  try { sandboxId = await cri.runPodSandbox(sandboxConfig); } catch (err) { fs.rmSync(logDir, { recursive: true, force: true }); throw err; }
  const st = await cri.podSandboxStatus(sandboxId);
  const netns = sandboxNetnsPath(st);
  opts.onNetns?.(netns);
  const kp = new KubeletPod(cri, pod, uid, sandboxId, st.status.network?.ip ?? '', netns, logDir);
  try {
    const start = async (c: KContainer) => {
      const id = await cri.createContainer(sandboxId, containerConfig(pod, kp.ip, c, pidMode), sandboxConfig);
      kp.containers.set(c.name, id);
      await cri.startContainer(id);
      kp.note(`started ${c.name}`);
    };
    for (const c of pod.spec.initContainers ?? []) {
      await start(c);
      if (c.restartPolicy === 'Always') {
        if (c.startupProbe) await waitProbe(kp, c, c.startupProbe, `native sidecar ${c.name}`, opts.startupTimeoutMs ?? 30_000);
        kp.note(`${c.name} started (startup probe passed)`);
      } else {
        const code = await waitExited(kp, c.name, opts.startupTimeoutMs ?? 30_000);
        if (code !== 0) throw new Error(`init container ${c.name} exited ${code}; log:\n${kp.logs(c.name)}`);
        kp.note(`${c.name} completed`);
      }
    }
    for (const c of pod.spec.containers) {
      await start(c);
      const hook = c.lifecycle?.postStart?.exec?.command;
      if (hook) {
        // The kubelet runs the hook and does not start the next container until it returns.
        const r = await kp.exec(c.name, hook, Math.round((opts.startupTimeoutMs ?? 30_000) / 1000));
        if (r.exitCode !== 0) throw new Error(`${c.name} postStart hook exited ${r.exitCode}: ${r.stderr}${r.stdout}`);
        kp.note(`${c.name} postStart done`);
      }
    }
    return kp;
  } catch (err) {
    await kp.remove();
    throw err;
  }
}

/**
 * restartPolicy Never: wait until every app container has exited, then stop
 * the native sidecars as the kubelet does (their exit does not count), and
 * report the phase. Regular containers (a non-native proxy) must exit by
 * themselves: that is what keeps Jobs alive without native sidecars.
 */
export async function waitForCompletion(kp: KubeletPod, timeoutMs: number): Promise<{ phase: 'Succeeded' | 'Failed'; exitCodes: Record<string, number> }> {
  const exitCodes: Record<string, number> = {};
  for (const c of kp.pod.spec.containers) exitCodes[c.name] = await waitExited(kp, c.name, timeoutMs);
  kp.note('app containers exited');
  for (const c of [...(kp.pod.spec.initContainers ?? [])].reverse()) {
    if (c.restartPolicy !== 'Always') continue;
    if ((await kp.state(c.name)).state !== 'CONTAINER_EXITED') await kp.cri.stopContainer(kp.id(c.name), 30);
    exitCodes[c.name] = await waitExited(kp, c.name, 35_000);
    kp.note(`${c.name} stopped`);
  }
  const failed = kp.pod.spec.containers.some((c) => exitCodes[c.name] !== 0);
  return { phase: failed ? 'Failed' : 'Succeeded', exitCodes };
}
