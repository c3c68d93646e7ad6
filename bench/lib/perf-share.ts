// Where a cgroup's CPU goes during one workload, by kernel function family:
// `perf record -a -e cpu-clock -G <cgroup>` samples every CPU but keeps only
// the cgroup's tasks (softirq work — loopback and veth receive — is counted
// when it runs in their context, as it mostly does on loopback), then perf
// report's per-symbol self shares are summed per family. Sampling perturbs
// latency, so benches run it on an extra, unmeasured pass.
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { rmSync } from 'node:fs';
import path from 'node:path';

/** Families of kernel symbols, tried in order (first match counts). */
export const SYMBOL_FAMILIES: readonly (readonly [string, RegExp])[] = [
  ['conntrack', /conntrack|^nf_ct_|^__nf_ct_|^nf_confirm$|^ipv[46]_confirm$|^tcp_in_window$|^resolve_normal_ct$|^hash_conntrack/],
  ['nat', /^(__)?nf_nat|^nft_nat|^nf_xfrm_me_harder$/],
  ['nftables', /^(__)?nft_|^nf_tables_/],
  ['netfilter hooks', /^nf_hook_slow$|^nf_hook$/],
  ['other netfilter', /^nf_|^__nf_|^ip6?t_|^xt_/],
  ['eBPF programs', /^bpf_prog_|^__cgroup_bpf_run|^bpf_sk_storage|^htab_|^bpf_lru/],
];

export interface PerfShare {
  samples: number;
  /** % of the cgroup's samples in the kernel, and per family (of all its samples). */
  kernel: number;
  families: Map<string, number>;
}

/** Sampling rate (per CPU): one sample ≈ 1/SAMPLE_HZ s of CPU. */
export const SAMPLE_HZ = 2999;

/**
 * Samples `cgroup` (absolute path under the cgroup2 mount `cgroupRoot`) for
 * `seconds`, starting `delayMs` from now (perf -D: skips a workload's start-up).
 */
export function sampleCgroup(cgroup: string, cgroupRoot: string, delayMs: number, seconds: number, file: string): Promise<PerfShare> {
  const rel = path.relative(cgroupRoot, cgroup);
  const args = ['record', '-q', '-a', '-F', String(SAMPLE_HZ), '-e', 'cpu-clock', '-G', rel, '-D', String(delayMs), '-o', file, '--', 'sleep', String(seconds + delayMs / 1000)];
  const perf = spawn('perf', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  perf.stderr.on('data', (d: Buffer) => { err += d; });
  return once(perf, 'exit').then(([code]) => {
    if (code !== 0) throw new Error(`perf record exited ${code}: ${err.trim()}`);
    try {
      return shares(file);
    } finally {
      rmSync(file, { force: true });
    }
  });
}

function shares(file: string): PerfShare {
  const report = execFileSync('perf', ['report', '-i', file, '--stdio', '--no-children', '-n', '--sort', 'sym', '-g', 'none', '--percent-limit', '0'], { encoding: 'utf8', maxBuffer: 64 << 20, stdio: ['ignore', 'pipe', 'ignore'] });
  const families = new Map(SYMBOL_FAMILIES.map(([name]) => [name, 0]));
  let samples = 0;
  let kernel = 0;
  // "  12.34%   123  [k] nf_conntrack_in": share, samples, [k]ernel or [.] user, symbol.
  for (const m of report.matchAll(/^\s+([\d.]+)%\s+(\d+)\s+\[(k|\.)\]\s+(\S+)/gm)) {
    samples += Number(m[2]);
    if (m[3] !== 'k') continue;
    const pct = Number(m[1]);
    kernel += pct;
    const family = SYMBOL_FAMILIES.find(([, rx]) => rx.test(m[4]));
    if (family) families.set(family[0], families.get(family[0])! + pct);
  }
  return { samples, kernel, families };
}
