// Feeds Istio's networking resources (VirtualService, DestinationRule,
// ServiceEntry, Sidecar) from the API server into an IstioConfigStore; the
// same machinery, given another `IstioApi`, feeds the security group
// (PeerAuthentication, AuthorizationPolicy: SECURITY_API) into a store with
// the security reader.
// Istio not being installed is normal: until discovery shows the
// networking.istio.io group (and each kind's CRD), weir works on Services
// alone and looks again every `discoveryIntervalMs`; a kind starts being
// watched as soon as its CRD appears. The served version is chosen from
// discovery (v1, else v1beta1, else v1alpha3: one schema, so one reader).
// Every object goes through the same readers as `weir analyze`: invalid ones
// are kept out of the store and their problems kept for config_dump/analyze.
import { EventEmitter } from 'node:events';
import { ApisApi, CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import type { Logger } from '../common/log.js';
import { ResilientInformer, type KubeListLike, type MetaLike } from '../kube/informer.js';
import { readIstioResource } from '../istio/read.js';
import type { Problem } from '../istio/schema.js';
import type { IstioResource } from '../istio/types.js';

export const ISTIO_GROUP = 'networking.istio.io';
export const ISTIO_KINDS = [
  { kind: 'VirtualService', plural: 'virtualservices' },
  { kind: 'DestinationRule', plural: 'destinationrules' },
  { kind: 'ServiceEntry', plural: 'serviceentries' },
  { kind: 'Sidecar', plural: 'sidecars' },
] as const;

/** One API group to watch: its served version is the first of `versions` discovery shows. */
export interface IstioApi { group: string; versions: readonly string[]; kinds: readonly { kind: string; plural: string }[] }
export const NETWORKING_API: IstioApi = { group: ISTIO_GROUP, versions: ['v1', 'v1beta1', 'v1alpha3'], kinds: ISTIO_KINDS };
export const SECURITY_API: IstioApi = {
  group: 'security.istio.io', versions: ['v1', 'v1beta1'],
  kinds: [{ kind: 'PeerAuthentication', plural: 'peerauthentications' }, { kind: 'AuthorizationPolicy', plural: 'authorizationpolicies' }],
};

export interface RejectedResource { kind: string; namespace: string; name: string; problems: Problem[] }

/** What a store's reader returns for one object (readIstioResource, readSecurityResource). */
export interface StoreReadResult<T> { resource?: T; problems: Problem[]; kind?: string; namespace?: string; name?: string }

/** The accepted resources (by kind/ns/name) and the rejected ones with why. Default reader: the networking kinds. */
export class IstioConfigStore<T = IstioResource> extends EventEmitter<{ change: [] }> {
  constructor(private readonly read: (obj: unknown) => StoreReadResult<T> = readIstioResource as unknown as (obj: unknown) => StoreReadResult<T>) { super(); }

  private readonly accepted = new Map<string, T>();
  private readonly rejected = new Map<string, RejectedResource>();
  /** Problems of accepted resources that do not block them (unsupported fields, warnings). */
  private readonly notes = new Map<string, Problem[]>();

  upsert(obj: unknown): void {
    const r = this.read(obj);
    const key = `${r.kind}/${r.namespace}/${r.name}`;
    this.rejected.delete(key);
    this.notes.delete(key);
    if (r.resource) {
      this.accepted.set(key, r.resource);
      if (r.problems.length) this.notes.set(key, r.problems);
    } else {
      // An invalid update keeps nothing of the old version either: a half-understood route is worse than none.
      this.accepted.delete(key);
      this.rejected.set(key, { kind: r.kind ?? '?', namespace: r.namespace ?? '', name: r.name ?? '', problems: r.problems });
    }
    this.emit('change');
  }

  remove(kind: string, namespace: string, name: string): void {
    const key = `${kind}/${namespace}/${name}`;
    const had = this.accepted.delete(key) || this.rejected.delete(key);
    this.notes.delete(key);
    if (had) this.emit('change');
  }

  resources(): T[] { return [...this.accepted.values()]; }
  rejectedResources(): RejectedResource[] { return [...this.rejected.values()]; }
  notesFor(): { key: string; problems: Problem[] }[] { return [...this.notes].map(([key, problems]) => ({ key, problems })); }
}

export interface IstioSourceStatus { group: 'absent' | 'present'; version?: string; watching: string[] }

export interface IstioSourceOptions { discoveryIntervalMs?: number; watchdogMs?: number }

export class IstioConfigSource<T = IstioResource> {
  private readonly informers = new Map<string, ResilientInformer<MetaLike>>();
  private version?: string;
  private timer?: NodeJS.Timeout;
  private stopped = false;
  private discovering?: Promise<void>;
  private readonly apis: ApisApi;
  private readonly custom: CustomObjectsApi;

  constructor(private readonly kc: KubeConfig, readonly store: IstioConfigStore<T>, private readonly logger: Logger, private readonly opts: IstioSourceOptions = {}, private readonly api: IstioApi = NETWORKING_API) {
    this.apis = kc.makeApiClient(ApisApi);
    this.custom = kc.makeApiClient(CustomObjectsApi);
  }

  status(): IstioSourceStatus {
    return { group: this.version ? 'present' : 'absent', version: this.version, watching: [...this.informers.keys()] };
  }

  /** Resolves after the first discovery and the first list of every kind found; never fails on a missing CRD. */
  async start(): Promise<void> {
    this.stopped = false;
    await this.discover();
  }

  /**
   * Stops every informer, including one a discovery in flight is about to
   * start: discover() checks `stopped` before it creates informers, and stop()
   * waits for it. (Without that, a discovery whose request was answered after
   * stop() created informers nobody stopped: their list/watch retried for ever
   * and kept the process alive — a test file hung after its last test.)
   */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    const stopAll = () => Promise.all([...this.informers.values()].map((i) => i.stop()));
    await stopAll();
    await this.discovering;
    await stopAll();
    this.informers.clear();
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => { void this.discover(); }, this.opts.discoveryIntervalMs ?? 30_000);
    this.timer.unref();
  }

  private discover(): Promise<void> {
    const run = this.discoverOnce();
    this.discovering = run;
    return run;
  }

  private async discoverOnce(): Promise<void> {
    try {
      const groups = await this.apis.getAPIVersions();
      const g = groups.groups.find((x) => x.name === this.api.group);
      const served = new Set(g?.versions.map((v) => v.version) ?? []);
      const version = this.api.versions.find((v) => served.has(v));
      if (!version) {
        if (this.version) this.logger.warn({ group: this.api.group }, 'Istio API group disappeared; keeping the last resources');
        return;
      }
      this.version = version;
      const list = await this.custom.getAPIResources({ group: this.api.group, version });
      if (this.stopped) return;
      const plurals = new Set(list.resources.map((r) => r.name));
      await Promise.all(this.api.kinds.filter((k) => plurals.has(k.plural) && !this.informers.has(k.kind)).map((k) => this.watchKind(k.kind, k.plural, version)));
    } catch (e) {
      this.logger.warn({ err: e instanceof Error ? e.message : String(e) }, 'Istio API discovery failed; retrying');
    } finally {
      this.schedule();
    }
  }

  private watchKind(kind: string, plural: string, version: string): Promise<void> {
    const group = this.api.group;
    const inf = new ResilientInformer<MetaLike>({
      kubeConfig: this.kc, logger: this.logger, name: plural, path: `/apis/${group}/${version}/${plural}`,
      ...(this.opts.watchdogMs !== undefined ? { watchdogMs: this.opts.watchdogMs } : {}),
      listFn: async () => (await this.custom.listClusterCustomObject({ group, version, plural })) as KubeListLike<MetaLike>,
    });
    this.informers.set(kind, inf);
    // Objects from the watch lack kind/apiVersion in some API servers' lists: set them before reading.
    const typed = (o: MetaLike): unknown => ({ apiVersion: `${group}/${version}`, kind, ...o });
    inf.on('add', (o) => this.store.upsert(typed(o)));
    inf.on('update', (o) => this.store.upsert(typed(o)));
    inf.on('delete', (o) => this.store.remove(kind, o.metadata?.namespace ?? '', o.metadata?.name ?? ''));
    inf.on('error', () => undefined);
    this.logger.info({ kind, version }, 'watching Istio resources');
    return inf.start();
  }
}
