// What a proxy checks in every v2 push before applying any of it: each item
// of the kind has the shape the readers rely on. A failure is a NACK error
// naming the item (its key), the field and why; the push is then not applied
// at all and the proxy keeps its last good version of the kind.
import { isIP } from 'node:net';
import type { NackError } from '../protocol.js';
import { keyOf, type Kind } from './kinds.js';

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

class Check {
  readonly errors: NackError[] = [];
  constructor(private readonly name: string) {}
  fail(field: string, message: string): false { this.errors.push({ name: this.name, field, message }); return false; }
  obj(f: string, v: unknown): v is Obj { return isObj(v) || this.fail(f, 'must be an object'); }
  str(f: string, v: unknown, optional = false): boolean { return (optional && v === undefined) || typeof v === 'string' || this.fail(f, 'must be a string'); }
  int(f: string, v: unknown, min: number, max: number, optional = false): boolean {
    return (optional && v === undefined) || (Number.isSafeInteger(v) && (v as number) >= min && (v as number) <= max) || this.fail(f, `must be an integer in ${min}..${max}`);
  }
  arr(f: string, v: unknown, each?: (x: unknown, f: string) => void): boolean {
    if (!Array.isArray(v)) return this.fail(f, 'must be a list');
    if (each) v.forEach((x, i) => each(x, `${f}[${i}]`));
    return true;
  }
  strMap(f: string, v: unknown, optional = false): boolean {
    if (optional && v === undefined) return true;
    if (!isObj(v)) return this.fail(f, 'must be an object of strings');
    for (const [k, x] of Object.entries(v)) if (typeof x !== 'string') this.fail(`${f}.${k}`, 'must be a string');
    return true;
  }
  oneOf(f: string, v: unknown, allowed: readonly string[]): boolean {
    return (typeof v === 'string' && allowed.includes(v)) || this.fail(f, `must be one of ${allowed.join(', ')}`);
  }
  /** A regex the proxy will compile: Envoy's RE2 syntax is not JavaScript's, so one that does not compile here is rejected here. */
  regex(f: string, v: unknown): void {
    if (!this.str(f, v)) return;
    try { new RegExp(v as string); } catch (e) { this.fail(f, `does not compile: ${(e as Error).message}`); }
  }
}

function stringMatch(c: Check, f: string, v: unknown): void {
  if (!c.obj(f, v)) return;
  const keys = Object.keys(v).filter((k) => ['exact', 'prefix', 'regex'].includes(k));
  if (keys.length !== 1) { c.fail(f, 'must have exactly one of exact, prefix, regex'); return; }
  if (keys[0] === 'regex') c.regex(`${f}.regex`, v.regex);
  else c.str(`${f}.${keys[0]}`, v[keys[0]]);
}

function matchMap(c: Check, f: string, v: unknown): void {
  if (v === undefined) return;
  if (!c.obj(f, v)) return;
  for (const [k, m] of Object.entries(v)) stringMatch(c, `${f}.${k}`, m);
}

function weighted(c: Check, f: string, v: unknown): void {
  c.arr(f, v, (w, wf) => {
    if (!c.obj(wf, w)) return;
    c.str(`${wf}.cluster`, w.cluster);
    c.int(`${wf}.weight`, w.weight, 0, 1_000_000);
  });
}

function httpRoute(c: Check, f: string, r: unknown): void {
  if (!c.obj(f, r)) return;
  c.str(`${f}.source`, r.source);
  c.arr(`${f}.match`, r.match, (m, mf) => {
    if (!c.obj(mf, m)) return;
    for (const k of ['uri', 'scheme', 'method', 'authority'] as const) if (m[k] !== undefined) stringMatch(c, `${mf}.${k}`, m[k]);
    for (const k of ['headers', 'queryParams', 'withoutHeaders'] as const) matchMap(c, `${mf}.${k}`, m[k]);
    c.int(`${mf}.port`, m.port, 1, 65535, true);
    c.strMap(`${mf}.sourceLabels`, m.sourceLabels, true);
  });
  if (!c.obj(`${f}.action`, r.action)) return;
  const a = r.action;
  const kinds = ['route', 'redirect', 'directResponse'].filter((k) => a[k] !== undefined);
  if (kinds.length !== 1) c.fail(`${f}.action`, 'must have exactly one of route, redirect, directResponse');
  else if (kinds[0] === 'route') weighted(c, `${f}.action.route`, a.route);
  else if (kinds[0] === 'redirect' && c.obj(`${f}.action.redirect`, a.redirect)) c.int(`${f}.action.redirect.redirectCode`, a.redirect.redirectCode, 300, 399);
  else if (kinds[0] === 'directResponse' && c.obj(`${f}.action.directResponse`, a.directResponse)) c.int(`${f}.action.directResponse.status`, a.directResponse.status, 200, 599);
  c.int(`${f}.timeoutMs`, r.timeoutMs, 0, 2 ** 31, true);
  c.arr(`${f}.mirrors`, r.mirrors, (m, mf) => { if (c.obj(mf, m)) c.str(`${mf}.cluster`, m.cluster); });
  const rw = r.rewrite;
  if (rw !== undefined && c.obj(`${f}.rewrite`, rw) && rw.uriRegexRewrite !== undefined && c.obj(`${f}.rewrite.uriRegexRewrite`, rw.uriRegexRewrite)) {
    c.regex(`${f}.rewrite.uriRegexRewrite.match`, rw.uriRegexRewrite.match);
  }
}

