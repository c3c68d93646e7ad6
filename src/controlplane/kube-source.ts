// Feeds the registry builder from the API server: Services and
// EndpointSlices in all namespaces, through the agent's ResilientInformer
// (one list then watch; watch restarted with backoff; relist and diff after
// 410 Gone; a watchdog restarts stalled watches). A relist's differences
// arrive as add/update/delete events, which the builder turns into deltas, so
// proxies never see a gap or a full reset.
import type { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from '../common/log.js';
import { endpointSlices, podIdentities, services, tlsModeOf, type PodIdentityLike } from '../kube/informers.js';
import type { InformerHealth, ResilientInformer } from '../kube/informer.js';
import { LOCAL_CLUSTER, type RegistryBuilder } from './registry-builder.js';
import type { RegistryDelta } from './types.js';

export interface RegistrySource {
  /** Resolves once both kinds are listed (the registry is complete). */
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Per-informer health (synced, last event, last error), when the source has informers. */
  health?(): Record<string, InformerHealth>;
}

type Apply = (change: (b: RegistryBuilder) => RegistryDelta | undefined) => void;

interface Named { metadata?: { namespace?: string; name?: string } }

/** `cluster`: which cluster these objects belong to (default the local one; remote clusters: their name). */
export function kubeRegistrySource(kc: KubeConfig, apply: Apply, logger: Logger, opts: { watchdogMs?: number; cluster?: string; onError?: (err: Error) => void; pods?: boolean } = {}): RegistrySource {
  const informers: ResilientInformer<Named>[] = [];
  const c = opts.cluster ?? LOCAL_CLUSTER;

  function wire<T extends Named>(inf: ResilientInformer<T>, up: (b: RegistryBuilder, o: T) => RegistryDelta | undefined, del: (b: RegistryBuilder, ns: string, name: string) => RegistryDelta | undefined): Promise<void> {
    informers.push(inf as unknown as ResilientInformer<Named>);
    inf.on('add', (o) => apply((b) => up(b, o)));
    inf.on('update', (o) => apply((b) => up(b, o)));
    inf.on('delete', (o) => apply((b) => del(b, o.metadata?.namespace ?? '', o.metadata?.name ?? '')));
    // Errors are retried inside the informer; a listener keeps them from being thrown.
    inf.on('error', (e: Error) => opts.onError?.(e));
    return inf.start();
  }

  return {
    async start() {
      // Only pass what is set: an explicit undefined would override the informer's defaults.
      const common = { kubeConfig: kc, logger, ...(opts.watchdogMs !== undefined ? { watchdogMs: opts.watchdogMs } : {}) };
      const started = [
        wire(services(common), (b, o) => b.upsertService(o, c), (b, ns, n) => b.deleteService(ns, n, c)),
        wire(endpointSlices(common), (b, o) => b.upsertEndpointSlice(o, c), (b, ns, n) => b.deleteEndpointSlice(ns, n, c)),
      ];
      // Endpoint labels / service accounts / tlsMode come from the local cluster's pods (all namespaces, slimmed).
      if (c === LOCAL_CLUSTER && opts.pods !== false) {
        started.push(wire(podIdentities(common), (b, o) => {
          const p = o as unknown as PodIdentityLike;
          return b.setPod(p.metadata.namespace ?? '', p.metadata.name ?? '', { labels: p.metadata.labels, serviceAccount: p.spec.serviceAccountName, tlsMode: tlsModeOf(p) });
        }, (b, ns, n) => b.setPod(ns, n, undefined)));
      }
      await Promise.all(started);
    },
    async stop() {
      await Promise.all(informers.map((i) => i.stop()));
    },
    health() {
      return Object.fromEntries(informers.map((i, n) => [['services', 'endpointslices', 'pods'][n], i.health()]));
    },
  };
}
