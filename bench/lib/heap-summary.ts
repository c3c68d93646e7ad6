// What a V8 heap snapshot holds, by kind of object: self sizes summed by
// (node type, constructor/name), and strings and arrays by what first
// refers to them (their owner's constructor and the edge name), so "the
// agent holds 40 MB of strings" becomes "38 MB of them are Map entries of X".
// Reads the .heapsnapshot format's flat arrays (snapshot.meta says their fields).
//   node --import tsx bench/lib/heap-summary.ts FILE.heapsnapshot [top=25] [Owner1,Owner2,…]
// (with owners: the bytes reachable from each named constructor's instances, in that order, instead)
import { readFileSync } from 'node:fs';

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]]; edge_fields: string[]; edge_types: [string[], ...unknown[]] } };
  nodes: number[]; edges: number[]; strings: string[];
}

/**
 * Bytes reachable from the instances of each named constructor (in the order
 * given: what an earlier owner reaches is not counted again), not passing
 * through another owner's instances, weak edges, code or the V8 system: an
 * approximation of "what each part of the agent holds". Nor through hidden
 * classes, prototypes or closures: every object's map leads to its
 * constructor, whose context leads to module state, so an owner listed first
 * was charged with much of the program (before this, "ClusterObjects" reached
 * 48.6 MB of a 84 MB heap at 5k Services; data a closure captures is not counted).
 */
function owned(snap: Snapshot, names: string[]): string {
  const { node_fields: nf, node_types: nt, edge_fields: ef, edge_types: et } = snap.snapshot.meta;
  const N = nf.length, E = ef.length;
  const [fType, fName, fSize, fEdges] = ['type', 'name', 'self_size', 'edge_count'].map((f) => nf.indexOf(f));
  const [eType, eName, eTo] = ['type', 'name_or_index', 'to_node'].map((f) => ef.indexOf(f));
  const nodes = snap.nodes;
  const count = nodes.length / N;
  const firstEdge = new Uint32Array(count + 1);
  for (let i = 0; i < count; i++) firstEdge[i + 1] = firstEdge[i] + nodes[i * N + fEdges];
  const skipType = new Set(['code', 'synthetic', 'hidden', 'object shape', 'closure'].map((t) => nt[0].indexOf(t)));
  const weak = et[0].indexOf('weak');
  const byName = new Set([et[0].indexOf('property'), et[0].indexOf('internal')]);
  const skipName = new Set(['__proto__', 'map', 'constructor', 'prototype'].map((n) => snap.strings.indexOf(n)));
  const ownerOf = new Int32Array(count).fill(-1);
  const roots = names.map((n) => { const id = snap.strings.indexOf(n); const r: number[] = []; for (let i = 0; i < count; i++) if (nodes[i * N + fName] === id && nt[0][nodes[i * N + fType]] === 'object') r.push(i); return r; });
  roots.forEach((r, k) => { for (const i of r) ownerOf[i] = k; });
  const rows: string[] = [];
  roots.forEach((r, k) => {
    let bytes = 0;
    const stack = [...r];
    for (const i of r) bytes += nodes[i * N + fSize];
    while (stack.length) {
      const i = stack.pop()!;
      for (let e = firstEdge[i]; e < firstEdge[i + 1]; e++) {
        const type = snap.edges[e * E + eType];
        if (type === weak || (byName.has(type) && skipName.has(snap.edges[e * E + eName]))) continue;
        const to = snap.edges[e * E + eTo] / N;
        if (ownerOf[to] !== -1 || skipType.has(nodes[to * N + fType])) continue;
        ownerOf[to] = k;
        bytes += nodes[to * N + fSize];
        stack.push(to);
      }
    }
    rows.push(`| ${names[k]} | ${r.length} | ${(bytes / 1048576).toFixed(1)} MB |`);
  });
  return `| reachable from | instances | bytes |\n|---|---|---|\n${rows.join('\n')}\n`;
}

export function summarize(file: string, top = 25, owners: string[] = []): string {
  const snap = JSON.parse(readFileSync(file, 'utf8')) as Snapshot;
  if (owners.length) return owned(snap, owners);
  const { node_fields: nf, node_types: nt, edge_fields: ef, edge_types: et } = snap.snapshot.meta;
  const N = nf.length;
  const E = ef.length;
  const [fType, fName, fSize, fEdges] = ['type', 'name', 'self_size', 'edge_count'].map((f) => nf.indexOf(f));
  const [eType, eName, eTo] = ['type', 'name_or_index', 'to_node'].map((f) => ef.indexOf(f));
  const types = nt[0];
  const edgeTypes = et[0];
  const nodes = snap.nodes;
  const count = nodes.length / N;
  const label = (i: number): string => {
    const t = types[nodes[i * N + fType]];
    const name = snap.strings[nodes[i * N + fName]];
    return t === 'object' || t === 'closure' || t === 'native' ? `${t}:${name.slice(0, 60)}` : t;
  };
  const bySelf = new Map<string, { n: number; bytes: number }>();
  let total = 0;
  for (let i = 0; i < count; i++) {
    const size = nodes[i * N + fSize];
    total += size;
    const k = label(i);
    const e = bySelf.get(k) ?? { n: 0, bytes: 0 };
    e.n++; e.bytes += size;
    bySelf.set(k, e);
  }
  // First owner of each string / array / hidden backing store.
  const owner = new Map<number, string>();
  let edge = 0;
  for (let i = 0; i < count; i++) {
    const from = label(i);
    const n = nodes[i * N + fEdges];
    for (let j = 0; j < n; j++, edge++) {
      const to = snap.edges[edge * E + eTo] / N;
      if (owner.has(to)) continue;
      const t = types[nodes[to * N + fType]];
      if (t !== 'string' && t !== 'concatenated string' && t !== 'sliced string' && t !== 'array' && t !== 'hidden') continue;
      const et2 = edgeTypes[snap.edges[edge * E + eType]];
      const ename = et2 === 'element' || et2 === 'hidden' ? `[${et2}]` : String(snap.strings[snap.edges[edge * E + eName]] ?? '').slice(0, 30);
      owner.set(to, `${t} ← ${from}.${ename}`);
    }
  }
  const byOwner = new Map<string, { n: number; bytes: number }>();
  for (const [i, k] of owner) {
    const e = byOwner.get(k) ?? { n: 0, bytes: 0 };
    e.n++; e.bytes += nodes[i * N + fSize];
    byOwner.set(k, e);
  }
  const fmt = (m: Map<string, { n: number; bytes: number }>): string => [...m].sort((a, b) => b[1].bytes - a[1].bytes).slice(0, top)
    .map(([k, v]) => `| ${(v.bytes / 1048576).toFixed(1)} MB | ${v.n} | ${k.replace(/\|/g, '\\|')} |`).join('\n');
  return `${file}: ${count} nodes, ${(total / 1048576).toFixed(1)} MB self size in all\n\n| self size | count | type:constructor |\n|---|---|---|\n${fmt(bySelf)}\n\n| self size | count | strings/arrays by first owner |\n|---|---|---|\n${fmt(byOwner)}\n`;
}

if (process.argv[1]?.endsWith('heap-summary.ts')) console.log(summarize(process.argv[2], Number(process.argv[3] ?? 25), process.argv[4]?.split(',') ?? []));
