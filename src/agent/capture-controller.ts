// Decides and programs traffic capture for pod sandboxes: the work behind the
// CNI plugin's ADD/CHECK/DEL/GC, and the repair loop's ensure(). Fail closed:
// when a pod may need capture and we cannot find out (API down, pod not yet
// visible), the answer is "try again later" (CNI code 11), never "go ahead
// uncaptured". Nothing is half-programmed: a bad annotation is rejected
// before any rule is written, and a failed apply is rolled back.
import { planHash } from '../redirect/plan.js';
import type { CaptureEvent, PodResolver, SandboxRecord } from './contracts.js';
import type { CaptureBackend } from '../netns/backend-types.js';
import type { RedirectPlan } from '../redirect/types.js';
import type { Pod } from '../kube/pod-types.js';
import { decideCapture, DEFAULT_CAPTURE_SETTINGS, type CaptureSettings } from '../kube/capture-decision.js';
import type { CniAddResponse, CniCheckResponse, CniDelRequest, CniPodRequest } from '../cni/agent-protocol.js';
// Failures are CniErrors: the code the plugin must return travels with them,
// whether the plugin logic runs in the agent (/v1/cni/exec) or reads it from HTTP.
import { CniCode, CniError } from '../cni/spec.js';
import { FieldError } from '../common/errors.js';
import type { SandboxStore, StoredSandbox } from './sandbox-store.js';
import { sandboxAt } from '../netns/backend-types.js';
import { existsSync } from 'node:fs';
import { crashPoint } from '../common/test-crash-points.js';
import { createNetnsGuard } from '../netns/netns-guard.js';

