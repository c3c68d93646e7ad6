// The informers weir runs, built the same way everywhere: the agent (pods of
// its node, namespaces) and the proxy's control plane (services and
// endpointslices of all namespaces).
import { CoreV1Api, DiscoveryV1Api, KubeConfig, type V1EndpointSlice, type V1Service } from '@kubernetes/client-node';
import type { Logger } from '../common/log.js';
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

export function services(c: InformerCommon): ResilientInformer<V1Service> {
  const api = c.kubeConfig.makeApiClient(CoreV1Api);
  return new ResilientInformer<V1Service>({
    ...c, name: 'services', path: '/api/v1/services',
    listFn: async () => api.listServiceForAllNamespaces(),
  });
}

export function endpointSlices(c: InformerCommon): ResilientInformer<V1EndpointSlice> {
  const api = c.kubeConfig.makeApiClient(DiscoveryV1Api);
  return new ResilientInformer<V1EndpointSlice>({
    ...c, name: 'endpointslices', path: '/apis/discovery.k8s.io/v1/endpointslices',
    listFn: async () => api.listEndpointSliceForAllNamespaces(),
  });
}
