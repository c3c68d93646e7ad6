// The informers weir runs, built the same way everywhere: the agent (pods of
// its node, namespaces) and the proxy's control plane (services and
// endpointslices of all namespaces).
import { CoreV1Api, DiscoveryV1Api, KubeConfig } from '@kubernetes/client-node';
import type { Logger } from '../common/log.js';
import type { KubeEndpointSlice, KubeService } from '../controlplane/kube-shapes.js';
import { slimEndpointSlice, slimService } from '../controlplane/kube-slim.js';
import type { Namespace, Pod } from './pod-types.js';
import { ResilientInformer, type KubeListLike } from './informer.js';

export interface InformerCommon { kubeConfig: KubeConfig; logger: Logger; watchdogMs?: number; minBackoffMs?: number; maxBackoffMs?: number }

/** Loads a kubeconfig file, or the in-cluster service account when no path is given. */
export function loadKubeConfig(path?: string): KubeConfig {
  const kc = new KubeConfig();
  if (path) kc.loadFromFile(path);
  else kc.loadFromCluster();
  return kc;
}

/** Pods scheduled to one node: the only pods a node agent must know. */
export function podsOfNode(c: InformerCommon & { nodeName: string }): ResilientInformer<Pod> {
  const api = c.kubeConfig.makeApiClient(CoreV1Api);
  const fieldSelector = `spec.nodeName=${c.nodeName}`;
  return new ResilientInformer<Pod>({
    ...c, name: 'pods', path: '/api/v1/pods', fieldSelector,
    listFn: async () => (await api.listPodForAllNamespaces({ fieldSelector })) as unknown as KubeListLike<Pod>,
  });
}

export function namespaces(c: InformerCommon): ResilientInformer<Namespace> {
  const api = c.kubeConfig.makeApiClient(CoreV1Api);
  return new ResilientInformer<Namespace>({
    ...c, name: 'namespaces', path: '/api/v1/namespaces',
    listFn: async () => (await api.listNamespace()) as unknown as KubeListLike<Namespace>,
  });
}

/**
 * Every Service of the cluster, slimmed to what the registry reads
 * (controlplane/kube-slim.ts), listed in pages.
 */
export function services(c: InformerCommon & { pageSize?: number }): ResilientInformer<KubeService> {
  const api = c.kubeConfig.makeApiClient(CoreV1Api);
  return new ResilientInformer<KubeService>({
    ...c, name: 'services', path: '/api/v1/services', slim: slimService,
    listFn: () => pagedList((page) => api.listServiceForAllNamespaces(page) as Promise<KubePage<KubeService>>, slimService, c.pageSize),
  });
}

/** Every EndpointSlice of the cluster, slimmed (controlplane/kube-slim.ts), listed in pages. */
export function endpointSlices(c: InformerCommon & { pageSize?: number }): ResilientInformer<KubeEndpointSlice> {
  const api = c.kubeConfig.makeApiClient(DiscoveryV1Api);
  return new ResilientInformer<KubeEndpointSlice>({
    ...c, name: 'endpointslices', path: '/apis/discovery.k8s.io/v1/endpointslices', slim: slimEndpointSlice,
    listFn: () => pagedList((page) => api.listEndpointSliceForAllNamespaces(page) as unknown as Promise<KubePage<KubeEndpointSlice>>, slimEndpointSlice, c.pageSize),
  });
}

type KubePage<T> = KubeListLike<T> & { metadata?: { resourceVersion?: string; _continue?: string; continue?: string } };

/**
 * A LIST in pages of `pageSize` (default 500), each item slimmed as its page
 * arrives: the cold start never holds the whole response (its body text, the
 * parsed tree and client-node's typed copy of it) at once, only one page of
 * it and the slimmed items so far. The list's resourceVersion is the first
 * page's (a continued list is a consistent snapshot at that version).
 */
export async function pagedList<T>(fetchPage: (p: { limit: number; _continue?: string }) => Promise<KubePage<T>>, slim: (o: T) => T, pageSize = 500): Promise<KubeListLike<T>> {
  const items: T[] = [];
  let cont: string | undefined;
  let resourceVersion: string | undefined;
  do {
    const page = await fetchPage({ limit: pageSize, ...(cont ? { _continue: cont } : {}) });
    for (const o of page.items ?? []) items.push(slim(o));
    cont = page.metadata?._continue ?? page.metadata?.continue ?? undefined;
    resourceVersion ??= page.metadata?.resourceVersion;
  } while (cont);
  return { items, metadata: { resourceVersion } };
}

/** What the registry keeps of a pod: enough for endpoint labels, service account and tlsMode. */
export interface PodIdentityLike {
  metadata: { namespace?: string; name?: string; resourceVersion?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec: { serviceAccountName?: string };
}

const TLS_MODE_LABEL = 'security.istio.io/tlsMode';
/** weir's injector (and Istio's) marks injected pods with this annotation. */
const INJECTED_ANNOTATION = 'sidecar.istio.io/status';

/** A pod reduced to PodIdentityLike: of its annotations only the injection marker is kept. */
export function slimPod(p: Pod): PodIdentityLike {
  const m = p.metadata ?? {};
  const injected = m.annotations?.[INJECTED_ANNOTATION] !== undefined;
  return {
    metadata: { namespace: m.namespace, name: m.name, resourceVersion: m.resourceVersion, labels: m.labels, ...(injected ? { annotations: { [INJECTED_ANNOTATION]: '' } } : {}) },
    spec: { serviceAccountName: p.spec?.serviceAccountName },
  };
}

/** "istio" when the pod runs a mesh proxy: the label wins, else weir's/Istio's injection marker. */
export function tlsModeOf(p: PodIdentityLike): string | undefined {
  return p.metadata.labels?.[TLS_MODE_LABEL] ?? (p.metadata.annotations?.[INJECTED_ANNOTATION] !== undefined ? 'istio' : undefined);
}

/**
 * Every pod of the cluster, slimmed (labels, service account, injection
 * marker), listed in pages so the cold start never holds the whole list.
 */
export function podIdentities(c: InformerCommon & { pageSize?: number }): ResilientInformer<PodIdentityLike> {
  const api = c.kubeConfig.makeApiClient(CoreV1Api);
  return new ResilientInformer<PodIdentityLike>({
    ...c, name: 'pod-identities', path: '/api/v1/pods', slim: (o) => slimPod(o as unknown as Pod),
    listFn: () => pagedList((page) => api.listPodForAllNamespaces(page) as unknown as Promise<KubePage<PodIdentityLike>>, (p) => slimPod(p as unknown as Pod), c.pageSize),
  });
}
