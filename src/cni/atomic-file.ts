// Atomic file replacement: write a temp file in the same directory, fsync it,
// rename over the target, fsync the directory. Readers (runtimes reading CNI
// confs, exec of the plugin binary, the agent after a crash) see either the
// old file or the new one, never a partial one.
import { open, rename, unlink, copyFile, chmod } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import path from 'node:path';

/** Temp names start with '.' and end in '.tmp' so libcni (which loads *.conf, *.conflist, *.json) never picks them up. */
export function tempPathFor(target: string): string {
  return path.join(path.dirname(target), `.${path.basename(target)}.${randomBytes(4).toString('hex')}.tmp`);
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try { await fh.sync(); } finally { await fh.close(); }
}

/** Thrown when writeFileAtomic's precondition fails; nothing was replaced. */
export class PreconditionFailed extends Error {}

/**
 * `precondition`, when given, runs after the temp file is durable and just
 * before the rename; returning false aborts (PreconditionFailed). It narrows
 * the window in which a concurrent writer's update could be overwritten.
 */
export async function writeFileAtomic(target: string, data: string | Buffer, mode = 0o644, precondition?: () => Promise<boolean>): Promise<void> {
  const tmp = tempPathFor(target);
  try {
    const fh = await open(tmp, 'wx', mode);
    try {
      await fh.writeFile(data);
      // open()'s mode is filtered by the umask; the caller's mode is what we promise.
      await fh.chmod(mode);
      await fh.sync();
    } finally {
      await fh.close();
    }
    if (precondition && !(await precondition())) throw new PreconditionFailed(`${target} changed while being rewritten`);
    await rename(tmp, target);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  await fsyncDir(path.dirname(target));
}

/** Copy a file (e.g. the plugin binary) atomically into place with `mode`. */
export async function copyFileAtomic(source: string, target: string, mode: number): Promise<void> {
  const tmp = tempPathFor(target);
  try {
    await copyFile(source, tmp);
    await chmod(tmp, mode);
    const fh = await open(tmp, 'r+');
    try { await fh.sync(); } finally { await fh.close(); }
    await rename(tmp, target);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  await fsyncDir(path.dirname(target));
}
