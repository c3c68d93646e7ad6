// nftables backend: applies the rendered ruleset in-process through
// libnftables (native addon), one transaction per apply.
import type { CaptureBackend, NetnsPath, ProgrammedState, VerifyResult } from './backend-types.js';
import type { RedirectPlan } from '../redirect/types.js';

export class NftablesBackend implements CaptureBackend {
  readonly name = 'nftables' as const;
  async apply(_netns: NetnsPath, _plan: RedirectPlan): Promise<void> { throw new Error('nftables backend: not implemented yet'); }
  async read(_netns: NetnsPath): Promise<ProgrammedState> { throw new Error('nftables backend: not implemented yet'); }
  async verify(_netns: NetnsPath, _plan: RedirectPlan): Promise<VerifyResult> { throw new Error('nftables backend: not implemented yet'); }
  async remove(_netns: NetnsPath): Promise<void> { throw new Error('nftables backend: not implemented yet'); }
}
