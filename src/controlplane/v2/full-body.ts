// Whole-kind push bodies, encoded once and shared by every proxy sent them:
// - a feed of its own (the node registry, a scoped registry, a view compiled
//   whole): one Buffer per feed version, shared by the proxies of that feed,
//   kept only while some socket still holds it (WeakRef);
// - a view layered on the shared base (layered-kind.ts): the base's encoded
//   items, sliced around the few the view replaces (zero-copy subarrays of one
//   Buffer), with the view's own items in their places. 100 unscoped proxies
//   of 100 namespaces then queue one copy of the mesh, not 100 (8.7 MB each
//   at 10k Services: most of the agent's memory while they were being sent).
import { LayeredKind } from './layered-kind.js';
import type { KindFeed, VersionedKind } from './versioned-kind.js';

export interface FullBody {
  version: number;
  /** The upserts array, in pieces: write them in order. */
  parts: (string | Buffer)[];
  bytes: number;
  /** Of `bytes`, those in `parts` that are this push's own (not in `shared`). */
  ownBytes: number;
  /** The encoded body the Buffers of `parts` share with other proxies' pushes (the budget counts it once). */
  shared: Buffer;
}

const ownBodies = new WeakMap<KindFeed, { version: number; body: WeakRef<Buffer> }>();

function ownBody(f: KindFeed): FullBody {
  const version = f.version();
  const cached = ownBodies.get(f);
  let body = cached?.version === version ? cached.body.deref() : undefined;
  if (!body) {
    const full = f.full();
    body = Buffer.from(`[${full.upserts.join(',')}]`);
    ownBodies.set(f, { version: full.version, body: new WeakRef(body) });
  }
  return { version, parts: [body], bytes: body.length, ownBytes: 0, shared: body };
}

/** A base kind's items as one Buffer (comma-separated, no brackets) and where each item lies in it. */
interface EncodedItems { body: Buffer; at: Map<string, number>; starts: Uint32Array; ends: Uint32Array; count: number }

const encodedBases = new WeakMap<VersionedKind<unknown>, { version: number; enc: WeakRef<EncodedItems> }>();

function encodeItems(kind: VersionedKind<unknown>): EncodedItems {
  const version = kind.version();
  const cached = encodedBases.get(kind);
  const hit = cached?.version === version ? cached.enc.deref() : undefined;
  if (hit) return hit;
  const texts: string[] = [];
  const at = new Map<string, number>();
  for (const [k, json] of kind.entries()) { at.set(k, texts.length); texts.push(json); }
  const starts = new Uint32Array(texts.length);
  const ends = new Uint32Array(texts.length);
  let pos = 0;
  for (let i = 0; i < texts.length; i++) { starts[i] = pos; pos += Buffer.byteLength(texts[i]); ends[i] = pos; pos++; }
  const enc: EncodedItems = { body: Buffer.from(texts.join(',')), at, starts, ends, count: texts.length };
  encodedBases.set(kind, { version, enc: new WeakRef(enc) });
  return enc;
}

function layeredBody(f: LayeredKind): FullBody & { keepAlive: EncodedItems } {
  const enc = encodeItems(f.base);
  const overlay = f.overlayItems();
  // The base's positions the view replaces, in order; items the base lacks go last.
  const replaced: [number, string][] = [];
  const added: string[] = [];
  for (const [k, json] of overlay) {
    const i = enc.at.get(k);
    if (i === undefined) added.push(json); else replaced.push([i, json]);
  }
  replaced.sort((a, b) => a[0] - b[0]);
  const elems: (string | Buffer)[] = [];
  let from = 0;
  const run = (to: number): void => { if (to > from) elems.push(enc.body.subarray(enc.starts[from], enc.ends[to - 1])); };
  for (const [i, json] of replaced) { run(i); elems.push(json); from = i + 1; }
  run(enc.count);
  elems.push(...added);
  const parts: (string | Buffer)[] = ['['];
  elems.forEach((e, i) => { if (i > 0) parts.push(','); parts.push(e); });
  parts.push(']');
  let bytes = 0;
  let ownBytes = 0;
  for (const p of parts) { if (typeof p === 'string') { const n = Buffer.byteLength(p); bytes += n; ownBytes += n; } else bytes += p.length; }
  return { version: f.version(), parts, bytes, ownBytes, shared: enc.body, keepAlive: enc };
}

/** The whole kind as push body pieces, sharing encoded bytes with every other proxy's push of the same content. */
export function fullBody(f: KindFeed): FullBody & { keepAlive?: unknown } {
  return f instanceof LayeredKind ? layeredBody(f) : ownBody(f);
}
