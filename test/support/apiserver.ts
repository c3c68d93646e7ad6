// TestApiServer: a small, real HTTP server on 127.0.0.1 that speaks the
// Kubernetes list/watch wire protocol for the resources weir reads, so the
// agent and the proxy's control plane can be tested with the real
// @kubernetes/client-node against something that behaves like kube-apiserver
// (resourceVersions, watch streams, 410 Gone, bookmarks, closed or stalled
// watches) without a cluster.
//
// API
//   const api = await TestApiServer.start({ bookmarkIntervalMs? })
//   api.url                         http://127.0.0.1:PORT
//   api.writeKubeconfig(dir)        → path of a kubeconfig for KubeConfig.loadFromFile
//   api.put(obj)                    create or replace by obj.kind (Pod, Namespace, Service,
//                                   EndpointSlice, Event); bumps resourceVersion, emits
//                                   ADDED/MODIFIED to watchers; returns the stored copy
//   api.remove(kind, ns, name)      delete; emits DELETED; returns true if it existed
//   api.get(kind, ns, name)         stored copy or undefined (ns '' for cluster-scoped)
//   api.list(kind, ns?)             stored copies
//   api.events(ns?)                 Events created by clients (core v1 and events.k8s.io/v1)
//   api.closeWatches()              end every open watch response (clients must re-watch)
//   api.expireHistory()             compact history: the next watch from any older
//                                   resourceVersion gets ERROR 410 "Expired"; open watches
//                                   are closed so that happens now
//   api.stallWatches(true|false)    true: open and new watches keep their connection but
//                                   never receive another byte (a wedged apiserver / LB)
//   api.failRequests(n, status?)    the next n non-watch requests answer `status` (500)
//   api.installCrd({group, versions, kind, plural, namespaced?})
//                                   serve a custom resource from now on (all versions share one
//                                   store, as conversion would); discovery (/apis, /apis/g/v) lists it
//   api.addToken(token, user)       TokenReview answers for `token`: {username, uid?, groups?, extra?}
//                                   (unknown tokens are not authenticated)
//   api.requests                    log of {method, path, query, watch} for counting
//   api.watchCount()                open watch connections
//   api.kubeVersion = {major, minor}  what GET /version answers (default 1.31)
//   api.stop()
//
// Served paths (JSON only):
//   GET    /api/v1/{pods|services|events}                  (all namespaces)
//   GET    /api/v1/namespaces/{ns}/{pods|services|events}[/{name}]
//   GET    /api/v1/namespaces[/{name}]
//   GET    /apis/discovery.k8s.io/v1/[namespaces/{ns}/]endpointslices[/{name}]
//   GET    /apis/events.k8s.io/v1/[namespaces/{ns}/]events
//   GET    /api/v1/namespaces/{ns}/secrets[/{name}], /apis/admissionregistration.k8s.io/v1/
//          mutatingwebhookconfigurations[/{name}] (+ POST/PATCH as below), GET /version
//   POST   /api/v1/namespaces/{ns}/events, /apis/events.k8s.io/v1/namespaces/{ns}/events,
//          /api/v1/namespaces/{ns}/pods (create)
//   PATCH  .../pods/{name}  application/merge-patch+json, strategic-merge-patch+json
//          (maps merge like a merge patch; enough for metadata.labels/annotations),
//          json-patch+json (add/replace/remove)
//   DELETE .../pods/{name}
//   GET/POST /api/v1/namespaces/{ns}/secrets[/{name}], .../configmaps[/{name}] (+ PATCH)
//   POST   /apis/authentication.k8s.io/v1/tokenreviews   (tokens from addToken)
// List/watch query: watch=1|true, resourceVersion, fieldSelector (metadata.name,
// metadata.namespace, spec.nodeName; = == !=), labelSelector (k=v, k==v, k!=v, k, !k,
// k in (a,b), k notin (a,b)), allowWatchBookmarks, timeoutSeconds.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';

export type KubeObject = {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name?: string; namespace?: string; uid?: string; resourceVersion?: string;
    labels?: Record<string, string>; annotations?: Record<string, string>;
    creationTimestamp?: string; generateName?: string; [k: string]: unknown;
  };
  [k: string]: unknown;
};

