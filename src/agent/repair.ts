// The repair loop: zero pods that should be captured may run uncaptured once
// the agent is ready. On start and every interval it finds the netns of each
// pod of this node that decideCapture says to capture (the SandboxStore's
// record first, else a /proc scan for pods that started before weir),
// verifies the rules against the plan, and by mode: reprograms in place
// (repair), deletes the pod so its controller re-creates it through the CNI
// chain (delete), or labels it weir.io/capture-broken=true (label).
import { CoreV1Api, PatchStrategy, setHeaderOptions, type KubeConfig } from '@kubernetes/client-node';
import type { CaptureBackend } from '../netns/backend-types.js';
import type { RedirectPlan } from '../redirect/types.js';
import type { Pod } from '../kube/pod-types.js';
import { decideCapture, DEFAULT_CAPTURE_SETTINGS, type CaptureSettings } from '../kube/capture-decision.js';
import type { CaptureEvent } from './contracts.js';
import type { SandboxStore, StoredSandbox } from './sandbox-store.js';
import type { Logger } from '../common/log.js';
import { netnsInode, scanPodNetns, type PodNetns } from './netns-scan.js';
import { sandboxAt } from '../netns/backend-types.js';

export type RepairMode = 'repair' | 'delete' | 'label';
export const REPAIR_MODES: readonly RepairMode[] = ['repair', 'delete', 'label'];
export const BROKEN_LABEL = 'weir.io/capture-broken';

export type RepairResult = 'ok' | 'repaired' | 'deleted' | 'labeled' | 'netns-not-found' | 'failed' | 'skipped';

export interface PodRepairOutcome {
  namespace: string;
  name: string;
  uid?: string;
  result: RepairResult;
  /** Where the netns was found: store | proc-scan. */
  via?: 'store' | 'proc-scan';
  netns?: string;
  differences?: string[];
  error?: string;
}

export interface RepairDeps {
  backend: CaptureBackend;
  planner: (pod: Pod) => RedirectPlan;
  store?: SandboxStore;
  /** Pods of this node (informer cache). */
  pods: () => Pod[];
  procRoot: string;
  mode: RepairMode;
  settings?: CaptureSettings;
  kubeConfig?: KubeConfig;
  logger: Logger;
  /** Pods younger than this without a netns are not reported (their sandbox is being created). Default 60 s. */
  missingGraceMs?: number;
  onEvent?: (e: CaptureEvent) => void;
  onOutcome?: (o: PodRepairOutcome, durationMs: number) => void;
  /**
   * Reprogram through the capture controller (keeps the SandboxStore record
   * in step) for sandboxes it knows; default: backend.apply directly.
   */
  ensure?: (rec: StoredSandbox & { pod: Pod }) => Promise<'ok' | 'repaired' | 'skipped'>;
}

interface Located { netns: string; via: 'store' | 'proc-scan'; record?: StoredSandbox }

export class RepairLoop {
  private timer?: NodeJS.Timeout;
  private running?: Promise<PodRepairOutcome[]>;
  private readonly api?: CoreV1Api;
  lastRun?: { at: number; outcomes: PodRepairOutcome[] };
  /** The newest verification of each pod (repair passes, `weir check`, `weir repair`), for `weir pods`. */
  private readonly lastChecks = new Map<string, { at: number; outcome: PodRepairOutcome }>();

  lastCheckOf(namespace: string, name: string): { at: number; outcome: PodRepairOutcome } | undefined {
    return this.lastChecks.get(`${namespace}/${name}`);
  }

  private noteCheck(o: PodRepairOutcome, at: number): void {
    if (o.result === 'skipped') return;
    this.lastChecks.set(`${o.namespace}/${o.name}`, { at, outcome: o });
    // Bounded by the node's pods: forget pods the informer no longer has.
    if (this.lastChecks.size > 2 * Math.max(64, this.deps.pods().length)) {
      const live = new Set(this.deps.pods().map((p) => `${p.metadata.namespace ?? 'default'}/${p.metadata.name}`));
      for (const k of this.lastChecks.keys()) if (!live.has(k)) this.lastChecks.delete(k);
    }
  }

  constructor(private readonly deps: RepairDeps) {
    this.api = deps.kubeConfig?.makeApiClient(CoreV1Api);
  }

