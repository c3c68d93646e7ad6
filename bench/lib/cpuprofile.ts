// Reading a V8 .cpuprofile (`node --cpu-prof`): self time per function and
// per category (weir's bundle, node core, GC, native), as the profile
// scripts print it. Shares of the busy (non-idle) samples are what a profile
// on a shared machine can say; absolute times include preemption.
import { readFileSync } from 'node:fs';

interface ProfNode { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }
interface Profile { nodes: ProfNode[]; samples: number[]; timeDeltas: number[] }

export interface ProfileSummary {
  totalUs: number;
  busyUs: number;
  /** Category → µs of self time. */
  categories: [string, number][];
  /** "function file:line" → µs of self time, largest first. */
  functions: [string, number][];
  /** File (bundle module or node: builtin) → µs of self time, largest first. */
  files: [string, number][];
  /** For each function named in `callersOf`: its callers' chains (3 frames up) → µs, largest first. */
  callers: Map<string, [string, number][]>;
}

function category(f: ProfNode['callFrame']): string {
  if (f.functionName === '(idle)') return 'idle';
  if (f.functionName === '(garbage collector)') return 'GC';
  if (f.functionName === '(program)') return 'program (native, outside JS)';
  if (f.url.startsWith('node:')) return 'node core (http, net, streams, timers...)';
  if (f.url === '') return 'native builtins';
  return 'weir bundle (weir + npm deps)';
}

/**
 * `bundleModules`: line ranges of the unminified bundle's modules (from
 * esbuild's `// src/...` markers) so a bundle frame is named by its source
 * file rather than by the one bundle file.
 */
export function summarise(file: string, bundleModules?: { line: number; name: string }[], callersOf: string[] = []): ProfileSummary {
  const prof = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const self = new Map<number, number>();
  for (let i = 0; i < prof.samples.length; i++) self.set(prof.samples[i], (self.get(prof.samples[i]) ?? 0) + (prof.timeDeltas[i] ?? 0));
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const callers = new Map<string, Map<string, number>>(callersOf.map((f) => [f, new Map()]));
  const cats = new Map<string, number>();
  const fns = new Map<string, number>();
  const files = new Map<string, number>();
  const add = (m: Map<string, number>, k: string, v: number) => m.set(k, (m.get(k) ?? 0) + v);
  let total = 0;
  for (const [id, us] of self) {
    const f = byId.get(id)!.callFrame;
    total += us;
    const cat = category(f);
    add(cats, cat, us);
    if (cat === 'idle') continue;
    let where = f.url.replace(/^.*\//, '');
    if (bundleModules && cat.startsWith('weir bundle')) where = moduleAt(bundleModules, f.lineNumber + 1);
    add(fns, `${f.functionName || '(anonymous)'} ${where}:${f.lineNumber + 1}`, us);
    add(files, where || cat, us);
    const asked = callers.get(f.functionName);
    if (asked) {
      const chain: string[] = [];
      for (let p = parent.get(id), i = 0; p !== undefined && i < 3; p = parent.get(p), i++) {
        const pf = byId.get(p)!.callFrame;
        chain.push(`${pf.functionName || '(anonymous)'}@${bundleModules && category(pf).startsWith('weir') ? moduleAt(bundleModules, pf.lineNumber + 1) : pf.url.replace(/^.*\//, '')}`);
      }
      add(asked, chain.join(' < '), us);
    }
  }
  const sorted = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]);
  return {
    totalUs: total, busyUs: total - (cats.get('idle') ?? 0), categories: sorted(cats), functions: sorted(fns), files: sorted(files),
    callers: new Map([...callers].map(([k, m]) => [k, sorted(m)])),
  };
}

/** esbuild's unminified output marks each module with a `// path` comment line; this returns those starts. */
export function bundleModuleStarts(bundleText: string): { line: number; name: string }[] {
  const out: { line: number; name: string }[] = [];
  const lines = bundleText.split('\n');
  for (let i = 0; i < lines.length; i++) {
    // A BASELINE bundle's markers carry the extraction dir before src/ (".profile-baseline/src/...").
    const m = /^\/\/ (?:\S*?\/)?((?:src|node_modules)\/\S+)$/.exec(lines[i]);
    if (m) out.push({ line: i + 1, name: m[1].replace(/^node_modules\//, 'npm:') });
  }
  return out;
}

function moduleAt(starts: { line: number; name: string }[], line: number): string {
  let lo = 0, hi = starts.length - 1, best = '?';
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (starts[mid].line <= line) { best = starts[mid].name; lo = mid + 1; } else hi = mid - 1;
  }
  return best;
}

/** The summary as text: categories, then the top files and functions by share of busy time. */
export function formatSummary(s: ProfileSummary, top = 30): string {
  const pct = (v: number) => `${((v / s.busyUs) * 100).toFixed(1).padStart(5)} %`;
  const lines = [`profile: ${(s.totalUs / 1e6).toFixed(2)} s sampled, busy ${(s.busyUs / 1e6).toFixed(2)} s`];
  for (const [k, v] of s.categories) lines.push(`  ${k.padEnd(42)} ${(v / 1e3).toFixed(0).padStart(6)} ms  ${k === 'idle' ? '' : `${pct(v)} of busy`}`);
  lines.push('top files (self):');
  for (const [k, v] of s.files.slice(0, 15)) lines.push(`  ${pct(v)}  ${k}`);
  lines.push('top functions (self):');
  for (const [k, v] of s.functions.slice(0, top)) lines.push(`  ${pct(v)}  ${k}`);
  for (const [fn, chains] of s.callers) {
    lines.push(`callers of ${fn}:`);
    for (const [k, v] of chains.slice(0, 4)) lines.push(`  ${pct(v)}  ${k}`);
  }
  return lines.join('\n');
}
