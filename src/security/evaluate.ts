// AuthorizationPolicy evaluation for one connection or request, Istio's
// order: DENY policies first (any match denies), then ALLOW (when at least
// one ALLOW policy applies, something must match), AUDIT only marks.
// Within a rule: from OR'd, to OR'd, when AND'd; within a source/operation
// every set field must hold; values are OR'd, not* values must all miss.
// For a TCP connection HTTP-only fields (hosts, methods, paths,
// request.headers) cannot be known: an ALLOW rule needing them does not
// match, a DENY rule ignores them (fails closed), as Istio does.
import { cidrContains, parseCidr } from '../redirect/addr.js';
import type { CompiledPolicy, CompiledSecurity } from './compile.js';
import type { Condition, Operation, Rule, Source } from './types.js';

export interface RequestAttributes {
  /** cluster.local/ns/x/sa/y (no spiffe://), present only over verified mesh mTLS. */
  sourcePrincipal?: string;
  sourceNamespace?: string;
  sourceIp: string;
  /** The original client (X-Forwarded-For aware setups); weir: same as sourceIp. */
  remoteIp?: string;
  destinationIp?: string;
  destinationPort: number;
  sni?: string;
  /** Present for HTTP requests only. */
  http?: { host: string; method: string; path: string; headers: Record<string, string | string[] | undefined> };
}

export interface Decision { allowed: boolean; policy?: string; reason: string; audited?: string }

type Ctx = { a: RequestAttributes; deny: boolean };
/** true = matches; 'http-only' = cannot be known on TCP. */

/** Istio string match: exact, "prefix*", "*suffix", or "*" (any non-empty). */
export function stringMatch(pattern: string, value: string | undefined, caseInsensitive = false): boolean {
  if (value === undefined) return false;
  const p = caseInsensitive ? pattern.toLowerCase() : pattern;
  const v = caseInsensitive ? value.toLowerCase() : value;
  if (p === '*') return v.length > 0;
  if (p.endsWith('*')) return v.startsWith(p.slice(0, -1));
  if (p.startsWith('*')) return v.endsWith(p.slice(1));
  return v === p;
}

function ipIn(blocks: string[], ip: string | undefined): boolean {
  const addr = ip && parseCidr(ip.replace(/^::ffff:/, ''));
  if (!addr) return false;
  return blocks.some((b) => { const c = parseCidr(b); return !!c && cidrContains(c, addr); });
}

/** One field: positive values (any must match) and negative (none may). */
function field(values: string[] | undefined, notValues: string[] | undefined, test: (v: string) => boolean): boolean {
  if (values && !values.some(test)) return false;
  if (notValues && notValues.some(test)) return false;
  return true;
}

function sourceMatches(s: Source, c: Ctx): boolean {
  const a = c.a;
  if (s.requestPrincipals || s.notRequestPrincipals) { if (!c.deny) return false; }
  return field(s.principals, s.notPrincipals, (p) => stringMatch(p, a.sourcePrincipal))
    && field(s.namespaces, s.notNamespaces, (n) => stringMatch(n, a.sourceNamespace))
    && field(s.ipBlocks, s.notIpBlocks, (b) => ipIn([b], a.sourceIp))
    && field(s.remoteIpBlocks, s.notRemoteIpBlocks, (b) => ipIn([b], a.remoteIp ?? a.sourceIp));
}

function operationMatches(o: Operation, c: Ctx): boolean {
  const a = c.a;
  const httpOnly = o.hosts || o.notHosts || o.methods || o.notMethods || o.paths || o.notPaths;
  if (!field(o.ports, o.notPorts, (p) => Number(p) === a.destinationPort)) return false;
  if (!httpOnly) return true;
  if (!a.http) return c.deny; // TCP: ALLOW cannot match on HTTP fields, DENY ignores them
  const h = a.http;
  const path = h.path.split('?')[0];
  return field(o.hosts, o.notHosts, (x) => stringMatch(x, h.host, true) || stringMatch(x, h.host.replace(/:\d+$/, ''), true))
    && field(o.methods, o.notMethods, (m) => stringMatch(m, h.method))
    && field(o.paths, o.notPaths, (p) => stringMatch(p, path));
}

function conditionMatches(cond: Condition, c: Ctx): boolean {
  const a = c.a;
  const k = cond.key;
  const eq = (v: string | undefined) => (x: string) => stringMatch(x, v);
  const header = /^request\.headers\[(.+)\]$/.exec(k);
  if (header) {
    if (!a.http) return c.deny;
    const raw = a.http.headers[header[1].toLowerCase()];
    const v = Array.isArray(raw) ? raw.join(',') : raw;
    return field(cond.values, cond.notValues, eq(v));
  }
  switch (k) {
    case 'source.ip': return field(cond.values, cond.notValues, (b) => ipIn([b], a.sourceIp));
    case 'remote.ip': return field(cond.values, cond.notValues, (b) => ipIn([b], a.remoteIp ?? a.sourceIp));
    case 'destination.ip': return field(cond.values, cond.notValues, (b) => ipIn([b], a.destinationIp));
    case 'source.namespace': return field(cond.values, cond.notValues, eq(a.sourceNamespace));
    case 'source.principal': return field(cond.values, cond.notValues, eq(a.sourcePrincipal));
    case 'destination.port': return field(cond.values, cond.notValues, (p) => Number(p) === a.destinationPort);
    case 'connection.sni': return field(cond.values, cond.notValues, eq(a.sni));
    default: return c.deny; // request.auth.* (unsupported, reported by the reader): fail closed
  }
}

function ruleMatches(r: Rule, c: Ctx): boolean {
  if (r.from && r.from.length && !r.from.some((s) => sourceMatches(s, c))) return false;
  if (r.to && r.to.length && !r.to.some((o) => operationMatches(o, c))) return false;
  return (r.when ?? []).every((w) => conditionMatches(w, c));
}

function firstMatch(policies: CompiledPolicy[], c: Ctx): string | undefined {
  return policies.find((p) => p.rules.some((r) => ruleMatches(r, c)))?.name;
}

export function authorize(sec: CompiledSecurity, a: RequestAttributes): Decision {
  const audited = firstMatch(sec.audit, { a, deny: false });
  const denied = firstMatch(sec.deny, { a, deny: true });
  if (denied) return { allowed: false, policy: denied, reason: `denied by ${denied}`, audited };
  if (sec.allow.length === 0) return { allowed: true, reason: 'no ALLOW policy applies', audited };
  const allowed = firstMatch(sec.allow, { a, deny: false });
  return allowed ? { allowed: true, policy: allowed, reason: `allowed by ${allowed}`, audited } : { allowed: false, reason: 'no ALLOW policy matched', audited };
}
