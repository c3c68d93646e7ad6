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
// k in (a,b), k notin (a,b)), allowWatchBookmarks, timeoutSeconds, limit + continue (lists in pages).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { ResourceCatalogue, type CrdSpec, type ResourceType } from './apiserver-resources.js';
import { clone, jsonPatch, listPage, mergePatch, parseFieldSelector, parseLabelSelector, SelectorError } from './apiserver-ops.js';

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

export type { CrdSpec } from './apiserver-resources.js';

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
  /** Built-in and custom resource types: per server, so a CRD one test installs is not served by another's. */
  private readonly resources = new ResourceCatalogue();

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
    const type = input.kind ? this.resources.byKind(input.kind) : undefined;
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
    const type = this.resources.byKind(kind);
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
    const type = this.resources.byKind(kind);
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

  installCrd(c: CrdSpec): void { this.resources.install(c); }

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
      const disc = req.method === 'GET' ? this.resources.discovery(url.pathname) : undefined;
      if (disc) return this.send(res, 200, disc);
      const r = this.resources.route(url.pathname);
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
    const { items, next } = listPage([...this.objects.values()].filter(filter), params);
    this.send(res, 200, {
      kind: `${type.kind}List`, apiVersion: type.apiVersion,
      metadata: { resourceVersion: String(this.rv), ...(next ? { continue: next } : {}) },
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
