// PodResolver backed by Kubernetes: the pods informer's cache first (free),
// then a direct GET with bounded retries, because a sandbox's ADD can arrive
// before the pod's watch event reaches this node. A uid mismatch (a pod
// deleted and re-created under the same name) is treated as "not yet".
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import type { PodResolver } from './contracts.js';
import type { Pod } from '../kube/pod-types.js';
import type { ResilientInformer } from '../kube/informer.js';
import type { Logger } from '../common/log.js';

export interface KubePodResolverOptions {
  kubeConfig: KubeConfig;
  pods: ResilientInformer<Pod>;
  logger: Logger;
  /** Direct GET attempts when the cache misses. Default 3. */
  attempts?: number;
  /** Delay between attempts (doubles each time). Default 200 ms. */
  retryDelayMs?: number;
}

export class KubePodResolver implements PodResolver {
  private readonly api: CoreV1Api;
  private readonly attempts: number;
  private readonly retryDelayMs: number;
  /** Direct GETs done (the informer missed); exposed for metrics and tests. */
  directGets = 0;

  constructor(private readonly opts: KubePodResolverOptions) {
    this.api = opts.kubeConfig.makeApiClient(CoreV1Api);
    this.attempts = opts.attempts ?? 3;
    this.retryDelayMs = opts.retryDelayMs ?? 200;
  }

  async getPod(namespace: string, name: string, uid?: string): Promise<Pod | undefined> {
    const cached = this.opts.pods.get(namespace, name);
    if (cached && (!uid || cached.metadata.uid === uid)) return cached;
    let lastError: Error | undefined;
    for (let i = 0; i < this.attempts; i++) {
      if (i > 0) await new Promise((r) => setTimeout(r, this.retryDelayMs * 2 ** (i - 1)));
      // The watch may have delivered it meanwhile.
      const again = this.opts.pods.get(namespace, name);
      if (again && (!uid || again.metadata.uid === uid)) return again;
      try {
        this.directGets++;
        const pod = (await this.api.readNamespacedPod({ name, namespace })) as unknown as Pod;
        if (!uid || pod.metadata.uid === uid) return pod;
        lastError = undefined; // a different incarnation: wait for the new one
      } catch (e) {
        const code = (e as { code?: number }).code;
        if (code === 404) { lastError = undefined; continue; }
        lastError = e instanceof Error ? e : new Error(String(e));
        this.opts.logger.warn({ pod: `${namespace}/${name}`, attempt: i + 1, err: lastError.message }, 'pod GET failed');
      }
    }
    // An API that keeps failing is an error (the caller fails closed); a pod
    // that is simply not there is undefined (the caller retries later).
    if (lastError) throw lastError;
    return undefined;
  }
}
