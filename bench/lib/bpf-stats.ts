// What a connection costs in the kernel, per capture mode: the run time of
// each of weir's eBPF programs (src/netns/ebpf-stats.ts) and the CPU of a
// cgroup (cpu.stat: every process of the bench, softirq work included when
// it runs in their context), read before and after a workload.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { programTotals, type ProgramTotals } from '../../src/netns/ebpf-stats.js';

export { enableBpfStats } from '../../src/netns/ebpf-stats.js';

export interface KernelSnapshot { progs: Map<string, ProgramTotals>; userUs: number; systemUs: number }

/** Totals of every program linked under `pinDir` and of `cgroup`'s CPU. */
export function kernelSnapshot(pinDir: string, cgroup: string): KernelSnapshot {
  const stat = readFileSync(path.join(cgroup, 'cpu.stat'), 'utf8');
  const field = (k: string) => Number(new RegExp(`^${k} (\\d+)`, 'm').exec(stat)?.[1] ?? NaN);
  return { progs: programTotals(pinDir), userUs: field('user_usec'), systemUs: field('system_usec') };
}

export interface KernelCost {
  /** Per connection: ns and runs of each program. */
  progs: Map<string, ProgramTotals>;
  /** Per connection, µs of the cgroup's CPU. */
  userUs: number;
  systemUs: number;
}

/** (after − before) / connections. */
export function perConnection(before: KernelSnapshot, after: KernelSnapshot, connections: number): KernelCost {
  const progs = new Map<string, ProgramTotals>();
  for (const [name, a] of after.progs) {
    const b = before.progs.get(name) ?? { ns: 0, runs: 0 };
    progs.set(name, { ns: (a.ns - b.ns) / connections, runs: (a.runs - b.runs) / connections });
  }
  return { progs, userUs: (after.userUs - before.userUs) / connections, systemUs: (after.systemUs - before.systemUs) / connections };
}
