// Where weir's eBPF programs live on a node, and getting them there: the
// cgroup2 directory they attach to, the bpffs directory their links and maps
// are pinned in, and a one-per-process "ensure" that loads the object and
// attaches (or atomically re-points) every pinned link.
//
// Attach point: the cgroup2 ROOT by default. Every socket on the node passes
// the programs, but they act only on sockets whose netns cookie has an entry
// in weir_pods (one hash lookup, then return): membership comes from the
// agent's CNI ADD, not from probing pods' listeners, and pods of any
// runtime/cgroup layout are covered, including the ones that predate the
// agent (repair writes their entries). The cost: a lookup on every connect/
// sendmsg/getsockopt of the host too. Per-pod cgroups would avoid that but
// need the runtime's cgroup path at ADD (not in the CNI request) and one
// attach per pod. `cgroup` is configurable (tests attach to a sub-cgroup of
// their own).
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { bpfAddon, bpfObjectPath, type BpfProgramState } from '../native/bpf-loader.js';
import { EBPF_LAYOUT_VERSION, EBPF_POD_PLAN_SIZE } from '../redirect/render-ebpf.js';

export const DEFAULT_BPF_PIN_DIR = '/sys/fs/bpf/weir';
export const PODS_MAP = 'weir_pods';
export const TUPLES_MAP = 'weir_tuples';
export const SOCKS_MAP = 'weir_socks';

export interface EbpfLocation {
  /** bpffs directory holding link_<program> and the maps. */
  pinDir: string;
  /** cgroup2 directory the programs attach to. */
  cgroup: string;
}

/** The program could not be loaded or attached: the reason, for the agent's fallback decision and for people. */
export class EbpfUnavailableError extends Error {
  readonly code: string;
  constructor(reason: string, code = 'EBPF_UNAVAILABLE', cause?: unknown) {
    super(`ebpf backend unavailable: ${reason}`, { cause });
    this.name = 'EbpfUnavailableError';
    this.code = code;
  }
}

function mounts(): { dir: string; type: string }[] {
  return readFileSync('/proc/self/mounts', 'utf8').split('\n').filter(Boolean).map((l) => {
    const f = l.split(' ');
    return { dir: f[1].replace(/\\040/g, ' '), type: f[2] };
  });
}

/** The cgroup2 mount: /sys/fs/cgroup on unified hosts, /sys/fs/cgroup/unified on hybrid ones. */
export function cgroup2Root(): string | undefined {
  const m = mounts().filter((x) => x.type === 'cgroup2').map((x) => x.dir);
  return m.includes('/sys/fs/cgroup') ? '/sys/fs/cgroup' : m[0];
}

export function defaultLocation(): EbpfLocation {
  const cgroup = cgroup2Root();
  if (!cgroup) throw new EbpfUnavailableError('no cgroup2 filesystem is mounted (cgroup/connect programs need cgroup v2)', 'ENOCGROUP2');
  return { pinDir: DEFAULT_BPF_PIN_DIR, cgroup };
}

/** Mounts bpffs at the pin dir's parent if it is not (idempotent; the DaemonSet mounts it from the host). */
function ensureBpffs(pinDir: string): void {
  const parent = path.dirname(pinDir);
  if (mounts().some((m) => m.dir === parent && m.type === 'bpf')) return;
  try {
    execFileSync('mount', ['-t', 'bpf', 'bpf', parent], { stdio: 'pipe' });
  } catch (e) {
    throw new EbpfUnavailableError(`${parent} is not a bpf filesystem and mounting one failed: ${String((e as { stderr?: Buffer }).stderr ?? e).trim()}`, 'ENOBPFFS', e);
  }
}

const ensured = new Map<string, BpfProgramState[]>();

/**
 * Loads the programs and attaches them at `loc` (or re-points the pinned
 * links of an earlier agent to them: no moment without capture). Once per
 * process and location. Throws EbpfUnavailableError with the reason.
 */
export function ensureEbpfLoaded(loc: EbpfLocation): BpfProgramState[] {
  const key = `${loc.pinDir}\0${loc.cgroup}`;
  const done = ensured.get(key);
  if (done) return done;
  let addon;
  let object;
  try {
    addon = bpfAddon();
    object = bpfObjectPath();
  } catch (e) {
    throw new EbpfUnavailableError((e as Error).message, 'ENOBUILD', e);
  }
  if (addon.podPlanSize !== EBPF_POD_PLAN_SIZE || addon.layoutVersion !== EBPF_LAYOUT_VERSION) {
    throw new EbpfUnavailableError(`loader addon layout ${addon.layoutVersion}/${addon.podPlanSize} bytes, this weir writes ${EBPF_LAYOUT_VERSION}/${EBPF_POD_PLAN_SIZE}: rebuild (npm run build:native)`, 'ELAYOUT');
  }
  ensureBpffs(loc.pinDir);
  try {
    const programs = addon.bpfEnsure(object, loc.pinDir, loc.cgroup);
    ensured.set(key, programs);
    return programs;
  } catch (e) {
    throw new EbpfUnavailableError((e as Error).message, (e as { code?: string }).code ?? 'ELOAD', e);
  }
}

/** True when weir's programs are pinned at `pinDir` (attached by this or an earlier agent). */
export function ebpfPinned(pinDir: string): boolean {
  return existsSync(path.join(pinDir, PODS_MAP));
}

/**
 * The order uninstall detaches links in: first the programs that capture
 * (connect, sendmsg), so no new connection is sent to a proxy; then sockops;
 * last the ones that answer for connections already captured (recvmsg's
 * source rewrite, getsockopt's original destination), so a connection
 * captured a moment before still finds its answer.
 */
const DETACH_ORDER = ['connect4', 'connect6', 'sendmsg4', 'sendmsg6', 'sockops', 'recvmsg4', 'recvmsg6', 'getsockopt'];
function detachRank(pin: string): number {
  const i = DETACH_ORDER.findIndex((p) => pin === `link_weir_${p}`);
  return i < 0 ? DETACH_ORDER.length : i;
}

/**
 * Detaches and removes everything weir pinned (uninstall). Each link is
 * detached explicitly (BPF_LINK_DETACH), in DETACH_ORDER, so capture stops
 * when this returns: merely unpinning leaves the kernel to free the link
 * from a workqueue, a moment later, in no particular order — a connection
 * made then could be captured by connect4 after getsockopt had gone. Where
 * the loader addon is not built or a detach fails, unpinning still detaches
 * (later); `detachErrors` says which.
 */
export function removeEbpfPins(pinDir: string, detachErrors: string[] = []): string[] {
  if (!existsSync(pinDir)) return [];
  // Only weir's own names (links first), never whatever else a wrong --bpf-pin-dir holds.
  const names = readdirSync(pinDir).filter((n) => /^(link_)?weir_[a-z0-9_]+$/.test(n))
    .sort((a, b) => Number(b.startsWith('link_')) - Number(a.startsWith('link_')) || detachRank(a) - detachRank(b) || a.localeCompare(b));
  for (const n of names.filter((x) => x.startsWith('link_'))) {
    try {
      bpfAddon().bpfDetachLink(path.join(pinDir, n));
    } catch (e) {
      detachErrors.push(`${n}: ${(e as Error).message}`);
    }
  }
  for (const n of names) rmSync(path.join(pinDir, n), { force: true });
  if (readdirSync(pinDir).length === 0) rmdirSync(pinDir);
  for (const key of [...ensured.keys()]) if (key.startsWith(`${pinDir}\0`)) ensured.delete(key);
  return names;
}
