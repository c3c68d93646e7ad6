// nftables backend: applies the rendered ruleset in-process through
// libnftables (native addon), one transaction per apply; reads back and
// verifies against the kernel's own listing.
import { createHash } from 'node:crypto';
import type { CaptureBackend, NetnsPath, ProgrammedState, SandboxTarget, VerifyResult } from './backend-types.js';
import type { RedirectPlan } from '../redirect/types.js';
import { nftCanonical, nftRun, type NativeError } from '../native/addon.js';
import { diffTables, parseNftListing, planHashOf, tableLevelStatements, type NftTable } from './nft-listing.js';
import { NFT_TABLES, renderNftables, renderNftablesDefinition } from '../redirect/render-nftables.js';

/** What the backend needs from the nftables renderer (src/redirect/render-nftables.ts). */
export interface NftRenderer {
  /** Complete script that atomically replaces weir's tables when run as one transaction. */
  render(plan: RedirectPlan): string;
  /** Names of weir's tables, all in family `inet`. */
  tables: readonly string[];
  /**
   * Optional: only the tables' definitions (`table inet X { ... }`), without
   * the "declare empty; delete" replace prelude. When given, apply into a
   * netns that has no weir table skips the delete: the kernel makes any
   * transaction that deletes a table wait ~10 ms (measured in
   * bench/results/apply-latency.md), which is most of a fresh pod's apply.
   */
  renderDefinition?(plan: RedirectPlan): string;
}

/** weir's renderer (src/redirect/render-nftables.ts). */
export const WEIR_NFT_RENDERER: NftRenderer = {
  tables: NFT_TABLES,
  render: renderNftables,
  renderDefinition: renderNftablesDefinition,
};

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

  /** `renderer` is for tests and tools that program other tables; weir uses the default. */
  constructor(renderer: NftRenderer = WEIR_NFT_RENDERER) {
    if (renderer.tables.length === 0) throw new Error('NftablesBackend: renderer.tables must name at least one table');
    for (const t of renderer.tables) {
      if (!/^[A-Za-z][A-Za-z0-9_]*$/.test(t)) throw new Error(`NftablesBackend: renderer.tables: invalid table name ${JSON.stringify(t)}`);
    }
    this.renderer = renderer;
  }

  async apply(target: SandboxTarget, plan: RedirectPlan): Promise<void> {
    const netns = target.netnsPath;
    try {
      if (await this.applyFresh(netns, plan)) return;
      await nftRun(netns, this.renderer.render(plan));
    } catch (e) {
      throw new NftBackendError('apply', netns, e as NativeError);
    }
  }

  /**
   * Fast path for a netns without any weir table (CNI ADD): `create table`
   * (which, unlike `add`, fails if the table exists) plus the definitions, in
   * one transaction. If a weir table exists, or appears meanwhile, the
   * transaction fails as a whole with EEXIST and the caller falls back to the
   * full replace. Returns false when the fast path does not apply.
   */
  private async applyFresh(netns: NetnsPath, plan: RedirectPlan): Promise<boolean> {
    if (!this.renderer.renderDefinition) return false;
    const definition = this.renderer.renderDefinition(plan);
    const defined = tableLevelStatements(definition);
    const foreign = [...defined.keys()].filter((t) => !this.renderer.tables.includes(t));
    if (foreign.length > 0) throw new Error(`NftablesBackend: renderDefinition defines tables not in renderer.tables: ${foreign.join(', ')}`);
    // `create` only guards the tables this plan defines. When the plan leaves
    // one of weir's tables out (DNS off: no weir_raw), a stale copy of it
    // would survive the fast path, so look first (one more netlink round trip).
    if (this.renderer.tables.some((t) => !defined.has(t))) {
      const listed = await nftRun(netns, 'list tables');
      const present = new Set([...listed.matchAll(/^table inet (\S+)$/gm)].map((m) => m[1]));
      if (this.renderer.tables.some((t) => present.has(t))) return false;
    }
    // A table's comment (the plan hash) and flags only take effect when the
    // table is created, so they go on the `create`; the later block adds the
    // chains to the table created a line earlier in the same transaction.
    const creates = [...defined].map(([t, stmts]) => `create table ${FAMILY} ${t} {${stmts.map((x) => ` ${x};`).join('')} }\n`).join('');
    try {
      await nftRun(netns, `${creates}${definition}`);
      return true;
    } catch (e) {
      if ((e as NativeError).code === 'ENFT' && /File exists/.test((e as NativeError).message)) return false;
      throw e;
    }
  }

  async read(target: SandboxTarget): Promise<ProgrammedState> {
    const netns = target.netnsPath;
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

  async verify(target: SandboxTarget, plan: RedirectPlan): Promise<VerifyResult> {
    const netns = target.netnsPath;
    const [expected, actual] = await Promise.all([this.expectedTables(plan), this.readTables(netns)]);
    const differences = diffTables(expected, actual);
    return { ok: differences.length === 0, differences };
  }

  async remove(target: SandboxTarget): Promise<void> {
    const netns = target.netnsPath;
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
