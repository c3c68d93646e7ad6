// `weir uninstall`: the explicit end of weir on a node. The agent keeps its
// CNI chain entry when it stops (so a pod that must be captured is never
// started uncaptured during a rollout, and new pods fail closed with CNI
// code 11 while no agent runs); removing weir for good is therefore a step of
// its own: drop weir-cni from every conf in the CNI conf dir (the primary
// CNI's plugins stay exactly as they are), delete weir's standalone conf,
// and delete the weir-cni binary. Running pods keep working: their capture
// points at their own proxy. Idempotent; refuses while an agent is serving.
// The ebpf backend's pinned programs and maps are removed too, which
// detaches them: pods on that backend go uncaptured (their nft inbound
// tables stay until the pods go).
import { readdir, readFile, unlink } from 'node:fs/promises';
import { connect } from 'node:net';
import path from 'node:path';
import { writeFileAtomic, PreconditionFailed } from '../cni/atomic-file.js';
import { CONF_EXTENSIONS, pluginsOf, readConf, unchainedConf, weirEntryIndex } from './installer-conf.js';
import { PLUGIN_TYPE } from './installer.js';
import { DEFAULT_BPF_PIN_DIR, removeEbpfPins } from '../netns/ebpf-loader.js';

export interface UninstallOptions {
  confDir: string;
  binDir: string;
  /** The agent's run dir: uninstall refuses while an agent answers on its cni.sock (it would chain again). */
  runDir?: string;
  /** Uninstall even though an agent is serving. */
  force?: boolean;
  /** Where the ebpf backend pinned its programs and maps (removed: that detaches them). Default /sys/fs/bpf/weir. */
  bpfPinDir?: string;
}

export interface UninstallReport {
  /** Conf files weir-cni was removed from (the primary CNI's plugins kept). */
  unchained: string[];
  /** Conf files that held only weir (standalone mode), deleted. */
  deleted: string[];
  /** The weir-cni binary, when it was there and is now gone. */
  binaryRemoved?: string;
  /** ebpf pins removed (links detached from the cgroup, maps freed); pods on the ebpf backend are no longer captured. */
  ebpfRemoved: string[];
  /** Links that could not be detached at once (they detach when the kernel frees them, a moment later). */
  ebpfDetachErrors: string[];
}

export class UninstallRefused extends Error {}

/** True when something accepts connections on `socket` (a running agent). */
function answers(socket: string, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(socket);
    const done = (v: boolean): void => { clearTimeout(t); s.destroy(); resolve(v); };
    const t = setTimeout(() => done(false), timeoutMs);
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

export async function uninstall(o: UninstallOptions): Promise<UninstallReport> {
  if (o.runDir && !o.force) {
    const sock = path.join(o.runDir, 'cni.sock');
    if (await answers(sock)) {
      throw new UninstallRefused(`a weir agent is still serving at ${sock}; it would chain weir-cni again. Delete the DaemonSet first (kubectl delete -k daemonset/), or pass --force`);
    }
  }
  const ebpfDetachErrors: string[] = [];
  const ebpfRemoved = removeEbpfPins(o.bpfPinDir ?? DEFAULT_BPF_PIN_DIR, ebpfDetachErrors);
  const report: UninstallReport = { unchained: [], deleted: [], ebpfRemoved, ebpfDetachErrors };
  let names: string[] = [];
  try {
    names = await readdir(o.confDir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  for (const name of names.filter((n) => !n.startsWith('.') && CONF_EXTENSIONS.includes(path.extname(n))).sort()) {
    const file = path.join(o.confDir, name);
    const conf = await readConf(file);
    if (!conf || weirEntryIndex(conf, PLUGIN_TYPE) < 0) continue;
    if (pluginsOf(conf).every((p) => p.type === PLUGIN_TYPE)) {
      await unlink(file).catch((e: NodeJS.ErrnoException) => { if (e.code !== 'ENOENT') throw e; });
      report.deleted.push(file);
      continue;
    }
    // Never overwrite a rewrite by the primary CNI that landed after the read.
    const unchanged = async (): Promise<boolean> => (await readFile(file, 'utf8').catch(() => undefined)) === conf.text;
    try {
      await writeFileAtomic(file, JSON.stringify(unchainedConf(conf, PLUGIN_TYPE), null, 2) + '\n', conf.mode, unchanged);
    } catch (e) {
      if (e instanceof PreconditionFailed) throw new Error(`${file} changed while weir-cni was being removed from it; run weir uninstall again`);
      throw e;
    }
    report.unchained.push(file);
  }
  const binary = path.join(o.binDir, PLUGIN_TYPE);
  try {
    await unlink(binary);
    report.binaryRemoved = binary;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  return report;
}
