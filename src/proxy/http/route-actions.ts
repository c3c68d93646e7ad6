// What a compiled route does to a request besides choosing a cluster:
// header operations (set, add, remove — on the request before it leaves, on
// the response before it is relayed), path and authority rewrites, the
// Location of a redirect, and whether a fault fires for this request.
import type { CompiledHttpRoute } from '../../controlplane/resources.js';
import type { HeaderOps, HttpMatch } from '../../istio/types.js';
import { checkRegex } from './match.js';

type Headers = Record<string, string | string[] | undefined>;

/** Headers the route may not touch: pseudo-headers and the hop's own framing. */
const PROTECTED = new Set(['host', ':authority', ':path', ':method', ':scheme', 'content-length', 'transfer-encoding', 'connection']);

export function applyHeaderOps(h: Headers, ops: HeaderOps['request'] | undefined): void {
  if (!ops) return;
  for (const name of ops.remove ?? []) { const k = name.toLowerCase(); if (!PROTECTED.has(k)) delete h[k]; }
  for (const [name, v] of Object.entries(ops.set ?? {})) { const k = name.toLowerCase(); if (!PROTECTED.has(k)) h[k] = v; }
  for (const [name, v] of Object.entries(ops.add ?? {})) {
    const k = name.toLowerCase();
    if (PROTECTED.has(k)) continue;
    const have = h[k];
    h[k] = have === undefined ? v : [...(Array.isArray(have) ? have : [have]), v];
  }
}

function splitPath(p: string): [string, string] {
  const q = p.indexOf('?');
  return q < 0 ? [p, ''] : [p.slice(0, q), p.slice(q)];
}

/**
 * A uriRegexRewrite's RegExp and replacement, checked and compiled once per
 * (pattern, rewrite), not per request. A global RegExp is safe to share
 * here: String.prototype.replace starts a global search at 0 whatever its
 * lastIndex. Bounded: patterns come from config, which pushes replace.
 */
const rewrites = new Map<string, { re: RegExp; replacement: string }>();
function regexRewrite(match: string, rewrite: string): { re: RegExp; replacement: string } {
  const key = `${match}\u0000${rewrite}`;
  let r = rewrites.get(key);
  if (!r) {
    checkRegex(match);
    r = { re: new RegExp(match, 'gu'), replacement: jsReplacement(rewrite) };
    if (rewrites.size >= 1024) rewrites.clear();
    rewrites.set(key, r);
  }
  return r;
}

/** RE2 substitutions are \1; JavaScript's are $1. */
function jsReplacement(rewrite: string): string {
  return rewrite.replace(/\$/g, '$$$$').replace(/\\(\d)/g, '$$$1');
}

/**
 * The upstream path after rewrite.uri / uriRegexRewrite. A uri rewrite
 * replaces what a prefix match matched (Istio renders it as Envoy's
 * prefix_rewrite; with no uri match the prefix is "/"), and the whole path
 * after an exact or regex match. The query string is kept.
 */
export function rewritePath(path: string, rw: CompiledHttpRoute['rewrite'], match: HttpMatch | undefined): string {
  if (!rw) return path;
  const [p, q] = splitPath(path);
  if (rw.uriRegexRewrite) {
    const { re, replacement } = regexRewrite(rw.uriRegexRewrite.match, rw.uriRegexRewrite.rewrite);
    return p.replace(re, replacement) + q;
  }
  if (rw.uri === undefined) return path;
  const uri = match?.uri;
  if (!uri) return rw.uri + p.slice(1) + q;
  if ('prefix' in uri) return rw.uri + p.slice(uri.prefix.length) + q;
  return rw.uri + q;
}

export function redirectLocation(r: { uri?: string; authority?: string; port?: number; scheme?: string }, req: { path: string; authority: string; scheme: string }): string {
  const scheme = r.scheme ?? req.scheme;
  let authority = r.authority ?? req.authority;
  if (r.port !== undefined) authority = `${authority.replace(/:\d+$/, '')}:${r.port}`;
  const [p, q] = splitPath(req.path);
  const path = r.uri !== undefined ? (r.uri.includes('?') ? r.uri : r.uri + q) : p + q;
  return `${scheme}://${authority}${path}`;
}

/** Percentages are 0..100 with fractions (Istio's Percent). */
export function fires(percentage: number, rnd = Math.random()): boolean {
  return rnd * 100 < percentage;
}

const GRPC_STATUS: Record<string, string> = {
  OK: '0', CANCELLED: '1', UNKNOWN: '2', INVALID_ARGUMENT: '3', DEADLINE_EXCEEDED: '4', NOT_FOUND: '5', ALREADY_EXISTS: '6', PERMISSION_DENIED: '7',
  RESOURCE_EXHAUSTED: '8', FAILED_PRECONDITION: '9', ABORTED: '10', OUT_OF_RANGE: '11', UNIMPLEMENTED: '12', INTERNAL: '13', UNAVAILABLE: '14', DATA_LOSS: '15', UNAUTHENTICATED: '16',
};

/** A gRPC status given by name (Istio's form) or number. */
export function grpcStatusCode(s: string): string {
  return /^\d+$/.test(s) ? s : GRPC_STATUS[s.toUpperCase()] ?? '2';
}

/** "host:port" → "host-shadow:port" (Envoy's shadow host). */
export function shadowAuthority(authority: string): string {
  const m = /^(.*?)(:\d+)?$/.exec(authority)!;
  return `${m[1]}-shadow${m[2] ?? ''}`;
}