  /** Runs now, then every intervalMs (runs never overlap). */
  start(intervalMs: number): Promise<PodRepairOutcome[]> {
    const first = this.runOnce();
    const tick = (): void => {
      this.timer = setTimeout(() => { void this.runOnce().catch(() => undefined).finally(() => { if (this.timer) tick(); }); }, intervalMs);
      this.timer.unref?.();
    };
    tick();
    return first;
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.running?.catch(() => undefined);
  }

  /** One pass over every pod of the node. Concurrent callers share the pass in flight. */
  runOnce(): Promise<PodRepairOutcome[]> {
    if (!this.running) {
      this.running = this.pass().finally(() => { this.running = undefined; });
    }
    return this.running;
  }

  private async pass(): Promise<PodRepairOutcome[]> {
    const scan = await scanPodNetns(this.deps.procRoot).catch((e: Error) => {
      this.deps.logger.warn({ err: e.message }, 'proc scan failed; using the sandbox store only');
      return new Map<string, PodNetns>();
    });
    const outcomes: PodRepairOutcome[] = [];
    for (const pod of this.deps.pods()) {
      const o = await this.one(pod, scan, 'repair-pass');
      if (o.result !== 'skipped') outcomes.push(o);
    }
    this.lastRun = { at: Date.now(), outcomes };
    const counts: Record<string, number> = {};
    for (const o of outcomes) counts[o.result] = (counts[o.result] ?? 0) + 1;
    this.deps.logger.info({ pods: outcomes.length, ...counts }, 'repair pass done');
    return outcomes;
  }

  /** Verify (and, per mode, fix) one pod now; for `weir repair POD`. */
  async repairPod(namespace: string, name: string): Promise<PodRepairOutcome> {
    const pod = this.findPod(namespace, name);
    if (!pod) return { namespace, name, result: 'failed', error: `pod ${namespace}/${name} is not on this node` };
    return this.one(pod, await scanPodNetns(this.deps.procRoot).catch(() => new Map()), 'repair');
  }

  /** Verify only; for `weir check POD`. */
  async checkPod(namespace: string, name: string): Promise<PodRepairOutcome & { capture: boolean; reason: string }> {
    const pod = this.findPod(namespace, name);
    if (!pod) return { namespace, name, result: 'failed', error: `pod ${namespace}/${name} is not on this node`, capture: false, reason: 'not-on-node' };
    const decision = decideCapture(pod, this.deps.settings ?? DEFAULT_CAPTURE_SETTINGS);
    const base = { namespace, name, uid: pod.metadata.uid, capture: decision.capture, reason: decision.reason };
    if (!decision.capture) return { ...base, result: 'skipped' };
    const where = await this.locate(pod, await scanPodNetns(this.deps.procRoot).catch(() => new Map()));
    if (!where) return { ...base, result: 'netns-not-found' };
    const at = Date.now();
    let out: PodRepairOutcome & { capture: boolean; reason: string };
    try {
      const v = await this.deps.backend.verify(sandboxAt(where.netns), this.deps.planner(pod));
      out = { ...base, result: v.ok ? 'ok' : 'failed', via: where.via, netns: where.netns, differences: v.differences };
    } catch (e) {
      out = { ...base, result: 'failed', via: where.via, netns: where.netns, error: (e as Error).message };
    }
    this.noteCheck(out, at);
    return out;
  }

  /** The pod's netns (newest sandbox record, else the /proc scan), captured or not; for the admin socket's proxy relay. */
  async netnsOf(namespace: string, name: string): Promise<{ netns: string; via: 'store' | 'proc-scan' } | undefined> {
    const pod = this.findPod(namespace, name);
    if (!pod) return undefined;
    const where = await this.locate(pod, await scanPodNetns(this.deps.procRoot).catch(() => new Map()));
    return where ? { netns: where.netns, via: where.via } : undefined;
  }

  private findPod(namespace: string, name: string): Pod | undefined {
    return this.deps.pods().find((p) => p.metadata.name === name && (p.metadata.namespace ?? 'default') === namespace);
  }

