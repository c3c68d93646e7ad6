// iptables backend: programs the plan with iptables-restore / ip6tables-restore
// run inside the pod netns (nsenter), reads back and verifies with
// iptables-save. For nodes whose networking lives in iptables, and for the
// legacy xtables variant (chosen by iptables-detect.ts).
//
// Idempotence: restore runs with --noflush, so only what the script names
// changes. `:WEIR_X - [0:0]` creates or flushes weir's chains; the jumps from
// built-in chains are deleted exactly as iptables-save lists them and then
// appended again, in the same restore (one commit per table), so re-applying
// leaves exactly one jump each and never touches other chains.
//
// Locking: legacy xtables serialises writers on one lock file per host; a
// slow pod would stall every other pod's ADD (istio 31936, 58507). Each netns
// has its own tables, so each gets its own XTABLES_LOCKFILE.
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { execa } from 'execa';
import type { CaptureBackend, ProgrammedState, SandboxTarget, VerifyResult } from './backend-types.js';
import type { IptablesMode } from './iptables-detect.js';
import { nativeAvailable, nftRun } from '../native/addon.js';
import type { RedirectPlan } from '../redirect/types.js';
import { formatRestore, IPTABLES_CHAIN_PREFIX, IPTABLES_TABLES, renderIptablesRules, type IptablesTable } from '../redirect/render-iptables.js';
import { planHash } from '../redirect/plan.js';
import { crashPoint } from '../common/test-crash-points.js';

export class IptablesBackendError extends Error {
  readonly netns: string;
  constructor(action: string, netns: string, detail: string) {
    super(`iptables ${action} in ${netns} failed: ${detail}`);
    this.name = 'IptablesBackendError';
    this.netns = netns;
  }
}

export interface IptablesBackendOptions {
  /** nf_tables-backed iptables or legacy xtables. Default nft. */
  mode?: IptablesMode;
  /** Where the per-netns xtables lock files live. */
  lockDir?: string;
}

type Family = 4 | 6;
const FAMILIES: Family[] = [4, 6];

/** weir's part of one table, as iptables-save prints it. */
export interface WeirTableContent {
  chains: string[];
  /** `-A WEIR_* ...` in save order. */
  rules: string[];
  /** `-A <built-in> ... -j WEIR_*` in save order. */
  jumps: string[];
}

const isWeirChain = (name: string): boolean => name.startsWith(IPTABLES_CHAIN_PREFIX);

/** Splits iptables-save output into tables and extracts weir's chains, rules and jumps. */
export function weirContentOf(saveText: string): Map<string, WeirTableContent> {
  const out = new Map<string, WeirTableContent>();
  let current: WeirTableContent | undefined;
  for (const raw of saveText.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('*')) {
      current = { chains: [], rules: [], jumps: [] };
      out.set(line.slice(1), current);
    } else if (!current || line === '' || line.startsWith('#') || line === 'COMMIT') {
      continue;
    } else if (line.startsWith(':')) {
      const name = line.slice(1).split(' ')[0];
      if (isWeirChain(name)) current.chains.push(name);
    } else if (line.startsWith('-A ')) {
      const chain = line.split(' ')[1];
      if (isWeirChain(chain)) current.rules.push(line);
      else if (/ -j WEIR_\S+$/.test(line)) current.jumps.push(line);
    }
  }
  for (const [table, c] of out) if (c.chains.length + c.rules.length + c.jumps.length === 0) out.delete(table);
  return out;
}

function familyLabel(f: Family): string { return f === 4 ? 'ipv4' : 'ipv6'; }

/** Canonical text of weir's state in one family: the form read() returns and verify() compares. */
export function listingOf(family: Family, content: Map<string, WeirTableContent>): string[] {
  const lines: string[] = [];
  for (const table of [...content.keys()].sort()) {
    const c = content.get(table)!;
    lines.push(`${familyLabel(family)} ${table}: ${c.chains.map((n) => `:${n}`).join(' ')}`.trimEnd());
    for (const j of c.jumps) lines.push(`${familyLabel(family)} ${table}: ${j}`);
    for (const r of c.rules) lines.push(`${familyLabel(family)} ${table}: ${r}`);
  }
  return lines;
}

/** Multiset difference, then order: precise lines for people to act on. */
export function diffListings(expected: string[], actual: string[]): string[] {
  const count = (xs: string[]): Map<string, number> => {
    const m = new Map<string, number>();
    for (const x of xs) m.set(x, (m.get(x) ?? 0) + 1);
    return m;
  };
  const e = count(expected);
  const a = count(actual);
  const diffs: string[] = [];
  for (const [line, n] of e) for (let i = a.get(line) ?? 0; i < n; i++) diffs.push(`missing: ${line}`);
  for (const [line, n] of a) for (let i = e.get(line) ?? 0; i < n; i++) diffs.push(`unexpected: ${line}`);
  if (diffs.length === 0 && expected.join('\n') !== actual.join('\n')) {
    const at = expected.findIndex((l, i) => actual[i] !== l);
    diffs.push(`order differs: expected ${JSON.stringify(expected[at])} at position ${at}, found ${JSON.stringify(actual[at])}`);
  }
  return diffs;
}

