// The one place a backend name becomes a backend.
import type { BackendName, CaptureBackend } from './backend-types.js';
import { IptablesBackend } from './iptables-backend.js';
import type { IptablesMode } from './iptables-detect.js';
import { NftablesBackend } from './nft-backend.js';
import { NFT_TABLES, NFT_TPROXY_TABLE, renderNftables, renderNftablesDefinition } from '../redirect/render-nftables.js';
import { existsSync } from 'node:fs';
import { nativeAvailable, nftRun } from '../native/addon.js';
import { TproxyRoutingBackend } from './tproxy-backend.js';
import { EbpfBackend, type EbpfOptions } from './ebpf-backend.js';
import { SelectingBackend, type EbpfFallback } from './backend-select.js';

export const DEFAULT_BACKEND: BackendName = 'nftables';
export const BACKEND_NAMES: readonly BackendName[] = ['nftables', 'iptables', 'ebpf'];

export interface BackendOptions {
  /** iptables only: nf_tables-backed or legacy (see iptables-detect.ts). Default nft. */
  iptablesMode?: IptablesMode;
  /** iptables only: directory for per-netns xtables lock files. */
  lockDir?: string;
  /** ebpf only: where the programs are pinned and attached (default /sys/fs/bpf/weir, the cgroup2 root), and the same-node shortcut (default off). */
  ebpf?: EbpfOptions;
  /** ebpf only, through selectingBackend: nftables (default) or fail closed when the programs cannot load. */
  ebpfFallback?: EbpfFallback;
  onEbpfFallback?(reason: string): void;
}

export function parseBackendName(value: string, field = 'backend'): BackendName {
  if ((BACKEND_NAMES as readonly string[]).includes(value)) return value as BackendName;
  throw new Error(`${field}: must be one of ${BACKEND_NAMES.join(', ')} (bad value: ${JSON.stringify(value)})`);
}

/**
 * Whether a netns may hold weir's TPROXY rules (and so policy routing to
 * keep in step), from one in-process `list tables`: nftables has the
 * weir_tproxy table, iptables-nft a mangle table. Legacy iptables is
 * invisible to nft, and any doubt counts as yes (the slow, exact path).
 */
async function mayHaveTproxy(netns: string, tables: RegExp, visibleToNft: boolean): Promise<boolean> {
  if (!existsSync(netns)) return false;
  if (!visibleToNft || !nativeAvailable()) return true;
  try {
    return tables.test(await nftRun(netns, 'list tables'));
  } catch {
    return true;
  }
}

export function getBackend(name: BackendName = DEFAULT_BACKEND, opts: BackendOptions = {}): CaptureBackend {
  switch (name) {
    case 'nftables': {
      const rules = new NftablesBackend({ render: renderNftables, renderDefinition: renderNftablesDefinition, tables: NFT_TABLES });
      const tproxyTable = new RegExp(`^table inet ${NFT_TPROXY_TABLE}$`, 'm');
      return new TproxyRoutingBackend(rules, { hasTproxy: (netns) => mayHaveTproxy(netns, tproxyTable, true) });
    }
    case 'iptables': {
      const rules = new IptablesBackend({ mode: opts.iptablesMode, lockDir: opts.lockDir });
      return new TproxyRoutingBackend(rules, { hasTproxy: (netns) => mayHaveTproxy(netns, /^table ip6? mangle$/m, rules.mode === 'nft') });
    }
    case 'ebpf':
      return new EbpfBackend(opts.ebpf);
    default:
      throw new Error(`backend: unknown backend ${JSON.stringify(name)}`);
  }
}

/**
 * The agent's backend: the default for every pod, the pod's weir.io/backend
 * annotation when it has one, and the ebpf fallback policy.
 */
export function selectingBackend(defaultBackend: BackendName, opts: BackendOptions = {}): SelectingBackend {
  return new SelectingBackend({
    defaultBackend,
    create: (name) => getBackend(name, opts),
    ebpfFallback: opts.ebpfFallback ?? 'nftables',
    onFallback: opts.onEbpfFallback,
  });
}
