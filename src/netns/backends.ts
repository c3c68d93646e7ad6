// The one place a backend name becomes a backend.
import type { BackendName, CaptureBackend } from './backend-types.js';
import { IptablesBackend } from './iptables-backend.js';
import type { IptablesMode } from './iptables-detect.js';
import { NftablesBackend } from './nft-backend.js';
import { NFT_TABLES, renderNftables, renderNftablesDefinition } from '../redirect/render-nftables.js';

export const DEFAULT_BACKEND: BackendName = 'nftables';
export const BACKEND_NAMES: readonly BackendName[] = ['nftables', 'iptables'];

export interface BackendOptions {
  /** iptables only: nf_tables-backed or legacy (see iptables-detect.ts). Default nft. */
  iptablesMode?: IptablesMode;
  /** iptables only: directory for per-netns xtables lock files. */
  lockDir?: string;
}

export function parseBackendName(value: string, field = 'backend'): BackendName {
  if ((BACKEND_NAMES as readonly string[]).includes(value)) return value as BackendName;
  throw new Error(`${field}: must be one of ${BACKEND_NAMES.join(', ')} (bad value: ${JSON.stringify(value)})`);
}

export function getBackend(name: BackendName = DEFAULT_BACKEND, opts: BackendOptions = {}): CaptureBackend {
  switch (name) {
    case 'nftables':
      return new NftablesBackend({ render: renderNftables, renderDefinition: renderNftablesDefinition, tables: NFT_TABLES });
    case 'iptables':
      return new IptablesBackend({ mode: opts.iptablesMode, lockDir: opts.lockDir });
    default:
      throw new Error(`backend: unknown backend ${JSON.stringify(name)}`);
  }
}
