// The mutation itself, pure: a pod template in, the injected template out
// (or the same one and the reason it was left alone). The webhook turns the
// difference into a JSONPatch; `weir inject` prints the result.
import { ANN, bool, holdApplication as holdFromProxyConfig, proxyResources } from './annotations.js';
import { PROXY_CONTAINER, type InjectorConfig } from './config.js';
import { DEFAULT_PROXY_CONTAINER_NAMES } from '../kube/proxy-container.js';
import { decideInjection, type DecisionReason } from './decision.js';
import type { PodTemplate } from './k8s.js';
import { rewriteProbes } from './probes.js';
import { proxyContainer } from './sidecar.js';

export interface InjectContext {
  config: InjectorConfig;
  namespace: string;
  namespaceSelected: boolean;
  /** The owning workload's name (canonical-name fallback); derived from the pod name otherwise. */
  workloadName?: string;
}

export interface InjectResult {
  injected: boolean;
  reason: DecisionReason | 'already-injected';
  template: PodTemplate;
}


export function alreadyInjected(t: PodTemplate): boolean {
  if (t.metadata?.annotations?.[ANN.status]) return true;
  const all = [...(t.spec.containers ?? []), ...(t.spec.initContainers ?? [])];
  // Ours or Istio's, under any restartPolicy: the capture decision's names.
  return all.some((c) => DEFAULT_PROXY_CONTAINER_NAMES.includes(c.name));
}

/** "web-7c9d8f6b5-" / "web-7c9d8f6b5-x2k4q" → "web": what Istio calls the workload. */
export function workloadFromPod(name: string | undefined, generateName: string | undefined): string {
  const base = name || (generateName ?? '').replace(/-$/, '');
  return base.replace(/-[a-z0-9]{6,10}-[a-z0-9]{5}$/, '').replace(/-[a-z0-9]{6,10}$/, '') || 'unknown';
}

export function injectPodTemplate(input: PodTemplate, ctx: InjectContext): InjectResult {
  if (alreadyInjected(input)) return { injected: false, reason: 'already-injected', template: input };
  const meta = input.metadata ?? {};
  const decision = decideInjection({ namespace: ctx.namespace, namespaceSelected: ctx.namespaceSelected, policy: ctx.config.policy, excludeNamespaces: ctx.config.excludeNamespaces, metadata: meta, spec: input.spec });
  if (!decision.inject) return { injected: false, reason: decision.reason, template: input };

  // metadata first, so printed manifests read the usual way round.
  const t: PodTemplate = { metadata: {}, ...structuredClone(input) };
  const m = t.metadata!;
  const spec = t.spec;
  // Every annotation is read (and can fail) before anything is changed.
  const native = bool(m, ANN.nativeSidecar) ?? ctx.config.nativeSidecars;
  // weir holds the app by default (Istio's default is false; its users turn it on to avoid start-up races).
  const holdApplication = holdFromProxyConfig(m) ?? true;
  const rewrite = bool(m, ANN.rewriteProbes) ?? true;
  const resources = proxyResources(m, ctx.config.defaultResources);
  const probers = rewrite ? rewriteProbes(spec.containers, 'spec.containers') : {};
  // Without native sidecars nothing stops the proxy when a Job's app is
  // done; with restartPolicy Never it may exit by itself (it sees the app's
  // processes through the shared PID namespace). OnFailure is left out: an
  // app restart would find its proxy gone.
  const exitWhenAppExits = !native && spec.restartPolicy === 'Never' && spec.shareProcessNamespace !== false;
  const appContainers = spec.containers.map((c) => c.name);

  const proxy = proxyContainer(ctx.config, {
    native, holdApplication, exitWhenAppExits, resources, appContainers,
    probers: Object.keys(probers).length ? JSON.stringify(probers) : undefined,
  });
  if (native) {
    // First: later init containers get a ready proxy (and DNS) too.
    spec.initContainers = [proxy, ...(spec.initContainers ?? [])];
  } else {
    spec.containers = holdApplication ? [proxy, ...spec.containers] : [...spec.containers, proxy];
    if (exitWhenAppExits) spec.shareProcessNamespace = true;
  }

  const labels = (m.labels ??= {});
  const workload = ctx.workloadName ?? workloadFromPod(m.name, m.generateName);
  labels['security.istio.io/tlsMode'] ??= 'istio';
  labels['service.istio.io/canonical-name'] ??= labels['app.kubernetes.io/name'] ?? labels.app ?? workload;
  labels['service.istio.io/canonical-revision'] ??= labels['app.kubernetes.io/version'] ?? labels.version ?? 'latest';
  const annotations = (m.annotations ??= {});
  // Istio's shape: istio-cni and weir's agent read it to know the pod is meshed.
  annotations[ANN.status] = JSON.stringify({
    initContainers: native ? [PROXY_CONTAINER] : [],
    containers: native ? [] : [PROXY_CONTAINER],
    volumes: [],
    imagePullSecrets: null,
    revision: ctx.config.revision,
  });
  // kubectl logs/exec without -c keep meaning the app.
  if (appContainers[0]) annotations['kubectl.kubernetes.io/default-container'] ??= appContainers[0];
  return { injected: true, reason: decision.reason, template: t };
}
