// Typed access to weir_bpf.node, the eBPF loader addon (native/src/bpf/).
// A separate addon from weir_native.node so the proxy never maps libbpf;
// only the agent and the CLI load this, lazily, when the eBPF backend is used.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { locateAddon } from './addon.js';

export interface BpfProgramState { name: string; section: string; attachedNow: boolean }
/** runTimeNs/runCnt: the program's totals, counted only while run-time stats are on (bpfEnableStats). */
export interface BpfLinkInfo { linkId: number; progId: number; progName: string; cgroupId: bigint; attachType: number; runTimeNs: bigint; runCnt: bigint }
export interface NetnsAddressInfo { ifname: string; family: 4 | 6; bytes: Buffer; prefix: number }
export interface NetnsInfo { cookie: bigint; addresses: NetnsAddressInfo[] }

interface BpfAddon {
  bpfEnsure(object: string, pinDir: string, cgroup: string): BpfProgramState[];
  bpfProbe(object: string): BpfProgramState[];
  bpfReadLink(pinPath: string): BpfLinkInfo;
  /** Detaches the pinned link's program from its cgroup at once (BPF_LINK_DETACH); the pin stays. */
  bpfDetachLink(pinPath: string): void;
  /** Turns on per-program run-time stats until the returned fd is closed (BPF_ENABLE_STATS). */
  bpfEnableStats(): number;
  /** Names of the sk_msg programs attached to a pinned sockhash. */
  bpfMapMsgPrograms(pinPath: string): string[];
  bpfMapUpdate(pinPath: string, key: Uint8Array, value: Uint8Array): void;
  bpfMapLookup(pinPath: string, key: Uint8Array): Buffer | null;
  bpfMapDelete(pinPath: string, key: Uint8Array): boolean;
  bpfMapKeys(pinPath: string): Buffer[];
  netnsInfo(path: string): NetnsInfo;
  podPlanSize: number;
  layoutVersion: number;
}

export const BPF_ADDON_NOT_BUILT = 'weir eBPF loader not built: run `npm run build:native` (needs clang, libbpf-dev)';

/** native/build/Release, next to weir_native.node: weir_bpf.node and the programs' object weir.bpf.o. */
export function bpfBuildDir(): string | undefined {
  const fromEnv = process.env.WEIR_BPF_DIR;
  if (fromEnv) return fromEnv;
  const native = locateAddon();
  return native ? path.dirname(native) : undefined;
}

/** The compiled programs (bpf/weir.bpf.c). */
export function bpfObjectPath(): string {
  const dir = bpfBuildDir();
  const file = dir ? path.join(dir, 'weir.bpf.o') : undefined;
  if (!file || !existsSync(file)) throw Object.assign(new Error(`${BPF_ADDON_NOT_BUILT} (no weir.bpf.o)`), { code: 'ENOBUILD' });
  return file;
}

let addon: BpfAddon | undefined;

export function bpfAddon(): BpfAddon {
  if (addon) return addon;
  const dir = bpfBuildDir();
  const file = dir ? path.join(dir, 'weir_bpf.node') : undefined;
  if (!file || !existsSync(file)) throw Object.assign(new Error(BPF_ADDON_NOT_BUILT), { code: 'ENOBUILD' });
  addon = createRequire(import.meta.url)(file) as BpfAddon;
  return addon;
}
