// The eBPF capture backend: a captured pod is one entry in the pinned
// weir_pods map (key: its netns cookie; value: render-ebpf.ts's encoding of
// the plan), written with ONE map update, so the programs see the old entry
// or the new one, never a mix. Inbound stays on a minimal nftables ruleset
// (inboundOnlyPlan): packets from other hosts never pass this pod's socket
// hooks before reaching a listener, and the proxy's hand-off to its own pod
// address needs the output NAT the nft backend already does.
//
// Order: apply writes the map entry first, then the nft inbound ruleset, so
// a pod switching from nftables to ebpf has capture at every moment (with
// both present, the connect hook has already pointed the app at 127.0.0.1,
// which the nft output chain passes). remove deletes the entry, then the
// nft tables.
import path from 'node:path';
import type { CaptureBackend, ProgrammedState, SandboxTarget, VerifyResult } from './backend-types.js';
import { bpfAddon, type NetnsInfo } from '../native/bpf-loader.js';
import {
  decodeEbpfEntry, encodeEbpfEntry, formatAddress, formatEbpfEntry, inboundOnlyPlan, renderEbpfEntry, type EbpfEntryOptions, type NetnsAddress,
} from '../redirect/render-ebpf.js';
import type { RedirectPlan } from '../redirect/types.js';
import { DEFAULT_BPF_PIN_DIR, defaultLocation, ebpfPinned, ensureEbpfLoaded, PODS_MAP, SOCKS_MAP, type EbpfLocation } from './ebpf-loader.js';
import { NftablesBackend } from './nft-backend.js';

/** Where the programs live, and whether pods get the same-node shortcut (default off). */
export type EbpfOptions = Partial<EbpfLocation> & EbpfEntryOptions;

export class EbpfBackend implements CaptureBackend {
  readonly name = 'ebpf' as const;
  private readonly inbound: CaptureBackend;

  private readonly loc: Partial<EbpfLocation> & { pinDir: string };
  private readonly entryOptions: EbpfEntryOptions;

  /** Defaults: pins under /sys/fs/bpf/weir, programs on the cgroup2 root (found when first needed), shortcut off. */
  constructor(opts: EbpfOptions = {}, inbound: CaptureBackend = new NftablesBackend()) {
    const { shortcut, ...loc } = opts;
    this.loc = { ...loc, pinDir: loc.pinDir ?? DEFAULT_BPF_PIN_DIR };
    this.entryOptions = shortcut === undefined ? {} : { shortcut };
    this.inbound = inbound;
  }

  get location(): Partial<EbpfLocation> & { pinDir: string } {
    return this.loc;
  }

  /** Loads/attaches the programs if this process has not yet (throws EbpfUnavailableError). */
  ensureLoaded(): void {
    this.loc.cgroup ??= defaultLocation().cgroup;
    ensureEbpfLoaded({ pinDir: this.loc.pinDir, cgroup: this.loc.cgroup });
  }

  private mapPath(): string {
    return path.join(this.loc.pinDir, PODS_MAP);
  }

  async apply(target: SandboxTarget, plan: RedirectPlan): Promise<void> {
    const info = netnsOf(target.netnsPath);
    const entry = renderEbpfEntry(plan, addressesOf(info), this.entryOptions);
    this.ensureLoaded();
    bpfAddon().bpfMapUpdate(this.mapPath(), cookieKey(info.cookie), encodeEbpfEntry(entry));
    await this.inbound.apply(target, inboundOnlyPlan(plan));
  }

  /** The entry's canonical text, or undefined when the netns has none. */
  readEntry(target: SandboxTarget): { cookie: bigint; listing?: string; planHash?: string } {
    const info = netnsOf(target.netnsPath);
    if (!ebpfPinned(this.loc.pinDir)) return { cookie: info.cookie };
    const value = bpfAddon().bpfMapLookup(this.mapPath(), cookieKey(info.cookie));
    if (!value) return { cookie: info.cookie };
    const entry = decodeEbpfEntry(value);
    return { cookie: info.cookie, listing: formatEbpfEntry(entry), planHash: entry.planHash };
  }

