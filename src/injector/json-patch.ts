// RFC 6902 JSONPatch from "before" to "after", as the AdmissionReview
// response carries it. Objects are diffed key by key (so a patch never
// rewrites fields the injector did not change, and a concurrent mutating
// webhook's additions elsewhere survive); an array that changed is
// replaced whole (container lists are small, and element-wise patches of
// reordered lists are where hand-rolled diffs go wrong).
export type PatchOp =
  | { op: 'add'; path: string; value: unknown }
  | { op: 'replace'; path: string; value: unknown }
  | { op: 'remove'; path: string };

/** RFC 6901 reference token: "~" → "~0", "/" → "~1" (annotation keys carry slashes). */
export function pointerToken(key: string): string {
  return key.replace(/~/g, '~0').replace(/\//g, '~1');
}

function plain(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function equal(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => equal(x, b[i]));
  if (plain(a) && plain(b)) {
    const ka = Object.keys(a).filter((k) => a[k] !== undefined);
    const kb = Object.keys(b).filter((k) => b[k] !== undefined);
    return ka.length === kb.length && ka.every((k) => Object.hasOwn(b, k) && equal(a[k], b[k]));
  }
  return false;
}

export function diff(before: unknown, after: unknown, path = ''): PatchOp[] {
  if (equal(before, after)) return [];
  if (!plain(before) || !plain(after)) return [{ op: 'replace', path, value: after }];
  const ops: PatchOp[] = [];
  for (const k of Object.keys(before)) {
    if (before[k] !== undefined && (!Object.hasOwn(after, k) || after[k] === undefined)) ops.push({ op: 'remove', path: `${path}/${pointerToken(k)}` });
  }
  for (const k of Object.keys(after)) {
    if (after[k] === undefined) continue;
    const p = `${path}/${pointerToken(k)}`;
    if (!Object.hasOwn(before, k) || before[k] === undefined) ops.push({ op: 'add', path: p, value: after[k] });
    else ops.push(...diff(before[k], after[k], p));
  }
  return ops;
}