/** Restore text that removes weir's chains and jumps found in `current` (and nothing else). */
function removalScript(current: Map<string, WeirTableContent>, keep: (table: string) => string[] = () => []): string {
  let out = '';
  for (const [table, c] of current) {
    const stale = c.chains.filter((ch) => !keep(table).includes(ch));
    const lines = [
      ...c.jumps.map((j) => j.replace(/^-A /, '-D ')),
      // Flush every stale chain before deleting any: they may jump to each other.
      ...stale.map((ch) => `-F ${ch}`),
      ...stale.map((ch) => `-X ${ch}`),
    ];
    if (lines.length > 0) out += `*${table}\n${lines.join('\n')}\nCOMMIT\n`;
  }
  return out;
}

/**
 * Restore text that takes weir's part of a netns from `now` back to `previous`
 * (both as iptables-save listed them): jumps of now deleted, previous chains
 * declared (created or flushed), chains only now has removed, then previous
 * rules and jumps appended as saved. Other chains are never named.
 */
export function rollbackScript(previous: Map<string, WeirTableContent>, now: Map<string, WeirTableContent>): string {
  let out = '';
  for (const table of new Set([...previous.keys(), ...now.keys()])) {
    const p = previous.get(table) ?? { chains: [], rules: [], jumps: [] };
    const n = now.get(table) ?? { chains: [], rules: [], jumps: [] };
    const extra = n.chains.filter((ch) => !p.chains.includes(ch));
    const lines = [
      ...p.chains.map((ch) => `:${ch} - [0:0]`),
      ...n.jumps.map((j) => j.replace(/^-A /, '-D ')),
      ...extra.map((ch) => `-F ${ch}`),
      ...extra.map((ch) => `-X ${ch}`),
      ...p.rules,
      ...p.jumps,
    ];
    if (lines.length > 0) out += `*${table}\n${lines.join('\n')}\nCOMMIT\n`;
  }
  return out;
}

/**
 * The restore script that takes a netns from `current` to the plan's tables:
 * old jumps deleted, plan chains declared (created or flushed) and filled,
 * chains weir no longer uses removed, jumps appended once.
 */
export function applyScript(tables: IptablesTable[], current: Map<string, WeirTableContent>): string {
  const wanted = new Map(tables.map((t) => [t.table as string, t]));
  const stale = (t: IptablesTable): string[] => (current.get(t.table)?.chains ?? []).filter((ch) => !t.chains.includes(ch));
  let out = formatRestore(tables, {
    before: (t) => (current.get(t.table)?.jumps ?? []).map((j) => j.replace(/^-A /, '-D ')),
    // After the declarations flushed weir's live chains, nothing refers to a
    // stale chain any more (only weir's chains jump to weir's chains).
    afterDeclarations: (t) => [...stale(t).map((ch) => `-F ${ch}`), ...stale(t).map((ch) => `-X ${ch}`)],
  });
  // Tables weir used before but the plan no longer needs (raw when DNS capture is off).
  const leftover = new Map([...current].filter(([table]) => !wanted.has(table)));
  out += removalScript(leftover);
  return out;
}

export class IptablesBackend implements CaptureBackend {
  readonly name = 'iptables' as const;
  readonly mode: IptablesMode;
  private readonly lockDir: string;
  /** Serialises read-modify-write per netns within this process. */
  private readonly busy = new Map<string, Promise<unknown>>();
  private readonly expectedCache = new Map<string, Promise<string[]>>();

  constructor(opts: IptablesBackendOptions = {}) {
    this.mode = opts.mode ?? 'nft';
    this.lockDir = opts.lockDir ?? '/run/weir/xtables';
  }

  private binary(family: Family, tool: 'save' | 'restore'): string {
    return `${family === 4 ? 'iptables' : 'ip6tables'}-${this.mode}-${tool}`;
  }

  private lockFile(netns: string): string {
    mkdirSync(this.lockDir, { recursive: true });
    return `${this.lockDir}/${netns.replace(/[^A-Za-z0-9_.-]/g, '_')}.lock`;
  }

  private async run(netns: string | undefined, family: Family, tool: 'save' | 'restore', input?: string): Promise<string> {
    const bin = this.binary(family, tool);
    const args = tool === 'restore' ? ['-w', '--noflush'] : [];
    const [cmd, argv] = netns ? ['nsenter', [`--net=${netns}`, bin, ...args]] : ['unshare', ['--net', 'sh', '-c', `${bin} -w --noflush && ${this.binary(family, 'save')}`]];
    const lock = netns ? this.lockFile(netns) : `${this.lockDir}/scratch-${process.pid}.lock`;
    mkdirSync(this.lockDir, { recursive: true });
    const r = await execa(cmd, argv as string[], { input, reject: false, timeout: 30_000, env: { XTABLES_LOCKFILE: lock } });
    if (r.exitCode !== 0) {
      throw new IptablesBackendError(tool, netns ?? '(scratch netns)', `${bin} exited ${r.exitCode}: ${String(r.stderr).trim() || String(r.stdout).trim()}`);
    }
    return String(r.stdout);
  }

