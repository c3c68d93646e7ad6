// Giving memory back after a burst of load. A proxy's RSS otherwise stays
// near the burst's peak long after the traffic is gone: V8 keeps the young
// generation it grew to (up to 2 × 16 MiB of semi-spaces) and the old-space
// pages the burst's garbage left behind — its memory reducer shrinks them
// only on its own schedule, which a mostly-idle proxy may never reach — and
// glibc keeps freed blocks in its arenas (main heap and one per thread:
// the pump thread, V8's workers). Measured on weir proxy after 2000 short
// connections: RssAnon 12 MB idle → 21-33 MB, flat for 30 s and more.
//
// So: every `intervalMs` the process's own CPU time is sampled (all its
// threads). An interval that used more than `busyFraction` of one CPU marks
// load; the first interval after load that used less than `quietFraction`
// triggers one relief: a full V8 GC (frees the burst's garbage, and the
// young generation shrinks after a quiet spell) and malloc_trim(0). A steadily idle process
// never pays for it; a steadily busy one never stalls for it; a burst costs
// one GC of the (by then mostly garbage) heap, a few ms.
import { readFileSync } from 'node:fs';
import v8 from 'node:v8';
import vm from 'node:vm';
import { mallocStats, mallocTrim } from '../native/addon.js';

export interface MemoryReliefOptions {
  /** How often to sample CPU time, ms (default 5000: relief at most ~10 s after a burst ends). */
  intervalMs?: number;
  /** Fraction of one CPU above which an interval counts as load (default 0.05). */
  busyFraction?: number;
  /** Fraction of one CPU below which an interval counts as quiet (default 0.01). */
  quietFraction?: number;
  /** Called after each relief (for logs). */
  onRelief?: (r: ReliefResult) => void;
}

export interface ReliefResult {
  /** Process RSS before and after, bytes. */
  rssBefore: number;
  rssAfter: number;
  /** Time the GCs held the JS thread, ms (all rounds). */
  durationMs: number;
  gc: boolean;
  trimmed: boolean;
}

/**
 * Where this process's memory is, MB, for telling apart what a burst left:
 * V8's spaces (physical pages each holds), Buffers outside the heap, glibc
 * malloc's arenas (in use vs free-but-kept), and the kernel's view (RssAnon /
 * RssFile: file pages are the node binary's code, shared and not ours to free).
 */
export interface MemoryBreakdown {
  rss: number;
  rssAnon?: number;
  rssFile?: number;
  v8Spaces: Record<string, number>;
  /** Bytecode + its metadata (part of old space): grows with every code path that ran, shrinks when V8 flushes unused functions' bytecode. */
  bytecode: number;
  external: number;
  arrayBuffers: number;
  /** free: bytes in freeChunks free chunks (a trim returns only whole free pages: small scattered chunks stay). */
  malloc?: { arena: number; mmapped: number; inUse: number; free: number; freeChunks: number };
}

const MB = 2 ** 20;
const round = (bytes: number) => Math.round((bytes / MB) * 10) / 10;

export function memoryBreakdown(): MemoryBreakdown {
  const mu = process.memoryUsage();
  const v8Spaces: Record<string, number> = {};
  for (const sp of v8.getHeapSpaceStatistics()) v8Spaces[sp.space_name.replace(/_space$/, '')] = round(sp.physical_space_size);
  const out: MemoryBreakdown = { rss: round(mu.rss), v8Spaces, bytecode: round(v8.getHeapCodeStatistics().bytecode_and_metadata_size), external: round(mu.external), arrayBuffers: round(mu.arrayBuffers) };
  try {
    const status = readFileSync('/proc/self/status', 'utf8');
    const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? NaN) * 1024;
    out.rssAnon = round(kb('RssAnon'));
    out.rssFile = round(kb('RssFile'));
  } catch { /* not Linux */ }
  const m = mallocStats();
  if (m) out.malloc = { arena: round(m.arenaBytes), mmapped: round(m.mmappedBytes), inUse: round(m.inUseBytes), free: round(m.freeBytes), freeChunks: m.freeChunks };
  return out;
}