  private async locate(pod: Pod, scan: Map<string, PodNetns>): Promise<Located | undefined> {
    const uid = pod.metadata.uid;
    const ns = pod.metadata.namespace ?? 'default';
    const records = (this.deps.store?.list() ?? []).filter((r) => (uid && r.podUid ? r.podUid === uid : r.podName === pod.metadata.name && (r.podNamespace ?? 'default') === ns));
    // Newest record first: a re-created sandbox supersedes the old one.
    records.sort((a, b) => b.updatedAt - a.updatedAt);
    for (const r of records) {
      if (r.netns && (await netnsInode(r.netns)) !== undefined) return { netns: r.netns, via: 'store', record: r };
    }
    const found = uid ? scan.get(uid) : undefined;
    return found ? { netns: found.netnsPath, via: 'proc-scan' } : undefined;
  }

  private async one(pod: Pod, scan: Map<string, PodNetns>, why: string): Promise<PodRepairOutcome> {
    const started = Date.now();
    const namespace = pod.metadata.namespace ?? 'default';
    const name = pod.metadata.name ?? '';
    const who = { namespace, name, uid: pod.metadata.uid };
    const finish = (o: PodRepairOutcome): PodRepairOutcome => {
      if (o.result !== 'skipped') this.deps.onOutcome?.(o, Date.now() - started);
      this.noteCheck(o, Date.now());
      return o;
    };
    const phase = pod.status?.phase;
    if (pod.metadata.deletionTimestamp || phase === 'Succeeded' || phase === 'Failed') return finish({ ...who, result: 'skipped' });
    if (!decideCapture(pod, this.deps.settings ?? DEFAULT_CAPTURE_SETTINGS).capture) return finish({ ...who, result: 'skipped' });
    const where = await this.locate(pod, scan);
    if (!where) {
      const created = Date.parse(String((pod.metadata as { creationTimestamp?: string }).creationTimestamp ?? ''));
      const young = Number.isFinite(created) && Date.now() - created < (this.deps.missingGraceMs ?? 60_000);
      if (young || phase === 'Pending') return finish({ ...who, result: 'skipped' });
      this.deps.logger.warn({ pod: `${namespace}/${name}`, uid: pod.metadata.uid }, 'pod should be captured but its netns was not found');
      return finish({ ...who, result: 'netns-not-found' });
    }
    const base = { ...who, via: where.via, netns: where.netns };
    try {
      const plan = this.deps.planner(pod);
      const verdict = await this.deps.backend.verify(sandboxAt(where.netns), plan);
      if (verdict.ok) return finish({ ...base, result: 'ok' });
      this.deps.logger.warn({ pod: `${namespace}/${name}`, netns: where.netns, via: where.via, differences: verdict.differences, mode: this.deps.mode, why }, 'capture rules missing or drifted');
      this.deps.onEvent?.({ kind: 'drift', podNamespace: namespace, podName: name, podUid: pod.metadata.uid, backend: this.deps.backend.name, error: verdict.differences.slice(0, 5).join('; ') });
      switch (this.deps.mode) {
        case 'repair': {
          if (where.record && this.deps.ensure) {
            await this.deps.ensure({ ...where.record, pod });
          } else {
            await this.deps.backend.apply(sandboxAt(where.netns), plan);
            this.deps.onEvent?.({ kind: 'repaired', podNamespace: namespace, podName: name, podUid: pod.metadata.uid, backend: this.deps.backend.name, durationMs: Date.now() - started });
          }
          return finish({ ...base, result: 'repaired', differences: verdict.differences });
        }
        case 'delete':
          if (!this.api) throw new Error('repair-mode delete needs the Kubernetes API');
          await this.api.deleteNamespacedPod({ name, namespace });
          return finish({ ...base, result: 'deleted', differences: verdict.differences });
        case 'label':
          if (!this.api) throw new Error('repair-mode label needs the Kubernetes API');
          await this.api.patchNamespacedPod({ name, namespace, body: { metadata: { labels: { [BROKEN_LABEL]: 'true' } } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
          return finish({ ...base, result: 'labeled', differences: verdict.differences });
      }
    } catch (e) {
      const msg = (e as Error).message;
      this.deps.logger.error({ pod: `${namespace}/${name}`, err: msg }, 'repair failed');
      this.deps.onEvent?.({ kind: 'failed', podNamespace: namespace, podName: name, podUid: pod.metadata.uid, backend: this.deps.backend.name, error: `repair: ${msg}` });
      return finish({ ...base, result: 'failed', error: msg });
    }
  }
}
