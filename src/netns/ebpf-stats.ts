// What weir's eBPF programs cost: the kernel's per-program run time and run
// count, read from the pinned links (link_<program>). The kernel counts them
// only while run-time stats are on; enableBpfStats() turns them on through a
// BPF_ENABLE_STATS fd (counted per holder, off again when the holder closes
// it or exits) rather than the kernel.bpf_stats_enabled sysctl, which a
// crashed caller would leave on for the whole node.
import { closeSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { bpfAddon } from '../native/bpf-loader.js';

export interface ProgramTotals { ns: number; runs: number }

/** Turns run-time stats on; the returned function turns them off again. */
export function enableBpfStats(): () => void {
  const fd = bpfAddon().bpfEnableStats();
  return () => closeSync(fd);
}

/** Totals since load of every program linked under `pinDir`, by program name. */
export function programTotals(pinDir: string): Map<string, ProgramTotals> {
  const out = new Map<string, ProgramTotals>();
  for (const n of readdirSync(pinDir).filter((x) => x.startsWith('link_'))) {
    const l = bpfAddon().bpfReadLink(path.join(pinDir, n));
    out.set(l.progName, { ns: Number(l.runTimeNs), runs: Number(l.runCnt) });
  }
  return out;
}
