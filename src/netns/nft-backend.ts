// nftables backend: applies the rendered ruleset in-process through
// libnftables (native addon), one transaction per apply; reads back and
// verifies against the kernel's own listing.
import { createHash } from 'node:crypto';
import type { CaptureBackend, NetnsPath, ProgrammedState, VerifyResult } from './backend-types.js';
import type { RedirectPlan } from '../redirect/types.js';
import { nftCanonical, nftRun, type NativeError } from './native.js';
import { diffTables, parseNftListing, planHashOf, type NftTable } from './nft-listing.js';

/** What the backend needs from the nftables renderer (src/redirect/render-nftables.ts). */
export interface NftRenderer {
  /** Complete script that atomically replaces weir's tables when run as one transaction. */
  render(plan: RedirectPlan): string;
  /** Names of weir's tables, all in family `inet`. */
  tables: readonly string[];
}

/** Errors from the kernel side keep libnftables' text and add where it happened. */
export class NftBackendError extends Error {
  readonly code: string;
  readonly netns: string;
  constructor(action: string, netns: string, cause: NativeError) {
    super(`nftables ${action} in ${netns} failed: ${cause.message}`, { cause });
    this.name = 'NftBackendError';
    this.code = cause.code;
    this.netns = netns;
  }
}

const FAMILY = 'inet';
/** Distinct plans on a node are few (they differ only by annotations). */
const CANONICAL_CACHE_SIZE = 64;

export class NftablesBackend implements CaptureBackend {
  readonly name = 'nftables' as const;
  private readonly renderer: NftRenderer;
  private readonly canonical = new Map<string, Promise<NftTable[]>>();

  constructor(renderer: NftRenderer) {
    if (renderer.tables.length === 0) throw new Error('NftablesBackend: renderer.tables must name at least one table');
    for (const t of renderer.tables) {
      if (!/^[A-Za-z][A-Za-z0-9_]*$/.test(t)) throw new Error(`NftablesBackend: renderer.tables: invalid table name ${JSON.stringify(t)}`);
    }
    this.renderer = renderer;
  }

  async apply(netns: NetnsPath, plan: RedirectPlan): Promise<void> {
    const script = this.renderer.render(plan);
    try {
      await nftRun(netns, script);
    } catch (e) {
      throw new NftBackendError('apply', netns, e as NativeError);
    }
  }

  async read(netns: NetnsPath): Promise<ProgrammedState> {
    const tables = await this.readTables(netns);
    const state: ProgrammedState = {
      backend: 'nftables',
      present: tables.length > 0,
      listing: tables.map((t) => t.text).join(''),
    };
    const hash = planHashOf(tables);
    if (hash !== undefined) state.planHash = hash;
    return state;
  }

  async verify(netns: NetnsPath, plan: RedirectPlan): Promise<VerifyResult> {
    const [expected, actual] = await Promise.all([this.expectedTables(plan), this.readTables(netns)]);
    const differences = diffTables(expected, actual);
    return { ok: differences.length === 0, differences };
  }

  async remove(netns: NetnsPath): Promise<void> {
    // "add" then "delete" in one batch: deleting works whether or not the
    // table exists, and nothing outside weir's tables is touched.
    const script = this.renderer.tables.map((t) => `add table ${FAMILY} ${t}\ndelete table ${FAMILY} ${t}\n`).join('');
    try {
      await nftRun(netns, script);
    } catch (e) {
      // The pod is gone (CNI DEL after the netns was deleted): nothing to remove.
      // (nft's own failures carry code ENFT; ENOENT only comes from opening the path.)
      if ((e as NativeError).code === 'ENOENT') return;
      throw new NftBackendError('remove', netns, e as NativeError);
    }
  }

  /** weir's tables in the netns, as the kernel lists them. */
  private async readTables(netns: NetnsPath): Promise<NftTable[]> {
    let text: string;
    try {
      // One listing of the whole ruleset (one netlink dump) rather than one
      // `list table` per table, which fails for absent tables and can race.
      text = await nftRun(netns, 'list ruleset');
    } catch (e) {
      throw new NftBackendError('read', netns, e as NativeError);
    }
    return this.weirTables(parseNftListing(text));
  }

  private weirTables(all: NftTable[]): NftTable[] {
    const byName = new Map(all.filter((t) => t.family === FAMILY).map((t) => [t.name, t]));
    return this.renderer.tables.flatMap((name) => byName.get(name) ?? []);
  }

  /**
   * What the plan looks like once in a kernel: apply the script in a scratch
   * netns and list it back. Cached by the script text, so a node's few
   * distinct plans are canonicalised once each.
   */
  private expectedTables(plan: RedirectPlan): Promise<NftTable[]> {
    const script = this.renderer.render(plan);
    const key = createHash('sha256').update(script).digest('hex');
    let entry = this.canonical.get(key);
    if (!entry) {
      entry = nftCanonical(script).then(
        (text) => this.weirTables(parseNftListing(text)),
        (e: NativeError) => { throw new NftBackendError('canonicalise (scratch netns)', 'a scratch netns', e); },
      );
      entry.catch(() => this.canonical.delete(key));
      if (this.canonical.size >= CANONICAL_CACHE_SIZE) this.canonical.delete(this.canonical.keys().next().value as string);
      this.canonical.set(key, entry);
    }
    return entry;
  }
}
