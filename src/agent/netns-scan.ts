// Maps pod UIDs to network namespaces by looking at processes, the way the
// kernel sees them: every /proc/<pid>/ns/net, with the pod UID from
// /proc/<pid>/cgroup. This finds pods whose sandbox was created before weir
// was there (node boot) and that the SandboxStore therefore never saw. The
// proc root is configurable because in the DaemonSet the host's /proc is
// mounted at /host/proc, and because tests build a small fake proc tree.
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';

export interface PodNetns {
  podUid: string;
  /** A path that opens the netns for as long as the process lives: <procRoot>/<pid>/ns/net. */
  netnsPath: string;
  /** Netns identity (inode of nsfs), to compare with other paths to the same netns. */
  inode: number;
  pid: number;
}

// kubelet cgroup names: cgroupfs driver ".../kubepods/burstable/pod<uid>/<ctr>",
// systemd driver ".../kubepods-burstable-pod<uid_with_underscores>.slice/...".
const POD_UID_RE = /kubepods[^\n]*?pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})/i;

/** The pod UID in a /proc/<pid>/cgroup text (v1 or v2, either driver), or undefined. */
export function podUidFromCgroup(text: string): string | undefined {
  const m = POD_UID_RE.exec(text);
  return m ? m[1].replace(/_/g, '-').toLowerCase() : undefined;
}

/** inode of the netns a path refers to, or undefined when it is gone. */
export async function netnsInode(path: string): Promise<number | undefined> {
  try {
    return (await stat(path)).ino;
  } catch {
    return undefined;
  }
}

/**
 * Every pod netns visible under procRoot, keyed by pod UID. Processes in the
 * host's netns (hostNetwork pods) are left out: there is nothing to capture
 * there. When several processes of one pod are found, the lowest pid (the
 * sandbox's pause process, normally) is used.
 */
export async function scanPodNetns(procRoot = '/proc'): Promise<Map<string, PodNetns>> {
  const out = new Map<string, PodNetns>();
  const hostInode = await netnsInode(join(procRoot, '1', 'ns', 'net'));
  let entries: string[];
  try {
    entries = await readdir(procRoot);
  } catch (e) {
    throw new Error(`host-proc: cannot read ${procRoot}: ${(e as Error).message}`);
  }
  const pids = entries.filter((e) => /^\d+$/.test(e)).map(Number).sort((a, b) => a - b);
  await Promise.all(pids.map(async (pid) => {
    let cgroup: string;
    try {
      cgroup = await readFile(join(procRoot, String(pid), 'cgroup'), 'utf8');
    } catch {
      return; // exited meanwhile, or not readable
    }
    const podUid = podUidFromCgroup(cgroup);
    if (!podUid) return;
    const netnsPath = join(procRoot, String(pid), 'ns', 'net');
    const inode = await netnsInode(netnsPath);
    if (inode === undefined || inode === hostInode) return;
    const prev = out.get(podUid);
    if (!prev || pid < prev.pid) out.set(podUid, { podUid, netnsPath, inode, pid });
  }));
  return out;
}

/** The netns inode of a process, or undefined. */
export function pidNetnsInode(pid: number, procRoot = '/proc'): Promise<number | undefined> {
  return netnsInode(join(procRoot, String(pid), 'ns', 'net'));
}

/** The pod UID of a process from its cgroup, or undefined. */
export async function pidPodUid(pid: number, procRoot = '/proc'): Promise<string | undefined> {
  try {
    return podUidFromCgroup(await readFile(join(procRoot, String(pid), 'cgroup'), 'utf8'));
  } catch {
    return undefined;
  }
}
