// What `weir pods`, `weir pod-rules` and `weir describe` show for a pod,
// derived from what is programmed and verified — never from intent alone.
// A pod weir should capture counts as captured only when a sandbox record
// says its rules were applied with the plan its annotations give today and
// the last verification of the kernel state did not find drift.
import type { Pod } from '../kube/pod-types.js';
import type { RedirectPlan } from '../redirect/types.js';
import { decideCapture, type CaptureSettings } from '../kube/capture-decision.js';
import { FieldError } from '../common/errors.js';
import { planHash } from '../redirect/plan.js';
import type { StoredSandbox } from './sandbox-store.js';
import type { PodRepairOutcome } from './repair.js';
import type { PodError } from './pod-errors.js';
import { CAPTURE_ANNOTATION } from './status-writer.js';

/**
 * captured     rules applied with today's plan, last check clean (or not yet checked: `verified` says which)
 * not-captured weir decided not to capture (reason says why)
 * invalid      should be captured but its annotations are rejected (error names the annotation); nothing programmed
 * failed       should be captured; programming or verification failed (error says what)
 * pending      should be captured; no sandbox has been programmed yet (being created, or ADD not seen)
 * stale        programmed with an older plan than its annotations give now (repair reprograms it)
 */
export type CaptureState = 'captured' | 'not-captured' | 'invalid' | 'failed' | 'pending' | 'stale';

export interface PodView {
  namespace: string;
  name: string;
  uid?: string;
  phase?: string;
  podIP?: string;
  /** true only in state captured. */
  captured: boolean;
  state: CaptureState;
  /** decideCapture's reason, or invalid-annotation / no-sandbox / drift / ... */
  reason: string;
  /** the field (annotation) at fault, for invalid pods */
  field?: string;
  error?: string;
  backend?: string;
  planHash?: string;
  /** last verification of the kernel state: ok | repaired | failed | netns-not-found | never */
  verified: string;
  verifiedAt?: string;
  /** the weir.io/capture annotation the agent wrote */
  status?: string;
  sandboxes: { containerId: string; netns: string; captured: boolean; reason: string; backend?: string; planHash?: string; updatedAt: string }[];
  lastErrors: PodError[];
}

export interface PodViewDeps {
  settings: CaptureSettings;
  planner: (pod: Pod) => RedirectPlan;
  sandboxes: StoredSandbox[];
  lastCheck?: { at: number; outcome?: PodRepairOutcome };
  errors: PodError[];
}

function sandboxesOf(pod: Pod, all: StoredSandbox[]): StoredSandbox[] {
  const ns = pod.metadata.namespace ?? 'default';
  const uid = pod.metadata.uid;
  return all
    .filter((s) => (uid && s.podUid ? s.podUid === uid : s.podName === pod.metadata.name && (s.podNamespace ?? 'default') === ns))
    .sort((a, b) => b.updatedAt - a.updatedAt);
}

export function podView(pod: Pod, d: PodViewDeps): PodView {
  const sbs = sandboxesOf(pod, d.sandboxes);
  const outcome = d.lastCheck?.outcome;
  const base: Omit<PodView, 'captured' | 'state' | 'reason'> = {
    namespace: pod.metadata.namespace ?? 'default', name: pod.metadata.name ?? '', uid: pod.metadata.uid, phase: pod.status?.phase,
    podIP: pod.status?.podIP, status: pod.metadata.annotations?.[CAPTURE_ANNOTATION],
    verified: outcome?.result ?? 'never', verifiedAt: outcome && d.lastCheck ? new Date(d.lastCheck.at).toISOString() : undefined,
    sandboxes: sbs.map((s) => ({ containerId: s.containerId, netns: s.netns, captured: s.captured, reason: s.reason, backend: s.backend, planHash: s.planHash, updatedAt: new Date(s.updatedAt).toISOString() })),
    lastErrors: d.errors,
  };
  const decision = decideCapture(pod, d.settings);
  if (!decision.capture) return { ...base, captured: false, state: 'not-captured', reason: decision.reason };
  let plan: RedirectPlan;
  try {
    plan = d.planner(pod);
  } catch (e) {
    if (!(e instanceof FieldError)) throw e;
    return { ...base, captured: false, state: 'invalid', reason: 'invalid-annotation', field: e.field, error: e.message };
  }
  const lastError = d.errors.at(-1)?.error;
  const rec = sbs[0];
  if (!rec || !rec.captured) {
    // A failed ADD leaves no record (or an old one): the error is the reason.
    if (lastError) return { ...base, captured: false, state: 'failed', reason: 'capture-failed', error: lastError };
    // Pods that started before weir are programmed by the repair loop without a record.
    if (outcome && (outcome.result === 'ok' || outcome.result === 'repaired')) return { ...base, captured: true, state: 'captured', reason: 'captured', planHash: planHash(plan) };
    return { ...base, captured: false, state: 'pending', reason: outcome?.result === 'netns-not-found' ? 'netns-not-found' : 'no-sandbox-programmed' };
  }
  const common = { ...base, backend: rec.backend, planHash: rec.planHash };
  // A verification older than the record checked an earlier sandbox or plan.
  const current = outcome && d.lastCheck && d.lastCheck.at >= rec.updatedAt ? outcome : undefined;
  if (!current) { common.verified = 'never'; common.verifiedAt = undefined; }
  if (current && (current.result === 'failed' || current.result === 'netns-not-found')) {
    return { ...common, captured: false, state: 'failed', reason: current.result === 'failed' ? 'drift' : 'netns-not-found', error: current.error ?? current.differences?.slice(0, 3).join('; ') };
  }
  if (rec.planHash !== planHash(plan)) return { ...common, captured: false, state: 'stale', reason: 'plan-changed', error: `programmed plan ${rec.planHash}, annotations now give ${planHash(plan)}` };
  return { ...common, captured: true, state: 'captured', reason: 'captured' };
}
