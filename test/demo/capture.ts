// The demo's netns fallback programs capture itself, with weir's capture
// core — the same calls the agent makes on CNI ADD: buildPlan(pod) →
// getBackend().apply(netns, plan).
import { buildPlan } from '../../src/redirect/plan.js';
import { getBackend } from '../../src/netns/backends.js';
import type { Pod } from '../../src/kube/pod-types.js';
import { sandboxAt } from '../../src/netns/backend-types.js';

export interface Capture {
  /** One line for a person: which weir code programs the rules. */
  how: string;
  apply(netnsPath: string, pod: Pod): Promise<void>;
}

export function captureBackend(): Capture {
  const backend = getBackend('nftables');
  return {
    how: `buildPlan(pod) -> getBackend('${backend.name}').apply(netns) — what the agent does on CNI ADD`,
    apply: (netns, pod) => backend.apply(sandboxAt(netns), buildPlan(pod)),
  };
}