  async read(target: SandboxTarget): Promise<ProgrammedState> {
    const mine = this.readEntry(target);
    const nft = await this.inbound.read(target);
    const state: ProgrammedState = {
      backend: 'ebpf',
      present: mine.listing !== undefined || nft.present,
      listing: `${mine.listing ?? '# no ebpf map entry\n'}${nft.listing}`,
    };
    if (mine.planHash) state.planHash = mine.planHash;
    return state;
  }

  async verify(target: SandboxTarget, plan: RedirectPlan): Promise<VerifyResult> {
    const info = netnsOf(target.netnsPath);
    const expected = formatEbpfEntry(renderEbpfEntry(plan, addressesOf(info), this.entryOptions));
    const actual = this.readEntry(target).listing;
    const differences: string[] = [];
    if (actual === undefined) {
      differences.push(`missing: ebpf map entry for netns cookie ${info.cookie} (${this.mapPath()})`);
    } else if (actual !== expected) {
      const want = expected.split('\n');
      const got = new Set(actual.split('\n'));
      for (const l of want) if (!got.has(l)) differences.push(`missing: ebpf ${l.trim()}`);
      const wantSet = new Set(want);
      for (const l of actual.split('\n')) if (!wantSet.has(l)) differences.push(`unexpected: ebpf ${l.trim()}`);
    }
    if (ebpfPinned(this.loc.pinDir)) {
      // An entry without attached programs captures nothing.
      for (const prog of ['weir_connect4', 'weir_connect6', 'weir_getsockopt', 'weir_sockops']) {
        try {
          bpfAddon().bpfReadLink(path.join(this.loc.pinDir, `link_${prog}`));
        } catch (e) {
          differences.push(`missing: ebpf program ${prog} (${(e as Error).message})`);
        }
      }
      // The shortcut's sk_msg hangs off the sockhash, not a link.
      if (this.entryOptions.shortcut) {
        let names: string[] = [];
        try { names = bpfAddon().bpfMapMsgPrograms(path.join(this.loc.pinDir, SOCKS_MAP)); } catch { /* no map: reported below */ }
        if (!names.includes('weir_sk_msg')) differences.push(`missing: ebpf program weir_sk_msg (sk_msg on ${SOCKS_MAP})`);
      }
    }
    const nft = await this.inbound.verify(target, inboundOnlyPlan(plan));
    differences.push(...nft.differences);
    return { ok: differences.length === 0, differences };
  }

  async remove(target: SandboxTarget): Promise<void> {
    this.removeEntry(target);
    await this.inbound.remove(target);
  }

  /** Deletes the netns's map entry only; false when there was none. */
  removeEntry(target: SandboxTarget): boolean {
    let info: NetnsInfo;
    try {
      info = netnsOf(target.netnsPath);
    } catch (e) {
      // The netns is gone: its cookie can never match a socket again.
      if ((e as { code?: string }).code === 'ENOENT') return false;
      throw e;
    }
    return ebpfPinned(this.loc.pinDir) && bpfAddon().bpfMapDelete(this.mapPath(), cookieKey(info.cookie));
  }

  /** Every entry in the map (rules show --all, garbage collection). */
  listEntries(): { cookie: bigint; listing: string }[] {
    if (!ebpfPinned(this.loc.pinDir)) return [];
    const addon = bpfAddon();
    return addon.bpfMapKeys(this.mapPath()).flatMap((k) => {
      const v = addon.bpfMapLookup(this.mapPath(), k);
      return v ? [{ cookie: k.readBigUInt64LE(0), listing: formatEbpfEntry(decodeEbpfEntry(v)) }] : [];
    });
  }
}

function netnsOf(netnsPath: string): NetnsInfo {
  return bpfAddon().netnsInfo(netnsPath);
}

function addressesOf(info: NetnsInfo): NetnsAddress[] {
  return info.addresses.map((a) => ({ ifname: a.ifname, family: a.family, address: formatAddress(a.bytes), prefix: a.prefix }));
}

/** The map key: the u64 netns cookie in host (little-endian) order. */
function cookieKey(cookie: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(cookie);
  return b;
}