export interface ControllerLogger {
  debug(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface CaptureControllerOptions {
  resolver: PodResolver;
  backend: CaptureBackend;
  /** The redirect planner, normally `(pod) => buildPlan(pod, settings)`; throws FieldError on a bad annotation. */
  planner: (pod: Pod) => RedirectPlan;
  store: SandboxStore;
  settings?: CaptureSettings;
  /** Bound on one pod lookup (informer miss → API GET). Default 4000 ms, below the plugin's default 5000 ms deadline. */
  resolveTimeoutMs?: number;
  onEvent?: (e: CaptureEvent) => void;
  logger?: ControllerLogger;
  /** Refuses a netns capture must never be programmed into (the host's, the agent's, not a netns): throws CniError. Default createNetnsGuard(). */
  netnsGuard?: (netns: string) => Promise<void>;
}

const NOOP_LOGGER: ControllerLogger = { debug() {}, info() {}, warn() {}, error() {} };

export class CaptureController {
  private readonly opts: Required<Omit<CaptureControllerOptions, 'onEvent'>> & Pick<CaptureControllerOptions, 'onEvent'>;
  /** Per-sandbox queue: ADD, CHECK and DEL for one container never interleave. */
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(opts: CaptureControllerOptions) {
    this.opts = {
      settings: DEFAULT_CAPTURE_SETTINGS,
      resolveTimeoutMs: 4000,
      logger: NOOP_LOGGER,
      netnsGuard: createNetnsGuard(),
      ...opts,
    };
  }

  get backendName(): string {
    return this.opts.backend.name;
  }

  private serialize<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(key) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.locks.set(key, tail);
    void tail.then(() => { if (this.locks.get(key) === tail) this.locks.delete(key); });
    return next;
  }

  private emit(e: CaptureEvent): void {
    try { this.opts.onEvent?.(e); } catch (err) { this.opts.logger.warn({ err }, 'capture event handler threw'); }
  }

  private async resolve(namespace: string, name: string, uid?: string): Promise<Pod> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${this.opts.resolveTimeoutMs} ms`)), this.opts.resolveTimeoutMs);
    });
    let pod: Pod | undefined;
    try {
      pod = await Promise.race([this.opts.resolver.getPod(namespace, name, uid), timeout]);
    } catch (e) {
      throw new CniError(CniCode.tryAgainLater, `cannot look up pod ${namespace}/${name}: ${(e as Error).message}`);
    } finally {
      clearTimeout(timer);
    }
    // Not (yet) visible: the kubelet only creates sandboxes for pods the API
    // server has, so this is a lagging cache. Retry rather than guess.
    if (!pod) throw new CniError(CniCode.tryAgainLater, `pod ${namespace}/${name}${uid ? ` (uid ${uid})` : ''} not found yet`);
    return pod;
  }

  private record(req: CniPodRequest, fields: Partial<StoredSandbox> & { captured: boolean; reason: string }): StoredSandbox {
    return {
      containerId: req.containerId,
      ifName: req.ifName,
      netns: req.netns,
      podNamespace: req.podNamespace,
      podName: req.podName,
      podUid: req.podUid,
      ips: req.ips,
      updatedAt: Date.now(),
      ...fields,
    };
  }

  add(req: CniPodRequest): Promise<CniAddResponse> {
    return this.serialize(req.containerId, () => this.doAdd(req));
  }

  private async doAdd(req: CniPodRequest): Promise<CniAddResponse> {
    const started = Date.now();
    const who = { containerId: req.containerId, podNamespace: req.podNamespace, podName: req.podName, podUid: req.podUid };
    const skip = async (reason: string): Promise<CniAddResponse> => {
      await this.opts.store.put(this.record(req, { captured: false, reason }));
      this.emit({ kind: 'skipped', ...who, error: reason });
      return { captured: false, reason };
    };
    // Sandboxes not created for a Kubernetes pod (no K8S_POD_NAME) are not weir's business.
    if (!req.podName) return skip('not-a-pod');
    // Podman passes only K8S_POD_NAME; Kubernetes' default namespace is the only sound guess.
    const namespace = req.podNamespace ?? 'default';
    if (this.opts.settings.excludeNamespaces.includes(namespace)) return skip('excluded-namespace');

    let pod: Pod;
    let plan: RedirectPlan | undefined;
    try {
      pod = await this.resolve(namespace, req.podName, req.podUid);
      const decision = decideCapture(pod, this.opts.settings);
      if (!decision.capture) return await skip(decision.reason);
      try {
        plan = this.opts.planner(pod);
      } catch (e) {
        if (e instanceof FieldError) throw new CniError(CniCode.invalidConfig, `pod ${namespace}/${req.podName}: ${e.message}`, e.field);
        throw e;
      }
      await this.opts.netnsGuard(req.netns);
      crashPoint('add:before-intent');
      // The intent goes to disk before the first byte reaches the kernel: if
      // this process dies anywhere below, the next agent finds the record
      // pending and finishes or removes exactly this (recoverPending).
      await this.opts.store.put(this.record(req, { podNamespace: namespace, captured: false, reason: 'programming', backend: this.opts.backend.name, planHash: planHash(plan), plan, pending: 'add' }));
      crashPoint('add:after-intent');
      try {
        await this.opts.backend.apply({ netnsPath: req.netns, podIPs: req.ips }, plan);
      } catch (e) {
        await this.undoFailedAdd(req);
        throw new CniError(CniCode.tryAgainLater, `programming capture in ${req.netns} failed: ${(e as Error).message}`);
      }
      crashPoint('add:after-apply');
    } catch (e) {
      const err = e instanceof CniError ? e : new CniError(CniCode.tryAgainLater, (e as Error).message);
      this.emit({ kind: 'failed', ...who, backend: this.opts.backend.name, error: err.message, durationMs: Date.now() - started });
      this.opts.logger.warn({ ...who, cniCode: err.code, err: err.message }, 'capture failed');
      throw err;
    }
    const hash = planHash(plan);
    await this.opts.store.put(this.record(req, { podNamespace: namespace, captured: true, reason: 'captured', backend: this.opts.backend.name, planHash: hash, plan }));
    crashPoint('add:after-record');
    const durationMs = Date.now() - started;
    this.emit({ kind: 'programmed', ...who, podNamespace: namespace, backend: this.opts.backend.name, durationMs });
    this.opts.logger.info({ ...who, backend: this.opts.backend.name, planHash: hash, durationMs }, 'capture programmed');
    return { captured: true, reason: 'captured', backend: this.opts.backend.name, planHash: hash };
  }

  /** A failed apply: take back whatever part landed, then forget the intent (kept as 'remove' if even that failed). */
  private async undoFailedAdd(req: CniPodRequest): Promise<void> {
    try {
      await this.opts.backend.remove(sandboxAt(req.netns));
      await this.opts.store.delete(req.containerId);
    } catch (e) {
      this.opts.logger.error({ containerId: req.containerId, netns: req.netns, err: (e as Error).message }, 'rollback of a failed ADD failed; the record stays pending');
      await this.opts.store.put(this.record(req, { captured: false, reason: 'rollback-pending', pending: 'remove' }));
    }
  }

  /**
   * At start, before the CNI socket serves: every record a killed agent left
   * pending. An interrupted ADD is finished (the plan it recorded is applied
   * again — apply is idempotent — and verified), so the pod is either fully
   * captured or, when that cannot be done, has no rules and no record; a
   * netns that is gone takes its rules with it. Returns what was done.
   */
  async recoverPending(): Promise<{ containerId: string; outcome: 'finished' | 'removed' | 'gone' | 'failed'; error?: string }[]> {
    const out: { containerId: string; outcome: 'finished' | 'removed' | 'gone' | 'failed'; error?: string }[] = [];
    for (const rec of this.opts.store.list().filter((r) => r.pending)) {
      await this.serialize(rec.containerId, async () => {
        const log = { containerId: rec.containerId, netns: rec.netns, pending: rec.pending, pod: `${rec.podNamespace}/${rec.podName}` };
        try {
          if (!rec.netns || !existsSync(rec.netns)) {
            await this.opts.store.delete(rec.containerId);
            out.push({ containerId: rec.containerId, outcome: 'gone' });
            return;
          }
          if (rec.pending === 'add' && rec.plan) {
            try {
              await this.opts.backend.apply(sandboxAt(rec.netns), rec.plan);
              const v = await this.opts.backend.verify(sandboxAt(rec.netns), rec.plan);
              if (!v.ok) throw new Error(`rules differ after apply: ${v.differences.slice(0, 3).join('; ')}`);
              const { pending: _p, ...done } = rec;
              await this.opts.store.put({ ...done, captured: true, reason: 'captured', updatedAt: Date.now() });
              out.push({ containerId: rec.containerId, outcome: 'finished' });
              this.opts.logger.warn(log, 'finished an ADD a previous agent left half-done');
              return;
            } catch (e) {
              this.opts.logger.error({ ...log, err: (e as Error).message }, 'cannot finish a half-done ADD; removing it');
            }
          }
          await this.opts.backend.remove(sandboxAt(rec.netns));
          await this.opts.store.delete(rec.containerId);
          out.push({ containerId: rec.containerId, outcome: 'removed' });
          this.opts.logger.warn(log, 'removed an ADD a previous agent left half-done');
        } catch (e) {
          out.push({ containerId: rec.containerId, outcome: 'failed', error: (e as Error).message });
          this.opts.logger.error({ ...log, err: (e as Error).message }, 'recovering a half-done ADD failed; repair and DEL will retry');
        }
      });
    }
    return out;
  }

  check(req: CniPodRequest): Promise<CniCheckResponse> {
    return this.serialize(req.containerId, async () => {
      const rec = this.opts.store.get(req.containerId);
      if (!rec) throw new CniError(CniCode.containerUnknown, `container ${req.containerId} was never added through weir (no record)`);
      if (!rec.captured) return { ok: true, captured: false };
      if (!rec.plan) throw new CniError(CniCode.captureDrift, `container ${req.containerId}: record has no plan to verify against`);
      const result = await this.opts.backend.verify(sandboxAt(req.netns || rec.netns), rec.plan);
      if (!result.ok) {
        this.emit({ kind: 'drift', containerId: rec.containerId, podNamespace: rec.podNamespace, podName: rec.podName, podUid: rec.podUid, backend: rec.backend, error: result.differences.join('; ') });
        throw new CniError(CniCode.captureDrift, `traffic capture rules in ${req.netns || rec.netns} differ from what weir programmed`, result.differences.join('\n'));
      }
      return { ok: true, captured: true };
    });
  }

  /** Idempotent; succeeds for unknown containers and missing netns. */
  del(req: CniDelRequest): Promise<void> {
    return this.serialize(req.containerId, async () => {
      const rec = this.opts.store.get(req.containerId);
      const netns = req.netns || rec?.netns || '';
      // Without a record we do not know whether an earlier (timed-out) ADD
      // programmed something, so remove unconditionally; remove() is idempotent.
      if (netns && (rec === undefined || rec.captured)) {
        try {
          await this.opts.backend.remove(sandboxAt(netns));
        } catch (e) {
          // A netns that is gone takes its rules with it.
          this.opts.logger.debug({ containerId: req.containerId, netns, err: (e as Error).message }, 'remove on DEL failed (netns gone?)');
        }
      }
      if (await this.opts.store.delete(req.containerId)) {
        this.emit({ kind: 'removed', containerId: req.containerId, podNamespace: rec?.podNamespace, podName: rec?.podName, podUid: rec?.podUid, backend: rec?.backend });
      }
    });
  }

  /** CNI GC: forget (and unprogram) every sandbox not in `valid`. */
  async gc(valid: { containerId: string; ifName: string }[]): Promise<string[]> {
    const keep = new Set(valid.map((v) => `${v.containerId}/${v.ifName}`));
    const removed: string[] = [];
    for (const rec of this.opts.store.list()) {
      if (keep.has(`${rec.containerId}/${rec.ifName}`)) continue;
      await this.del({ containerId: rec.containerId, ifName: rec.ifName, netns: rec.netns });
      removed.push(rec.containerId);
    }
    return removed;
  }

  /**
   * Repair: make a running sandbox's rules match its pod (pods that started
   * before weir, or whose rules drifted). Returns what was done.
   */
  ensure(target: SandboxRecord & { pod: Pod }): Promise<'ok' | 'repaired' | 'skipped'> {
    return this.serialize(target.containerId, async () => {
      const decision = decideCapture(target.pod, this.opts.settings);
      if (!decision.capture) return 'skipped';
      const plan = this.opts.planner(target.pod);
      await this.opts.netnsGuard(target.netns);
      const verdict = await this.opts.backend.verify(sandboxAt(target.netns), plan);
      if (verdict.ok) return 'ok';
      const started = Date.now();
      await this.opts.backend.apply(sandboxAt(target.netns), plan);
      const { pod: _pod, ...record } = target;
      await this.opts.store.put({ ...record, captured: true, reason: 'captured', backend: this.opts.backend.name, planHash: planHash(plan), plan, updatedAt: Date.now() });
      this.emit({ kind: 'repaired', containerId: target.containerId, podNamespace: target.podNamespace, podName: target.podName, podUid: target.podUid, backend: this.opts.backend.name, durationMs: Date.now() - started });
      return 'repaired';
    });
  }
}
