// `weir precheck` for the eBPF backend: the facts it needs, each probed for
// real: a cgroup2 mount to attach to, bpffs to pin in, and the kernel
// accepting every one of weir's programs (loaded, verified, then dropped:
// nothing is attached or pinned).
import { readFileSync } from 'node:fs';
import { bpfAddon, bpfObjectPath } from '../../native/bpf-loader.js';
import { cgroup2Root, DEFAULT_BPF_PIN_DIR, ebpfPinned } from '../../netns/ebpf-loader.js';
import type { CheckLine } from './checks.js';

export function ebpfChecks(): CheckLine[] {
  const lines: CheckLine[] = [];
  const cg = cgroup2Root();
  lines.push(cg
    ? { check: 'cgroup2', status: 'ok', detail: `mounted at ${cg}${cg === '/sys/fs/cgroup' ? '' : ' (hybrid hierarchy)'}` }
    : { check: 'cgroup2', status: 'warn', detail: 'no cgroup2 mount', fix: 'the ebpf backend attaches to cgroup v2: mount -t cgroup2 none /sys/fs/cgroup/unified (or boot with the unified hierarchy)' });
  let mounts = '';
  try { mounts = readFileSync('/proc/mounts', 'utf8'); } catch { /* not Linux /proc */ }
  const bpffs = /\s\/sys\/fs\/bpf\sbpf\s/.test(mounts);
  lines.push({
    check: 'bpffs', status: bpffs ? 'ok' : 'warn',
    detail: bpffs ? `mounted at /sys/fs/bpf${ebpfPinned(DEFAULT_BPF_PIN_DIR) ? `; weir's programs are pinned in ${DEFAULT_BPF_PIN_DIR}` : ''}` : 'not mounted at /sys/fs/bpf',
    fix: bpffs ? undefined : 'mount -t bpf bpf /sys/fs/bpf (the agent mounts it itself when it can; the DaemonSet mounts the host\'s)',
  });
  try {
    const programs = bpfAddon().bpfProbe(bpfObjectPath());
    lines.push({
      check: 'backend ebpf', status: cg ? 'ok' : 'fail',
      detail: `the kernel accepts weir's ${programs.length} programs (${programs.map((p) => p.section).join(', ')})${cg ? '' : ', but there is no cgroup2 to attach them to'}`,
    });
  } catch (e) {
    lines.push({ check: 'backend ebpf', status: 'fail', detail: (e as Error).message.split('\n')[0].slice(0, 400), fix: 'needs Linux 5.15+ with BPF_SYSCALL, CGROUP_BPF and BTF; the agent falls back to nftables (--ebpf-fallback nftables) or fails ebpf pods closed (fail)' });
  }
  return lines;
}
