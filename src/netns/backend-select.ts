// Per-pod backend choice: the pod's weir.io/backend annotation (plan.backend),
// else the agent's default. The ebpf backend falls back to nftables, or
// fails closed, when its programs cannot be loaded (EbpfUnavailableError);
// the reason is reported through onFallback once per distinct reason.
import type { BackendName, CaptureBackend, ProgrammedState, SandboxTarget, VerifyResult } from './backend-types.js';
import { EbpfBackend } from './ebpf-backend.js';
import { EbpfUnavailableError, ebpfPinned } from './ebpf-loader.js';
import type { RedirectPlan } from '../redirect/types.js';

/** What to do for an ebpf pod when the programs cannot be loaded. */
export type EbpfFallback = 'nftables' | 'fail';
export const EBPF_FALLBACKS: readonly EbpfFallback[] = ['nftables', 'fail'];

export interface SelectingOptions {
  defaultBackend: BackendName;
  /** A backend by name (created once each, lazily). */
  create(name: BackendName): CaptureBackend;
  ebpfFallback: EbpfFallback;
  onFallback?(reason: string): void;
}

export class SelectingBackend implements CaptureBackend {
  readonly name: BackendName;
  private readonly made = new Map<BackendName, CaptureBackend>();
  private readonly reported = new Set<string>();

  constructor(private readonly opts: SelectingOptions) {
    this.name = opts.defaultBackend;
  }

  backend(name: BackendName): CaptureBackend {
    let b = this.made.get(name);
    if (!b) {
      b = this.opts.create(name);
      this.made.set(name, b);
    }
    return b;
  }

  /** The backend that programs `plan` now (ebpf only when its programs load, or fail closed). */
  choose(plan: RedirectPlan): CaptureBackend {
    const wanted = plan.backend ?? this.opts.defaultBackend;
    if (wanted !== 'ebpf') return this.backend(wanted);
    const ebpf = this.backend('ebpf') as EbpfBackend;
    try {
      ebpf.ensureLoaded();
      return ebpf;
    } catch (e) {
      if (!(e instanceof EbpfUnavailableError) || this.opts.ebpfFallback === 'fail') throw e;
      if (!this.reported.has(e.message)) {
        this.reported.add(e.message);
        this.opts.onFallback?.(`${e.message}; falling back to nftables`);
      }
      return this.backend('nftables');
    }
  }

  async apply(target: SandboxTarget, plan: RedirectPlan): Promise<void> {
    const chosen = this.choose(plan);
    await chosen.apply(target, plan);
    // Leaving ebpf: the map entry would keep redirecting connects.
    if (chosen.name !== 'ebpf') await this.removeEbpfEntry(target);
  }

  async read(target: SandboxTarget): Promise<ProgrammedState> {
    const ebpf = await this.ebpfIfPinned();
    if (ebpf) {
      const state = await ebpf.read(target);
      if (state.planHash !== undefined) return state;
    }
    return this.backend(this.opts.defaultBackend === 'ebpf' ? 'nftables' : this.opts.defaultBackend).read(target);
  }

  async verify(target: SandboxTarget, plan: RedirectPlan): Promise<VerifyResult> {
    return this.choose(plan).verify(target, plan);
  }

  async remove(target: SandboxTarget): Promise<void> {
    await this.removeEbpfEntry(target);
    const rules = this.opts.defaultBackend === 'ebpf' ? 'nftables' : this.opts.defaultBackend;
    await this.backend(rules).remove(target);
    if (rules !== 'nftables' && this.made.has('nftables')) await this.backend('nftables').remove(target);
  }

  private async ebpfIfPinned(): Promise<EbpfBackend | undefined> {
    const ebpf = this.backend('ebpf') as EbpfBackend;
    return ebpfPinned(ebpf.location.pinDir) ? ebpf : undefined;
  }

  private async removeEbpfEntry(target: SandboxTarget): Promise<void> {
    const ebpf = await this.ebpfIfPinned();
    if (!ebpf) return;
    try {
      ebpf.removeEntry(target);
    } catch (e) {
      if ((e as { code?: string }).code !== 'ENOENT' && (e as { code?: string }).code !== 'ENOBUILD') throw e;
    }
  }
}