interface ResourceType { kind: string; plural: string; apiVersion: string; namespaced: boolean }
export interface CrdSpec { group: string; versions: string[]; kind: string; plural: string; namespaced?: boolean }

const RESOURCES: ResourceType[] = [
  { kind: 'Pod', plural: 'pods', apiVersion: 'v1', namespaced: true },
  { kind: 'Namespace', plural: 'namespaces', apiVersion: 'v1', namespaced: false },
  { kind: 'Service', plural: 'services', apiVersion: 'v1', namespaced: true },
  { kind: 'MutatingWebhookConfiguration', plural: 'mutatingwebhookconfigurations', apiVersion: 'admissionregistration.k8s.io/v1', namespaced: false },
  { kind: 'EndpointSlice', plural: 'endpointslices', apiVersion: 'discovery.k8s.io/v1', namespaced: true },
  { kind: 'Event', plural: 'events', apiVersion: 'v1', namespaced: true },
  { kind: 'Secret', plural: 'secrets', apiVersion: 'v1', namespaced: true },
  { kind: 'ConfigMap', plural: 'configmaps', apiVersion: 'v1', namespaced: true },
];
const BY_KIND = new Map(RESOURCES.map((r) => [r.kind, r]));

export interface TokenUser { username: string; uid?: string; groups?: string[]; extra?: Record<string, string[]> }

export interface RequestLogEntry { method: string; path: string; query: Record<string, string>; watch: boolean }

interface HistoryEntry { rv: number; type: 'ADDED' | 'MODIFIED' | 'DELETED'; kind: string; obj: KubeObject; old?: KubeObject }

interface Watcher {
  kind: string;
  namespace?: string;
  filter: (o: KubeObject) => boolean;
  res: ServerResponse;
  stalled: boolean;
  bookmarks: boolean;
  timers: NodeJS.Timeout[];
}

type Selector = (o: KubeObject) => boolean;

function clone<T>(v: T): T { return structuredClone(v); }

function fieldValue(o: KubeObject, field: string): string | undefined {
  let cur: unknown = o;
  for (const part of field.split('.')) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  if (cur === undefined || cur === null) return '';
  return String(cur);
}

/** fieldSelector: comma-separated `path=value`, `path==value`, `path!=value`. */
export function parseFieldSelector(s: string | null): Selector {
  if (!s) return () => true;
  const terms = s.split(',').filter(Boolean).map((t) => {
    const m = /^([A-Za-z0-9_.]+)(==|!=|=)(.*)$/.exec(t.trim());
    if (!m) throw new SelectorError(`fieldSelector: cannot parse ${JSON.stringify(t)}`);
    const [, path, op, value] = m;
    if (!['metadata.name', 'metadata.namespace', 'spec.nodeName', 'status.phase', 'involvedObject.name', 'regarding.name'].includes(path)) {
      throw new SelectorError(`fieldSelector: field label not supported: ${path}`);
    }
    return (o: KubeObject) => (op === '!=' ? fieldValue(o, path) !== value : fieldValue(o, path) === value);
  });
  return (o) => terms.every((f) => f(o));
}

/** labelSelector basics: k=v, k==v, k!=v, k, !k, k in (a,b), k notin (a,b). */
export function parseLabelSelector(s: string | null): Selector {
  if (!s) return () => true;
  // Split on commas that are not inside parentheses.
  const terms: string[] = [];
  let depth = 0; let cur = '';
  for (const ch of s) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) { terms.push(cur); cur = ''; } else cur += ch;
  }
  if (cur) terms.push(cur);
  const preds = terms.map((raw) => {
    const t = raw.trim();
    let m = /^([^\s!=]+)\s+(in|notin)\s+\(([^)]*)\)$/.exec(t);
    if (m) {
      const [, key, op, list] = m;
      const values = list.split(',').map((v) => v.trim());
      return (l: Record<string, string>) => (op === 'in' ? key in l && values.includes(l[key]) : !(key in l) || !values.includes(l[key]));
    }
    m = /^([^\s!=]+)\s*(==|!=|=)\s*(\S*)$/.exec(t);
    if (m) {
      const [, key, op, value] = m;
      return (l: Record<string, string>) => (op === '!=' ? l[key] !== value : l[key] === value);
    }
    m = /^(!?)([^\s!=()]+)$/.exec(t);
    if (m) {
      const [, not, key] = m;
      return (l: Record<string, string>) => (not ? !(key in l) : key in l);
    }
    throw new SelectorError(`labelSelector: cannot parse ${JSON.stringify(t)}`);
  });
  return (o) => preds.every((p) => p(o.metadata.labels ?? {}));
}

