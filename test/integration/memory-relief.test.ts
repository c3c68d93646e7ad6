// relieveMemory on a real process: after a burst that grew V8's heap and
// glibc's arenas (short-lived objects, malloc'd Buffers from another thread
// of work), one relief gives the pages back: RSS drops by megabytes, and
// without it the same process keeps them.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { buildSync } from 'esbuild';
import { fileURLToPath } from 'node:url';
import { nativeAvailable } from '../../src/native/addon.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const skip = nativeAvailable() ? false : 'native addon not built';

// The module under test, bundled, so the child is plain node (tsx's own
// memory would drown what is measured).
const dir = mkdtempSync(path.join(tmpdir(), 'wx-relief-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const bundle = path.join(dir, 'relief.mjs');
buildSync({ entryPoints: [path.join(REPO, 'src/common/memory-relief.ts')], bundle: true, platform: 'node', format: 'esm', outfile: bundle, external: ['*.node'], logLevel: 'error' });

// The burst: 20k live objects at a time churned through (grows new space and
// old space), and 3000 malloc'd 16 KiB Buffers held then dropped (glibc heap).
const CHILD = (relieve: boolean) => `
import { relieveMemory } from ${JSON.stringify(bundle)};
import { readFileSync } from 'node:fs';
const anon = () => Number(/RssAnon:\\s+(\\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))[1]) / 1024;
let keep = [];
for (let round = 0; round < 40; round++) {
  keep = []; for (let i = 0; i < 20000; i++) keep.push({ i, s: 'x' + i, a: [i, i + 1] });
}
let bufs = []; for (let i = 0; i < 3000; i++) bufs.push(Buffer.allocUnsafeSlow(16384).fill(1));
keep = null; bufs = null;
await new Promise((r) => setTimeout(r, 300));
const before = anon();
const r = ${relieve} ? await relieveMemory() : undefined;
await new Promise((r) => setTimeout(r, 300));
console.log(JSON.stringify({ before, after: anon(), r }));
`;

function run(relieve: boolean): { before: number; after: number; r?: { gc: boolean; trimmed: boolean } } {
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', CHILD(relieve)], { cwd: REPO, encoding: 'utf8', env: { ...process.env, WEIR_NATIVE_ADDON: path.join(REPO, 'native/build/Release/weir_native.node') } });
  return JSON.parse(out.trim().split('\n').pop()!);
}

test('mr one relief after a burst gives megabytes back (V8 GC + malloc_trim); the same burst without it keeps them', { skip, timeout: 60_000 }, () => {
  const without = run(false);
  const withRelief = run(true);
  assert.ok(withRelief.r?.gc, 'V8 gc() was not available');
  const freed = withRelief.before - withRelief.after;
  const kept = without.before - without.after;
  assert.ok(freed > 8, `relief freed only ${freed.toFixed(1)} MB of RssAnon (${JSON.stringify(withRelief)})`);
  assert.ok(kept < 2, `without relief the process gave back ${kept.toFixed(1)} MB on its own: the test proves nothing (${JSON.stringify(without)})`);
  assert.ok(withRelief.after < without.after - 6, `after relief ${withRelief.after.toFixed(1)} MB vs ${without.after.toFixed(1)} MB without`);
});

// memoryBreakdown: malloc's own account follows what the process really
// holds — 3000 × 16 KiB Buffers (malloc'd backing stores) show as in use,
// once dropped and collected they show as free-but-kept, and the trim
// returns them (free falls, RssAnon falls).
const BREAKDOWN_CHILD = `
import { memoryBreakdown, relieveMemory } from ${JSON.stringify(bundle)};
const snaps = { start: memoryBreakdown() };
let bufs = []; for (let i = 0; i < 3000; i++) bufs.push(Buffer.allocUnsafeSlow(16384).fill(1));
snaps.held = memoryBreakdown();
bufs = null;
await relieveMemory();
snaps.relieved = memoryBreakdown();
console.log(JSON.stringify(snaps));
`;

test('mr memoryBreakdown: malloc in use grows with held Buffers and falls once they are collected and trimmed; V8 spaces and RssAnon/RssFile are reported', { skip, timeout: 60_000 }, () => {
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', BREAKDOWN_CHILD], { cwd: REPO, encoding: 'utf8', env: { ...process.env, WEIR_NATIVE_ADDON: path.join(REPO, 'native/build/Release/weir_native.node') } });
  type Snap = { rss: number; rssAnon: number; rssFile: number; v8Spaces: Record<string, number>; malloc: { inUse: number; free: number } };
  const s = JSON.parse(out.trim().split('\n').pop()!) as { start: Snap; held: Snap; relieved: Snap };
  const why = JSON.stringify(s);
  for (const snap of [s.start, s.held, s.relieved]) {
    assert.ok(snap.malloc, `no malloc stats: ${why}`);
    assert.ok(snap.v8Spaces.old > 0 && snap.v8Spaces.code > 0, `V8 spaces missing: ${why}`);
    assert.ok(snap.rssAnon > 0 && snap.rssFile > 0 && Math.abs(snap.rssAnon + snap.rssFile - snap.rss) < 3, `RssAnon + RssFile should be VmRSS: ${why}`);
  }
  // 3000 × 16 KiB = 46.9 MB of backing stores.
  assert.ok(s.held.malloc.inUse - s.start.malloc.inUse > 40, `malloc in use grew only ${(s.held.malloc.inUse - s.start.malloc.inUse).toFixed(1)} MB: ${why}`);
  assert.ok(s.held.malloc.inUse - s.relieved.malloc.inUse > 40, `collected Buffers still count as in use: ${why}`);
  assert.ok(s.held.rssAnon - s.relieved.rssAnon > 30, `RssAnon fell only ${(s.held.rssAnon - s.relieved.rssAnon).toFixed(1)} MB after relief: ${why}`);
});

// Several GCs per relief: after a burst that left old space spread thin,
// one GC frees the objects and the next ones give the pages back.
const ROUNDS_CHILD = (rounds: number) => `
import { relieveMemory, memoryBreakdown } from ${JSON.stringify(bundle)};
let keep = [];
for (let r = 0; r < 20; r++) { keep = []; for (let i = 0; i < 30000; i++) keep.push({ i, s: 'x' + i + r, a: [i, r] }); if (r % 4 === 0) globalThis['k' + r] = keep.slice(0, 3000); }
keep = null;
await relieveMemory(100, ${rounds});
console.log(JSON.stringify({ old: memoryBreakdown().v8Spaces.old }));
`;

test('mr a relief of three spaced GCs leaves less old space than one GC after the same burst', { skip, timeout: 60_000 }, () => {
  const oldAfter = (rounds: number) => {
    const out = execFileSync(process.execPath, ['--max-semi-space-size=1', '--input-type=module', '-e', ROUNDS_CHILD(rounds)], { cwd: REPO, encoding: 'utf8', env: { ...process.env, WEIR_NATIVE_ADDON: path.join(REPO, 'native/build/Release/weir_native.node') } });
    return (JSON.parse(out.trim().split('\n').pop()!) as { old: number }).old;
  };
  const one = oldAfter(1);
  const three = oldAfter(3);
  assert.ok(three < one - 1, `old space after 3 GCs ${three} MB vs after 1 GC ${one} MB`);
});
