// Where capture may be programmed: only into a pod's own network namespace.
// A CNI_NETNS that is the node's netns (or the agent's, which with
// hostNetwork is the same) would DNAT the node's own traffic to a proxy that
// does not exist there — the whole node loses its network. A path that is
// not a network namespace at all would be entered by nsenter/setns with a
// confusing error, or worse, silently "work" on another namespace type.
// So before anything is written: the file must be an nsfs inode, of type
// network (the addon's NS_GET_NSTYPE check), and not the same inode as any
// forbidden namespace (same dev+ino = same namespace).
import { stat } from 'node:fs/promises';
import { CniCode, CniError } from '../cni/spec.js';
import { nativeAvailable, nftRun } from '../native/addon.js';

export interface ForbiddenNetns { path: string; what: string }

/** The namespaces an agent must never program: its own, and the host's as seen through the host's /proc. */
export function defaultForbidden(hostProc = '/proc'): ForbiddenNetns[] {
  const host = [...new Set([`${hostProc}/1/ns/net`, '/proc/1/ns/net'])].map((path) => ({ path, what: 'the host\'s network namespace' }));
  return [{ path: '/proc/self/ns/net', what: 'the weir agent\'s own network namespace' }, ...host];
}

const refuse = (netns: string, why: string): never => {
  throw new CniError(CniCode.invalidEnv, `CNI_NETNS: ${netns} ${why}; weir programs capture only into a pod's own network namespace`);
};

/** Returns a check that throws CniError (code 4, naming CNI_NETNS) unless `netns` is a pod network namespace. */
export function createNetnsGuard(forbidden: ForbiddenNetns[] = defaultForbidden()): (netns: string) => Promise<void> {
  return async (netns: string) => {
    let target;
    try {
      target = await stat(netns);
    } catch (e) {
      refuse(netns, `cannot be examined (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    // Every namespace file lives on the kernel's one nsfs superblock.
    const nsfs = await stat('/proc/self/ns/net');
    if (target!.dev !== nsfs.dev) refuse(netns, 'is not a network namespace (not a namespace file)');
    for (const f of forbidden) {
      const other = await stat(f.path).catch(() => undefined);
      if (other && other.dev === target!.dev && other.ino === target!.ino) refuse(netns, `is ${f.what}`);
    }
    if (nativeAvailable()) {
      try {
        await nftRun(netns, 'list tables');
      } catch (e) {
        if ((e as { code?: string }).code === 'ENOTNETNS') refuse(netns, 'is a namespace file but not a network namespace');
        throw e;
      }
    }
  };
}
