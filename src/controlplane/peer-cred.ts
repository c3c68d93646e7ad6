// The pid of the process at the other end of an accepted unix socket, from
// the kernel (SO_PEERCRED), never from anything the peer says. Uses the
// native addon when it is built; otherwise asks the kernel through sock_diag
// (`ss -xp`), matching our socket's inode to its peer's.
import { execFile } from 'node:child_process';
import { fstatSync } from 'node:fs';
import type { Socket } from 'node:net';
import { nativeAvailable, peerCred as nativePeerCred, socketFd } from '../native/addon.js';

function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { maxBuffer: 32 * 1024 * 1024 }, (err, stdout) => (err ? reject(err) : resolve(stdout)));
  });
}

/** ss -xp fallback: our inode → peer inode → the process holding the peer inode. */
async function peerPidViaSockDiag(fd: number): Promise<number | undefined> {
  const ourInode = fstatSync(fd).ino;
  const out = await run('ss', ['-xpnH']);
  // Columns: Netid State Recv-Q Send-Q Local-Address Port Peer-Address Port [users:(...)]
  let peerInode: number | undefined;
  const pidByInode = new Map<number, number>();
  for (const line of out.split('\n')) {
    const cols = line.trim().split(/\s+/);
    if (cols.length < 8) continue;
    const local = Number(cols[5]);
    const peer = Number(cols[7]);
    const pid = /pid=(\d+)/.exec(line)?.[1];
    if (pid) pidByInode.set(local, Number(pid));
    if (local === ourInode) peerInode = peer;
  }
  return peerInode !== undefined ? pidByInode.get(peerInode) : undefined;
}

export async function peerPid(sock: Socket): Promise<{ pid: number; via: 'SO_PEERCRED' | 'sock_diag' } | undefined> {
  const fd = socketFd(sock);
  if (nativeAvailable()) {
    const c = nativePeerCred(fd);
    return c.pid > 0 ? { pid: c.pid, via: 'SO_PEERCRED' } : undefined;
  }
  const pid = await peerPidViaSockDiag(fd);
  return pid ? { pid, via: 'sock_diag' } : undefined;
}