  private async serial<T>(netns: string, fn: () => Promise<T>): Promise<T> {
    const before = this.busy.get(netns) ?? Promise.resolve();
    const next = before.catch(() => undefined).then(fn);
    this.busy.set(netns, next);
    try { return await next; } finally { if (this.busy.get(netns) === next) this.busy.delete(netns); }
  }

  private async current(netns: string, family: Family): Promise<Map<string, WeirTableContent>> {
    const content = weirContentOf(await this.run(netns, family, 'save'));
    for (const table of content.keys()) {
      if (!(IPTABLES_TABLES as readonly string[]).includes(table)) {
        // weir never writes other tables; do not silently adopt what is there.
        throw new IptablesBackendError('read', netns, `unexpected weir chains in table ${table}`);
      }
    }
    return content;
  }

  /**
   * True when the netns certainly holds no weir chain, known without running
   * iptables-save: iptables-nft keeps its tables in nf_tables, and a netns
   * with no nat, raw or mangle table at all (a new pod) has nothing of weir. Saves
   * two process spawns per apply on CNI ADD. Any doubt → false.
   */
  private async knownEmpty(netns: string): Promise<boolean> {
    if (this.mode !== 'nft' || !nativeAvailable()) return false;
    try {
      const tables = await nftRun(netns, 'list tables');
      return !/^table ip6? (nat|raw|mangle)$/m.test(tables);
    } catch {
      return false;
    }
  }

  /**
   * Both families or neither: each restore is atomic per table, but IPv4 and
   * IPv6 are two commits. When the IPv6 one fails, IPv4 goes back to exactly
   * what it was (usually nothing). A kill between the two commits is covered
   * one level up: the ADD's intent is in the sandbox store, and the next
   * agent re-applies this (idempotent) apply before serving.
   */
  async apply(target: SandboxTarget, plan: RedirectPlan): Promise<void> {
    const netns = target.netnsPath;
    const rendered = FAMILIES.map((f) => renderIptablesRules(plan, f));
    await this.serial(netns, async () => {
      const empty = await this.knownEmpty(netns);
      const before = new Map<Family, Map<string, WeirTableContent>>();
      for (const r of rendered) before.set(r.family, empty ? new Map() : await this.current(netns, r.family));
      const committed: Family[] = [];
      try {
        for (const r of rendered) {
          if (committed.length) crashPoint('iptables:between-families');
          await this.run(netns, r.family, 'restore', applyScript(r.tables, before.get(r.family)!));
          committed.push(r.family);
        }
      } catch (e) {
        for (const f of committed) {
          try {
            await this.run(netns, f, 'restore', rollbackScript(before.get(f)!, await this.current(netns, f)));
          } catch (rb) {
            throw new IptablesBackendError('apply', netns, `${(e as Error).message}; rolling ${familyLabel(f)} back also failed: ${(rb as Error).message}`);
          }
        }
        throw e;
      }
    });
  }

  async read(target: SandboxTarget): Promise<ProgrammedState> {
    const netns = target.netnsPath;
    const lines: string[] = [];
    let hash: string | undefined;
    for (const f of FAMILIES) {
      const content = await this.current(netns, f);
      lines.push(...listingOf(f, content));
      for (const c of content.values()) {
        for (const j of c.jumps) hash ??= /--comment "weir plan=([0-9a-f]+)"/.exec(j)?.[1];
      }
    }
    return { backend: 'iptables', present: lines.length > 0, listing: lines.join('\n'), planHash: hash };
  }

  /** What the kernel lists after applying the plan to an empty netns: the same form as read(). */
  private expected(plan: RedirectPlan): Promise<string[]> {
    const key = `${this.mode}:${planHash(plan)}`;
    let p = this.expectedCache.get(key);
    if (!p) {
      p = (async () => {
        const lines: string[] = [];
        for (const f of FAMILIES) {
          const script = formatRestore(renderIptablesRules(plan, f).tables);
          lines.push(...listingOf(f, weirContentOf(await this.run(undefined, f, 'restore', script))));
        }
        return lines;
      })();
      p.catch(() => this.expectedCache.delete(key));
      this.expectedCache.set(key, p);
    }
    return p;
  }

  async verify(target: SandboxTarget, plan: RedirectPlan): Promise<VerifyResult> {
    const [expected, state] = await Promise.all([this.expected(plan), this.read(target)]);
    const actual = state.listing === '' ? [] : state.listing.split('\n');
    const differences = diffListings(expected, actual);
    return { ok: differences.length === 0, differences };
  }

  async remove(target: SandboxTarget): Promise<void> {
    const netns = target.netnsPath;
    if (!existsSync(netns)) return;
    await this.serial(netns, async () => {
      for (const f of FAMILIES) {
        const script = removalScript(await this.current(netns, f));
        if (script !== '') await this.run(netns, f, 'restore', script);
      }
      // One lock file per pod would otherwise pile up for the node's lifetime.
      rmSync(this.lockFile(netns), { force: true });
    });
  }
}