class SelectorError extends Error {}

/** RFC 7386 merge patch (null deletes). */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return clone(patch);
  const out: Record<string, unknown> = target && typeof target === 'object' && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {};
  for (const [k, v] of Object.entries(patch as Record<string, unknown>)) {
    if (k === '$patch' || k.startsWith('$setElementOrder') || k.startsWith('$deleteFromPrimitiveList') || k.startsWith('$retainKeys')) continue;
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

function jsonPointer(path: string): string[] {
  return path.split('/').slice(1).map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
}

/** RFC 6902 subset: add, replace, remove, test. */
function jsonPatch(target: KubeObject, ops: { op: string; path: string; value?: unknown }[]): KubeObject {
  const doc = clone(target) as unknown as Record<string, unknown>;
  for (const op of ops) {
    const parts = jsonPointer(op.path);
    const last = parts.pop();
    if (last === undefined) throw new Error(`json patch: empty path`);
    let parent: Record<string, unknown> = doc;
    for (const p of parts) {
      if (parent[p] === undefined && op.op === 'add') parent[p] = {};
      const next = parent[p];
      if (next === null || typeof next !== 'object') throw new Error(`json patch: path not found: ${op.path}`);
      parent = next as Record<string, unknown>;
    }
    switch (op.op) {
      case 'add': case 'replace': parent[last] = clone(op.value); break;
      case 'remove':
        if (!(last in parent)) throw new Error(`json patch: path not found: ${op.path}`);
        delete parent[last]; break;
      case 'test':
        if (JSON.stringify(parent[last]) !== JSON.stringify(op.value)) throw new Error(`json patch: test failed at ${op.path}`);
        break;
      default: throw new Error(`json patch: unsupported op ${op.op}`);
    }
  }
  return doc as unknown as KubeObject;
}

function status(code: number, reason: string, message: string): object {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
}

export interface TestApiServerOptions {
  /** How often watches that asked for bookmarks get one. Default 1000 ms (real apiservers: ~1 min). */
  bookmarkIntervalMs?: number;
}

export class TestApiServer {
  readonly requests: RequestLogEntry[] = [];
  /** What GET /version answers (the injector decides native sidecars from it). */
  kubeVersion = { major: '1', minor: '31' };
  private readonly objects = new Map<string, KubeObject>();
  private readonly history: HistoryEntry[] = [];
  private readonly watchers = new Set<Watcher>();
  private rv = 1;
  /** Watches from a resourceVersion older than this get 410. */
  private compactedRv = 0;
  private stalled = false;
  private failNext = 0;
  private failStatus = 500;
  private readonly bookmarkIntervalMs: number;
  private readonly tokens = new Map<string, TokenUser>();
  /** "group/version" → custom resource types served under it. */
  private readonly crds = new Map<string, ResourceType[]>();

  private constructor(private readonly server: Server, opts: TestApiServerOptions) {
    this.bookmarkIntervalMs = opts.bookmarkIntervalMs ?? 1000;
  }

  static async start(opts: TestApiServerOptions = {}): Promise<TestApiServer> {
    let self: TestApiServer | undefined;
    const server = createServer((req, res) => { void self!.handle(req, res); });
    self = new TestApiServer(server, opts);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    return self;
  }

  get url(): string {
    const addr = this.server.address() as AddressInfo;
    return `http://127.0.0.1:${addr.port}`;
  }

  writeKubeconfig(dir: string): string {
    mkdirSync(dir, { recursive: true });
    const path = join(dir, 'kubeconfig');
    // Plain HTTP on loopback: client-node refuses http:// unless the cluster
    // says insecure-skip-tls-verify, so the kubeconfig says it.
    const yaml = [
      'apiVersion: v1', 'kind: Config',
      'clusters:', `- name: test`, `  cluster:`, `    server: ${this.url}`, '    insecure-skip-tls-verify: true',
      'users:', '- name: test', '  user:', '    token: test-token',
      'contexts:', '- name: test', '  context:', '    cluster: test', '    user: test',
      'current-context: test', '',
    ].join('\n');
    writeFileSync(path, yaml, { mode: 0o600 });
    return path;
  }

  private key(kind: string, ns: string, name: string): string {
    return `${kind}/${ns}/${name}`;
  }

  put(input: KubeObject): KubeObject {
    const type = input.kind ? BY_KIND.get(input.kind) : undefined;
    if (!type) throw new Error(`TestApiServer.put: unsupported kind ${JSON.stringify(input.kind)}`);
    if (!input.metadata?.name) throw new Error('TestApiServer.put: metadata.name is required');
    const obj = clone(input);
    const ns = type.namespaced ? (obj.metadata.namespace ??= 'default') : '';
    if (!type.namespaced) delete obj.metadata.namespace;
    obj.apiVersion ??= type.apiVersion;
    const k = this.key(type.kind, ns, obj.metadata.name!);
    const old = this.objects.get(k);
    obj.metadata.uid = old?.metadata.uid ?? obj.metadata.uid ?? randomUUID();
    obj.metadata.creationTimestamp = old?.metadata.creationTimestamp ?? obj.metadata.creationTimestamp ?? new Date().toISOString();
    obj.metadata.resourceVersion = String(++this.rv);
    this.objects.set(k, obj);
    this.record({ rv: this.rv, type: old ? 'MODIFIED' : 'ADDED', kind: type.kind, obj, old });
    return clone(obj);
  }

  remove(kind: string, namespace: string, name: string): boolean {
    const type = BY_KIND.get(kind);
    if (!type) throw new Error(`TestApiServer.remove: unsupported kind ${kind}`);
    const k = this.key(kind, type.namespaced ? namespace || 'default' : '', name);
    const old = this.objects.get(k);
    if (!old) return false;
    this.objects.delete(k);
    const obj = clone(old);
    obj.metadata.resourceVersion = String(++this.rv);
    this.record({ rv: this.rv, type: 'DELETED', kind, obj });
    return true;
  }

  get(kind: string, namespace: string, name: string): KubeObject | undefined {
    const type = BY_KIND.get(kind);
    const o = this.objects.get(this.key(kind, type?.namespaced ? namespace || 'default' : '', name));
    return o ? clone(o) : undefined;
  }

  list(kind: string, namespace?: string): KubeObject[] {
    return [...this.objects.values()]
      .filter((o) => (o.kind ?? this.kindOf(o)) === kind && (namespace === undefined || o.metadata.namespace === namespace))
      .map(clone);
  }

  events(namespace?: string): KubeObject[] {
    return this.list('Event', namespace);
  }

  private kindOf(o: KubeObject): string | undefined { return o.kind; }

  closeWatches(): void {
    for (const w of [...this.watchers]) this.endWatch(w);
  }

  expireHistory(): void {
    // A no-op bump: lists now return rv N, and every watch from < N is gone.
    this.rv++;
    this.compactedRv = this.rv;
    this.history.length = 0;
    this.closeWatches();
  }

  stallWatches(on: boolean): void {
    this.stalled = on;
    if (on) for (const w of this.watchers) w.stalled = true;
  }

  failRequests(n: number, statusCode = 500): void {
    this.failNext = n;
    this.failStatus = statusCode;
  }

  watchCount(): number { return this.watchers.size; }

  addToken(token: string, user: TokenUser): void { this.tokens.set(token, user); }

  installCrd(c: CrdSpec): void {
    const type: ResourceType = { kind: c.kind, plural: c.plural, apiVersion: `${c.group}/${c.versions[0]}`, namespaced: c.namespaced ?? true };
    BY_KIND.set(c.kind, type);
    for (const v of c.versions) this.crds.set(`${c.group}/${v}`, [...(this.crds.get(`${c.group}/${v}`) ?? []).filter((t) => t.kind !== c.kind), type]);
  }

  /** Discovery for custom resources: /apis (groups) and /apis/{group}/{version} (resources). */
  private discovery(pathname: string): object | undefined {
    const parts = pathname.split('/').filter(Boolean);
    if (parts[0] !== 'apis') return undefined;
    if (parts.length === 1) {
      const groups = new Map<string, string[]>();
      for (const gv of this.crds.keys()) { const [g, v] = gv.split('/'); groups.set(g, [...(groups.get(g) ?? []), v]); }
      return { kind: 'APIGroupList', apiVersion: 'v1', groups: [...groups].map(([name, vs]) => ({ name, versions: vs.map((version) => ({ groupVersion: `${name}/${version}`, version })), preferredVersion: { groupVersion: `${name}/${vs[0]}`, version: vs[0] } })) };
    }
    const types = parts.length === 3 ? this.crds.get(`${parts[1]}/${parts[2]}`) : undefined;
    if (!types) return undefined;
    return { kind: 'APIResourceList', apiVersion: 'v1', groupVersion: `${parts[1]}/${parts[2]}`, resources: types.map((t) => ({ name: t.plural, singularName: t.kind.toLowerCase(), namespaced: t.namespaced, kind: t.kind, verbs: ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'] })) };
  }

  /** What kube-apiserver's TokenReview answers: authenticated + user, or not authenticated. */
  private async tokenReview(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = JSON.parse(await this.readBody(req)) as { spec?: { token?: string; audiences?: string[] } };
    const user = this.tokens.get(body.spec?.token ?? '');
    const status = user
      ? { authenticated: true, user: { username: user.username, uid: user.uid ?? randomUUID(), groups: user.groups ?? [], extra: user.extra ?? {} }, audiences: body.spec?.audiences }
      : { authenticated: false, error: 'invalid bearer token' };
    this.send(res, 201, { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', metadata: {}, spec: body.spec ?? {}, status });
  }

  async stop(): Promise<void> {
    this.closeWatches();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  // ---- internals ----

  private record(e: HistoryEntry): void {
    this.history.push(e);
    if (this.history.length > 10_000) {
      this.history.shift();
      this.compactedRv = this.history[0].rv;
    }
    for (const w of this.watchers) this.deliver(w, e);
  }

  /** Translate a change into what this watcher sees given its selectors (objects leaving the selection are DELETED). */
  private deliver(w: Watcher, e: HistoryEntry): void {
    if (e.kind !== w.kind || w.stalled) return;
    if (w.namespace !== undefined && e.obj.metadata.namespace !== w.namespace) return;
    const nowMatches = w.filter(e.obj);
    let type: string | undefined;
    if (e.type === 'DELETED') type = nowMatches ? 'DELETED' : undefined;
    else if (e.type === 'ADDED') type = nowMatches ? 'ADDED' : undefined;
    else {
      const was = e.old ? w.filter(e.old) : false;
      type = was && nowMatches ? 'MODIFIED' : nowMatches ? 'ADDED' : was ? 'DELETED' : undefined;
    }
    if (type) this.writeEvent(w, type, e.obj);
  }

  private writeEvent(w: Watcher, type: string, object: object): void {
    if (w.stalled) return;
    w.res.write(`${JSON.stringify({ type, object })}\n`);
  }

  private endWatch(w: Watcher): void {
    for (const t of w.timers) clearInterval(t);
    this.watchers.delete(w);
    w.res.end();
  }

  private async readBody(req: IncomingMessage): Promise<string> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    return Buffer.concat(chunks).toString('utf8');
  }

  private send(res: ServerResponse, code: number, body: object): void {
    const text = JSON.stringify(body);
    res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }

  /** Parse a path into resource, namespace and name. */
  private route(pathname: string): { type: ResourceType; namespace?: string; name?: string } | undefined {
    const parts = pathname.split('/').filter(Boolean);
    let rest: string[];
    if (parts[0] === 'api' && parts[1] === 'v1') rest = parts.slice(2);
    else if (parts[0] === 'apis' && parts.length >= 3) {
      const group = `${parts[1]}/${parts[2]}`;
      const custom = this.crds.get(group);
      if (custom) {
        rest = parts.slice(3);
        let namespace: string | undefined;
        if (rest[0] === 'namespaces' && rest.length >= 3) { namespace = rest[1]; rest = rest.slice(2); }
        const type = custom.find((r) => r.plural === rest[0]);
        return type && rest.length <= 2 ? { type, namespace, name: rest[1] } : undefined;
      }
      if (group !== 'discovery.k8s.io/v1' && group !== 'events.k8s.io/v1' && group !== 'admissionregistration.k8s.io/v1') return undefined;
      rest = parts.slice(3);
    } else return undefined;
    let namespace: string | undefined;
    if (rest[0] === 'namespaces' && rest.length >= 3) { namespace = rest[1]; rest = rest.slice(2); }
    const type = RESOURCES.find((r) => r.plural === rest[0]);
    if (!type || rest.length > 2) return undefined;
    if (type.kind === 'Namespace' && namespace !== undefined) return undefined;
    return { type, namespace, name: rest[1] };
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    const query = Object.fromEntries(url.searchParams.entries());
    const watch = query.watch === '1' || query.watch === 'true';
    this.requests.push({ method: req.method ?? 'GET', path: url.pathname, query, watch });
    try {
      if (!watch && this.failNext > 0) {
        this.failNext--;
        return this.send(res, this.failStatus, status(this.failStatus, 'InternalError', 'injected failure'));
      }
      if (url.pathname === '/version' && req.method === 'GET') return this.send(res, 200, { ...this.kubeVersion, gitVersion: `v${this.kubeVersion.major}.${this.kubeVersion.minor}.0` });
      if (req.method === 'POST' && url.pathname === '/apis/authentication.k8s.io/v1/tokenreviews') return await this.tokenReview(req, res);
      const disc = req.method === 'GET' ? this.discovery(url.pathname) : undefined;
      if (disc) return this.send(res, 200, disc);
      const r = this.route(url.pathname);
      if (!r) return this.send(res, 404, status(404, 'NotFound', `the server could not find the requested resource: ${url.pathname}`));
      const { type, namespace, name } = r;
      const method = req.method ?? 'GET';
      if (method === 'GET' && name) {
        const obj = this.objects.get(this.key(type.kind, namespace ?? '', name));
        if (!obj) return this.send(res, 404, status(404, 'NotFound', `${type.plural} "${name}" not found`));
        return this.send(res, 200, obj);
      }
      if (method === 'GET' && watch) return this.serveWatch(res, type, namespace, url.searchParams);
      if (method === 'GET') return this.serveList(res, type, namespace, url.searchParams);
      if (method === 'POST' && !name) {
        const body = JSON.parse(await this.readBody(req)) as KubeObject;
        body.kind ??= type.kind;
        body.metadata ??= {};
        if (namespace) body.metadata.namespace = namespace;
        if (!body.metadata.name && body.metadata.generateName) body.metadata.name = `${body.metadata.generateName}${randomUUID().slice(0, 5)}`;
        if (!body.metadata.name) return this.send(res, 422, status(422, 'Invalid', 'metadata.name: Required value'));
        if (this.objects.has(this.key(type.kind, namespace ?? '', body.metadata.name))) {
          return this.send(res, 409, status(409, 'AlreadyExists', `${type.plural} "${body.metadata.name}" already exists`));
        }
        return this.send(res, 201, this.put(body));
      }
      if (method === 'PATCH' && name) {
        const existing = this.objects.get(this.key(type.kind, namespace ?? '', name));
        if (!existing) return this.send(res, 404, status(404, 'NotFound', `${type.plural} "${name}" not found`));
        const ctype = (req.headers['content-type'] ?? '').split(';')[0].trim();
        const patch = JSON.parse(await this.readBody(req)) as unknown;
        let next: KubeObject;
        if (ctype === 'application/json-patch+json') next = jsonPatch(existing, patch as { op: string; path: string }[]);
        else if (ctype === 'application/merge-patch+json' || ctype === 'application/strategic-merge-patch+json') {
          next = mergePatch(existing, patch) as KubeObject;
        } else return this.send(res, 415, status(415, 'UnsupportedMediaType', `the body of the request was in an unknown format: ${ctype}`));
        // Immutable identity fields survive any patch.
        next.metadata = { ...next.metadata, name, namespace: existing.metadata.namespace, uid: existing.metadata.uid };
        next.kind = type.kind;
        return this.send(res, 200, this.put(next));
      }
      if (method === 'DELETE' && name) {
        const obj = this.objects.get(this.key(type.kind, namespace ?? '', name));
        if (!obj) return this.send(res, 404, status(404, 'NotFound', `${type.plural} "${name}" not found`));
        this.remove(type.kind, namespace ?? '', name);
        return this.send(res, 200, obj);
      }
      return this.send(res, 405, status(405, 'MethodNotAllowed', `${method} not supported on ${url.pathname}`));
    } catch (err) {
      if (res.headersSent) { res.end(); return; }
      const bad = err instanceof SelectorError || err instanceof SyntaxError || (err instanceof Error && err.message.startsWith('json patch'));
      const code = bad ? 400 : 500;
      this.send(res, code, status(code, bad ? 'BadRequest' : 'InternalError', err instanceof Error ? err.message : String(err)));
    }
  }

  private filterFor(type: ResourceType, namespace: string | undefined, params: URLSearchParams): (o: KubeObject) => boolean {
    const field = parseFieldSelector(params.get('fieldSelector'));
    const label = parseLabelSelector(params.get('labelSelector'));
    return (o) => o.kind === type.kind && (namespace === undefined || o.metadata.namespace === namespace) && field(o) && label(o);
  }

  private serveList(res: ServerResponse, type: ResourceType, namespace: string | undefined, params: URLSearchParams): void {
    const filter = this.filterFor(type, namespace, params);
    const items = [...this.objects.values()].filter(filter);
    this.send(res, 200, {
      kind: `${type.kind}List`, apiVersion: type.apiVersion,
      metadata: { resourceVersion: String(this.rv) },
      items,
    });
  }

  private serveWatch(res: ServerResponse, type: ResourceType, namespace: string | undefined, params: URLSearchParams): void {
    const filter = this.filterFor(type, namespace, params);
    const fromRaw = params.get('resourceVersion');
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    res.flushHeaders();
    const w: Watcher = {
      kind: type.kind, namespace, filter, res, stalled: this.stalled,
      bookmarks: params.get('allowWatchBookmarks') === 'true' || params.get('allowWatchBookmarks') === '1',
      timers: [],
    };
    if (fromRaw && fromRaw !== '0' && Number(fromRaw) < this.compactedRv) {
      // What kube-apiserver does: a 200 stream carrying one ERROR event, then close.
      res.end(`${JSON.stringify({ type: 'ERROR', object: status(410, 'Expired', `too old resource version: ${fromRaw} (${this.compactedRv})`) })}\n`);
      return;
    }
    this.watchers.add(w);
    res.on('close', () => { for (const t of w.timers) clearInterval(t); this.watchers.delete(w); });
    if (!fromRaw || fromRaw === '0') {
      // "Any" resourceVersion: synthetic ADDED for the current state.
      for (const o of this.objects.values()) if (filter(o)) this.writeEvent(w, 'ADDED', o);
    } else {
      const from = Number(fromRaw);
      for (const e of this.history) if (e.rv > from) this.deliver(w, e);
    }
    const timeout = Number(params.get('timeoutSeconds') ?? 0);
    if (timeout > 0) w.timers.push(setTimeout(() => this.endWatch(w), timeout * 1000));
    if (w.bookmarks) {
      const interval = setInterval(() => {
        this.writeEvent(w, 'BOOKMARK', { kind: type.kind, apiVersion: type.apiVersion, metadata: { resourceVersion: String(this.rv) } });
      }, this.bookmarkIntervalMs).unref();
      w.timers.push(interval);
    }
  }
}
