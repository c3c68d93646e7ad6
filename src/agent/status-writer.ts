// Tells users what weir did to their pod, where they look: the annotation
// `weir.io/capture: enabled | disabled:<reason> | error:<msg>` on the pod
// (patched only when it changes, so a steady state costs no API calls), and a
// Kubernetes Event for failures, drift and repairs. Driven by the capture
// controller's and the repair loop's CaptureEvents. Writes are queued per pod
// and never block the CNI path; API failures are logged and retried once.
import { CoreV1Api, PatchStrategy, setHeaderOptions, type KubeConfig } from '@kubernetes/client-node';
import type { CaptureEvent } from './contracts.js';
import type { Pod } from '../kube/pod-types.js';
import type { Logger } from '../common/log.js';

export const CAPTURE_ANNOTATION = 'weir.io/capture';
const MAX_VALUE = 250;

export interface StatusWriterOptions {
  kubeConfig: KubeConfig;
  nodeName: string;
  logger: Logger;
  /** Current pod as the informer sees it (avoids patching an annotation that is already right). */
  lookup?: (namespace: string, name: string) => Pod | undefined;
}

/** The annotation value a CaptureEvent implies, or undefined when it does not change the status. */
export function statusValue(e: CaptureEvent): string | undefined {
  switch (e.kind) {
    case 'programmed': case 'repaired': return 'enabled';
    case 'skipped': return `disabled:${e.error ?? 'unknown'}`;
    case 'failed': return `error:${e.error ?? 'unknown'}`.slice(0, MAX_VALUE);
    case 'drift': return 'error:rules drifted from the plan (repair pending)';
    default: return undefined;
  }
}

export class StatusWriter {
  private readonly api: CoreV1Api;
  private readonly written = new Map<string, string>();
  private readonly queues = new Map<string, Promise<void>>();
  patches = 0;
  events = 0;

  constructor(private readonly opts: StatusWriterOptions) {
    this.api = opts.kubeConfig.makeApiClient(CoreV1Api);
  }

  /** Feed a CaptureEvent; returns the promise of the resulting writes (tests await it, the agent does not). */
  onEvent(e: CaptureEvent): Promise<void> {
    if (!e.podName) return Promise.resolve();
    const ns = e.podNamespace ?? 'default';
    const key = `${ns}/${e.podName}`;
    if (e.kind === 'removed') { this.written.delete(key); return Promise.resolve(); }
    const prev = this.queues.get(key) ?? Promise.resolve();
    const next = prev.then(() => this.write(ns, e.podName!, e));
    const tail = next.catch(() => undefined);
    this.queues.set(key, tail);
    void tail.then(() => { if (this.queues.get(key) === tail) this.queues.delete(key); });
    return tail;
  }

  /** Wait for every queued write (shutdown, tests). */
  async flush(): Promise<void> {
    await Promise.all([...this.queues.values()]);
  }

  private async write(namespace: string, name: string, e: CaptureEvent): Promise<void> {
    const key = `${namespace}/${name}`;
    const value = statusValue(e);
    if (value !== undefined) {
      const current = this.opts.lookup?.(namespace, name)?.metadata.annotations?.[CAPTURE_ANNOTATION] ?? this.written.get(key);
      if (current !== value) {
        const done = await this.retryOnce(`patch ${key}`, () => this.api.patchNamespacedPod(
          { name, namespace, body: { metadata: { annotations: { [CAPTURE_ANNOTATION]: value } } } },
          setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
        ));
        if (!done) return; // the pod is gone: no event either
        this.written.set(key, value);
        this.patches++;
      }
    }
    const ev = eventFor(e);
    if (ev) {
      const done = await this.retryOnce(`event ${key}`, () => this.api.createNamespacedEvent({
        namespace,
        body: {
          metadata: { generateName: `${name}.` },
          involvedObject: { kind: 'Pod', apiVersion: 'v1', namespace, name, uid: e.podUid },
          type: ev.type, reason: ev.reason, message: ev.message.slice(0, 1024),
          source: { component: 'weir-agent', host: this.opts.nodeName },
          reportingComponent: 'weir.io/agent', reportingInstance: this.opts.nodeName,
          firstTimestamp: new Date(), lastTimestamp: new Date(), count: 1,
        },
      }));
      if (done) this.events++;
    }
  }

  /** true when written; false when the target is gone (404). */
  private async retryOnce(what: string, fn: () => Promise<unknown>): Promise<boolean> {
    try {
      await fn();
      return true;
    } catch (first) {
      // 404: the pod is gone; nothing to tell.
      if ((first as { code?: number }).code === 404) return false;
      await new Promise((r) => setTimeout(r, 500));
      try {
        await fn();
        return true;
      } catch (e) {
        this.opts.logger.warn({ what, err: (e as Error).message }, 'status write failed');
        throw e;
      }
    }
  }
}

function eventFor(e: CaptureEvent): { type: 'Warning' | 'Normal'; reason: string; message: string } | undefined {
  switch (e.kind) {
    case 'failed': return { type: 'Warning', reason: 'CaptureFailed', message: `weir could not program traffic capture: ${e.error ?? 'unknown error'}` };
    case 'drift': return { type: 'Warning', reason: 'CaptureDrift', message: `traffic capture rules differ from the plan: ${e.error ?? ''}` };
    case 'repaired': return { type: 'Normal', reason: 'CaptureRepaired', message: `weir reprogrammed traffic capture (${e.backend ?? 'backend'}) in ${e.durationMs ?? '?'} ms` };
    default: return undefined;
  }
}
