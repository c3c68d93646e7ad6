// The last capture errors per pod (failed ADDs, drift, failed repairs), kept
// in memory for `weir pods` and `weir describe`: a failed ADD leaves no
// sandbox record, so without this the node could not say why a pod that
// should be captured is not.
import type { CaptureEvent } from './contracts.js';

export interface PodError { at: string; kind: CaptureEvent['kind']; error: string; containerId?: string }

export class PodErrors {
  private readonly byPod = new Map<string, PodError[]>();

  constructor(private readonly perPod = 5, private readonly maxPods = 5000) {}

  /** Feed every CaptureEvent; a success clears the pod's errors (they are history, not state). */
  onEvent(e: CaptureEvent): void {
    if (!e.podName) return;
    const key = `${e.podNamespace ?? 'default'}/${e.podName}`;
    if (e.kind === 'programmed' || e.kind === 'repaired' || e.kind === 'removed') { this.byPod.delete(key); return; }
    if (e.kind !== 'failed' && e.kind !== 'drift') return;
    const list = this.byPod.get(key) ?? [];
    list.push({ at: new Date().toISOString(), kind: e.kind, error: e.error ?? 'unknown', containerId: e.containerId });
    if (list.length > this.perPod) list.shift();
    this.byPod.delete(key); // re-insert: the map's order is recency, the oldest pod goes first when full
    this.byPod.set(key, list);
    if (this.byPod.size > this.maxPods) this.byPod.delete(this.byPod.keys().next().value!);
  }

  for(namespace: string, name: string): PodError[] {
    return this.byPod.get(`${namespace}/${name}`) ?? [];
  }
}