const CHECKS: Record<Kind, (c: Check, o: Obj) => void> = {
  Registry(c, s) {
    c.str('namespace', s.namespace); c.str('name', s.name);
    c.oneOf('kind', s.kind, ['ClusterIP', 'Headless', 'ExternalName', 'NodePort', 'LoadBalancer']);
    c.arr('clusterIPs', s.clusterIPs, (ip, f) => { if (typeof ip !== 'string' || !isIP(ip)) c.fail(f, 'must be an IP address'); });
    c.arr('ports', s.ports, (p, f) => { if (c.obj(f, p)) { c.int(`${f}.port`, p.port, 1, 65535); c.str(`${f}.name`, p.name); } });
    c.arr('endpoints', s.endpoints, (e, f) => {
      if (!c.obj(f, e)) return;
      if (typeof e.ip !== 'string' || !isIP(e.ip)) c.fail(`${f}.ip`, 'must be an IP address');
      c.arr(`${f}.ports`, e.ports);
      c.strMap(`${f}.labels`, e.labels, true);
    });
  },
  Cluster(c, o) {
    c.str('name', o.name); c.str('host', o.host); c.int('port', o.port, 1, 65535); c.str('protocol', o.protocol);
    c.strMap('selector', o.selector);
    if (c.obj('loadBalancer', o.loadBalancer)) c.str('loadBalancer.simple', o.loadBalancer.simple);
    if (c.obj('connectionPool', o.connectionPool)) c.int('connectionPool.connectTimeoutMs', o.connectionPool.connectTimeoutMs, 0, 2 ** 31);
    if (c.obj('tls', o.tls)) c.oneOf('tls.mode', o.tls.mode, ['AUTO', 'DISABLE', 'SIMPLE', 'MUTUAL', 'ISTIO_MUTUAL']);
  },
  RouteTable(c, o) {
    c.int('port', o.port, 1, 65535);
    const vh = o.virtualHost;
    if (!c.obj('virtualHost', vh)) return;
    c.str('virtualHost.name', vh.name);
    c.arr('virtualHost.domains', vh.domains, (d, df) => c.str(df, d));
    c.arr('virtualHost.routes', vh.routes, (r, rf) => httpRoute(c, rf, r));
  },
  L4Service(c, o) {
    c.str('host', o.host); c.int('port', o.port, 1, 65535); c.str('protocol', o.protocol);
    c.arr('addresses', o.addresses, (a, f) => c.str(f, a));
    c.arr('routes', o.routes, (r, f) => { if (c.obj(f, r)) { c.arr(`${f}.match`, r.match); weighted(c, `${f}.route`, r.route); } });
  },
  Listener(c, o) {
    c.oneOf('name', o.name, ['outbound']);
    c.oneOf('outboundTrafficPolicy', o.outboundTrafficPolicy, ['ALLOW_ANY', 'REGISTRY_ONLY']);
  },
  Ignored(c, o) { c.str('resource', o.resource); c.str('field', o.field); c.str('message', o.message); },
};

/** Errors of every item of one push (empty = applicable). `name` is the item's index when its key cannot be read. */
export function checkItems(kind: Kind, items: unknown[]): NackError[] {
  const errors: NackError[] = [];
  items.forEach((item, i) => {
    const o = isObj(item) ? item : undefined;
    let key = `#${i}`;
    try { if (o) key = keyOf(kind, o as never); } catch { /* unreadable key: the index names it */ }
    const c = new Check(key);
    if (!o) c.fail('', 'must be an object');
    else CHECKS[kind](c, o);
    errors.push(...c.errors);
  });
  return errors;
}
