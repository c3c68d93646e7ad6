// Feeds the registry builder from the API server: Services and
// EndpointSlices in all namespaces, list + watch, restarted with backoff when
// the watch fails (the informer relists, and the builder turns the relisted
// state into a delta, so proxies never see a gap or a full reset).
import { CoreV1Api, DiscoveryV1Api, makeInformer, type KubeConfig, type KubernetesObject, type Informer } from '@kubernetes/client-node';
import type { Logger } from '../common/log.js';
import type { KubeEndpointSlice, KubeService } from './kube-shapes.js';
import type { RegistryBuilder } from './registry-builder.js';
import type { RegistryDelta } from './types.js';

export interface RegistrySource {
  /** Resolves once both kinds are listed (the registry is complete). */
  start(): Promise<void>;
  stop(): Promise<void>;
}

type Apply = (change: (b: RegistryBuilder) => RegistryDelta | undefined) => void;

export function kubeRegistrySource(kc: KubeConfig, apply: Apply, logger: Logger): RegistrySource {
  const core = kc.makeApiClient(CoreV1Api);
  const discovery = kc.makeApiClient(DiscoveryV1Api);
  const informers: Informer<KubernetesObject>[] = [];
  let stopped = false;

  function wire<T extends KubernetesObject>(kind: string, inf: Informer<T>, up: (b: RegistryBuilder, o: T) => RegistryDelta | undefined, del: (b: RegistryBuilder, ns: string, name: string) => RegistryDelta | undefined): Promise<void> {
    informers.push(inf as unknown as Informer<KubernetesObject>);
    inf.on('add', (o) => apply((b) => up(b, o)));
    inf.on('update', (o) => apply((b) => up(b, o)));
    inf.on('delete', (o) => apply((b) => del(b, o.metadata?.namespace ?? '', o.metadata?.name ?? '')));
    let backoff = 500;
    inf.on('error', (err) => {
      if (stopped) return;
      logger.warn({ kind, err: String(err), retryInMs: backoff }, 'watch failed; restarting');
      setTimeout(() => { if (!stopped) inf.start().catch(() => { /* reported via 'error' */ }); }, backoff).unref();
      backoff = Math.min(backoff * 2, 30_000);
    });
    inf.on('connect', () => { backoff = 500; });
    return inf.start();
  }

  return {
    async start() {
      const svc = makeInformer(kc, '/api/v1/services', () => core.listServiceForAllNamespaces());
      const eps = makeInformer(kc, '/apis/discovery.k8s.io/v1/endpointslices', () => discovery.listEndpointSliceForAllNamespaces());
      await Promise.all([
        wire('Service', svc, (b, o) => b.upsertService(o as unknown as KubeService), (b, ns, n) => b.deleteService(ns, n)),
        wire('EndpointSlice', eps, (b, o) => b.upsertEndpointSlice(o as unknown as KubeEndpointSlice), (b, ns, n) => b.deleteEndpointSlice(ns, n)),
      ]);
    },
    async stop() {
      stopped = true;
      await Promise.all(informers.map((i) => i.stop()));
    },
  };
}
