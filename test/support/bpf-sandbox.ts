// A test-owned home for weir's eBPF programs: a cgroup2 sub-cgroup (the
// programs attach there, never to the node's root cgroup) with this test
// process moved into it (children inherit it: socat, dnsmasq, proxies), and
// a pin directory of its own. destroy() detaches everything it attached.
import { mkdirSync, readFileSync, rmdirSync, writeFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { cgroup2Root, removeEbpfPins } from '../../src/netns/ebpf-loader.js';
import { uniq } from './netns.js';

export interface BpfSandbox {
  cgroup: string;
  pinDir: string;
  /** Moves a process (by pid) into the sandbox cgroup. */
  adopt(pid: number): void;
  destroy(): void;
}

function ownCgroup(root: string): string {
  const line = readFileSync('/proc/self/cgroup', 'utf8').split('\n').find((l) => l.startsWith('0::'));
  return path.join(root, (line ?? '0::/').slice(3));
}

export function createBpfSandbox(prefix = 'weir-t'): BpfSandbox {
  const root = cgroup2Root();
  if (!root) throw new Error('no cgroup2 mount');
  const home = ownCgroup(root);
  const name = uniq(prefix);
  const cgroup = path.join(root, name);
  const pinDir = path.join('/sys/fs/bpf', name);
  mkdirSync(cgroup);
  const adopt = (pid: number): void => writeFileSync(path.join(cgroup, 'cgroup.procs'), `${pid}\n`);
  adopt(process.pid);
  return {
    cgroup,
    pinDir,
    adopt,
    destroy() {
      removeEbpfPins(pinDir);
      // Back home first: a cgroup with processes cannot be removed. Any child
      // still inside is this test's own leak; move it out too.
      writeFileSync(path.join(home, 'cgroup.procs'), `${process.pid}\n`);
      if (!existsSync(cgroup)) return;
      for (const pid of readFileSync(path.join(cgroup, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) {
        try { writeFileSync(path.join(home, 'cgroup.procs'), `${pid}\n`); } catch { /* exited meanwhile */ }
      }
      // A process that just exited can hold the cgroup for a moment (zombie until reaped).
      for (let i = 0; ; i++) {
        try { rmdirSync(cgroup); return; } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'EBUSY' || i >= 50) throw e;
          Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
        }
      }
    },
  };
}
