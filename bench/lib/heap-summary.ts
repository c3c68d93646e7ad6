// What a V8 heap snapshot holds, by kind of object: self sizes summed by
// (node type, constructor/name), and strings and arrays by what first
// refers to them (their owner's constructor and the edge name), so "the
// agent holds 40 MB of strings" becomes "38 MB of them are Map entries of X".
// Reads the .heapsnapshot format's flat arrays (snapshot.meta says their fields).
//   node --import tsx bench/lib/heap-summary.ts FILE.heapsnapshot [top=25]
import { readFileSync } from 'node:fs';

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]]; edge_fields: string[]; edge_types: [string[], ...unknown[]] } };
  nodes: number[]; edges: number[]; strings: string[];
}

export function summarize(file: string, top = 25): string {
  const snap = JSON.parse(readFileSync(file, 'utf8')) as Snapshot;
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

if (process.argv[1]?.endsWith('heap-summary.ts')) console.log(summarize(process.argv[2], Number(process.argv[3] ?? 25)));
