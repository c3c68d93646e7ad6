// The query and write semantics of the test API server: field and label
// selectors as kube-apiserver parses them, JSON merge patch and JSON patch.
// Separate from apiserver.ts (the HTTP and watch machinery) so each stays small.
import type { KubeObject } from './apiserver.js';

export type Selector = (o: KubeObject) => boolean;

export function clone<T>(v: T): T { return structuredClone(v); }

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

export class SelectorError extends Error {}

/** RFC 7386 merge patch (null deletes). */
export function mergePatch(target: unknown, patch: unknown): unknown {
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
export function jsonPatch(target: KubeObject, ops: { op: string; path: string; value?: unknown }[]): KubeObject {
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

/**
 * One page of a LIST (`limit` / `continue`, as the apiserver pages): the
 * token is the offset of the next item. Without `limit`, everything at once.
 */
export function listPage<T>(items: T[], params: URLSearchParams): { items: T[]; next?: string } {
  const limit = Number(params.get('limit') ?? 0);
  if (!(limit > 0)) return { items };
  const from = params.get('continue') ? Number(Buffer.from(params.get('continue')!, 'base64url').toString()) : 0;
  if (!Number.isInteger(from) || from < 0) throw new SelectorError('continue: not a token this server issued');
  const end = from + limit;
  return { items: items.slice(from, end), ...(end < items.length ? { next: Buffer.from(String(end)).toString('base64url') } : {}) };
}