export interface MemoryRelief {
  stats(): { reliefs: number; last?: ReliefResult; now: MemoryBreakdown };
  stop(): void;
}

type Decision = 'relieve' | 'wait';

/** The decision, separate from the timers so it can be tested: load seen since the last relief, and now quiet. */
export class ReliefTrigger {
  private loaded = false;
  constructor(private readonly busyFraction: number, private readonly quietFraction: number) {}

  /** One interval's CPU use as a fraction of one CPU. */
  sample(cpuFraction: number): Decision {
    if (cpuFraction > this.busyFraction) { this.loaded = true; return 'wait'; }
    if (this.loaded && cpuFraction < this.quietFraction) { this.loaded = false; return 'relieve'; }
    return 'wait';
  }
}

let gcFn: (() => void) | undefined | null;
/**
 * V8's gc() without --expose-gc on the command line: the flag set at run
 * time exposes it in contexts created afterwards, not in the main global.
 */
function fullGc(): (() => void) | undefined {
  if (gcFn === undefined) {
    try {
      v8.setFlagsFromString('--expose-gc');
      gcFn = vm.runInNewContext('gc') as () => void;
    } catch {
      gcFn = null;
    }
  }
  return gcFn ?? undefined;
}

/**
 * One relief now: `rounds` full GCs `sweepMs` apart, then malloc_trim. The
 * trim waits `sweepMs` after the last GC: V8 frees the backing stores of
 * dead ArrayBuffers (every Buffer a socket read into) on a background
 * thread after the GC, and only memory already freed can be trimmed.
 *
 * Why more than one GC: the first frees the burst's objects but leaves the
 * old-space pages they were spread over mostly live-sparse; the next ones
 * compact those pages and give them back. Measured (Node 20, 1 MiB
 * semi-spaces, a burst that left 9.3 MB of old space): one gc() → 6.8 MB,
 * two 200 ms apart → 4.8 MB, three back to back → 3.5 MB. In weir proxy after
 * short-connection load (bench/proxy-l4, memoryRelief.now) one GC left old
 * space at 11 MB against 6.5 MB idle. Each GC of a ~10 MB heap holds the
 * JS thread for ~5-20 ms; spacing them keeps every pause that short.
 */
export async function relieveMemory(sweepMs = 200, rounds = 3): Promise<ReliefResult> {
  const rssBefore = process.memoryUsage.rss();
  const gc = fullGc();
  let gcMs = 0;
  for (let i = 0; i < rounds; i++) {
    // gc() with no argument: a full GC. (Measured on Node 20: with an options
    // object, even {type: 'major', execution: 'sync'} or flavor
    // 'last-resort', it freed nothing.) After a quiet interval V8 sees a low
    // allocation rate and shrinks the young generation at the end of the GC.
    const t0 = performance.now();
    if (gc) gc();
    gcMs += performance.now() - t0;
    await new Promise((r) => setTimeout(r, sweepMs));
  }
  const trimmed = mallocTrim();
  return { rssBefore, rssAfter: process.memoryUsage.rss(), durationMs: gcMs, gc: gc !== undefined, trimmed };
}

export function startMemoryRelief(opts: MemoryReliefOptions = {}): MemoryRelief {
  const intervalMs = opts.intervalMs ?? 5000;
  const trigger = new ReliefTrigger(opts.busyFraction ?? 0.05, opts.quietFraction ?? 0.01);
  let reliefs = 0;
  let last: ReliefResult | undefined;
  let prev = process.cpuUsage();
  let prevAt = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    const used = process.cpuUsage(prev);
    prev = process.cpuUsage();
    const fraction = (used.user + used.system) / 1000 / Math.max(1, now - prevAt);
    prevAt = now;
    if (trigger.sample(fraction) !== 'relieve') return;
    void relieveMemory().then((r) => {
      last = r;
      reliefs++;
      // The relief's own CPU must not count as load in the next interval.
      prev = process.cpuUsage();
      opts.onRelief?.(r);
    });
  }, intervalMs);
  timer.unref();
  return { stats: () => ({ reliefs, last, now: memoryBreakdown() }), stop: () => clearInterval(timer) };
}
