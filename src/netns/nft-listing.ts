// Parsing and comparing `nft list` text output. The kernel's own listing is
// the ground truth for verify: the expected side is produced by applying the
// plan's script to an empty scratch netns and listing it back, so both sides
// are in exactly the form libnftables prints, and comparing is line work.

/** One `chain`/`set`/`map`/... block inside a table. */
export interface NftBlock {
  /** "chain", "set", "map", "flowtable", "counter", ... */
  kind: string;
  name: string;
  /** Logical statements in order (multi-line element lists joined). */
  lines: string[];
}

export interface NftTable {
  family: string;
  name: string;
  /** Table-level statements: comment, flags. */
  attributes: string[];
  blocks: NftBlock[];
  /** The table's text exactly as listed (for read-back and humans). */
  text: string;
}

const TABLE_OPEN = /^table (\S+) (\S+) \{$/;
const BLOCK_OPEN = /^(\S+) (\S+) \{$/;

/** Counters change with traffic; they are state, not configuration. */
function normalise(statement: string): string {
  return statement
    .replace(/\bcounter packets \d+ bytes \d+/g, 'counter')
    .replace(/\bquota (over )?(\d+) (\w+) used \d+ \w+/g, 'quota $1$2 $3')
    .replace(/\s+/g, ' ')
    .trim();
}

/** Braces outside quoted strings, to know when a wrapped statement ends. */
function braceBalance(s: string): number {
  const unquoted = s.replace(/"(?:[^"\\]|\\.)*"/g, '');
  return (unquoted.match(/\{/g) ?? []).length - (unquoted.match(/\}/g) ?? []).length;
}

/**
 * Splits a `list ruleset`/`list table` text into tables. Throws on text that
 * is not nft listing output, naming the line, rather than guessing.
 */
export function parseNftListing(text: string): NftTable[] {
  const tables: NftTable[] = [];
  const lines = text.split('\n');
  let table: NftTable | undefined;
  let tableStart = 0;
  let block: NftBlock | undefined;
  let pending: string | undefined;

  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i];
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;

    if (pending !== undefined) {
      pending += ` ${line}`;
      if (braceBalance(pending) <= 0) {
        (block ? block.lines : table!.attributes).push(normalise(pending));
        pending = undefined;
      }
      continue;
    }

    if (!table) {
      const m = TABLE_OPEN.exec(line);
      if (!m) throw new Error(`nft listing line ${i + 1}: expected "table <family> <name> {", got ${JSON.stringify(raw)}`);
      table = { family: m[1], name: m[2], attributes: [], blocks: [], text: '' };
      tableStart = i;
      continue;
    }
    if (line === '}') {
      if (block) {
        table.blocks.push(block);
        block = undefined;
      } else {
        table.text = `${lines.slice(tableStart, i + 1).join('\n')}\n`;
        tables.push(table);
        table = undefined;
      }
      continue;
    }
    const open = block ? undefined : BLOCK_OPEN.exec(line);
    if (open) {
      block = { kind: open[1], name: open[2], lines: [] };
      continue;
    }
    if (braceBalance(line) > 0) {
      pending = line;
      continue;
    }
    (block ? block.lines : table.attributes).push(normalise(line));
  }
  if (table || block || pending !== undefined) throw new Error('nft listing ended inside a table (truncated output?)');
  return tables;
}

export function tableId(t: { family: string; name: string }): string {
  return `${t.family} ${t.name}`;
}

/** Multiset difference a − b, keeping a's order. */
function minus(a: string[], b: string[]): string[] {
  const counts = new Map<string, number>();
  for (const x of b) counts.set(x, (counts.get(x) ?? 0) + 1);
  const out: string[] = [];
  for (const x of a) {
    const n = counts.get(x) ?? 0;
    if (n > 0) counts.set(x, n - 1);
    else out.push(x);
  }
  return out;
}

/** The base-chain line ("type nat hook output priority -100; policy accept;"), which is not a rule. */
function isChainSpec(kind: string, line: string): boolean {
  return kind === 'chain' && (line.startsWith('type ') || line.startsWith('policy '));
}

function diffBlock(where: string, expected: NftBlock, actual: NftBlock): string[] {
  const out: string[] = [];
  const isRule = (l: string) => !isChainSpec(expected.kind, l);
  const expRules = expected.lines.filter(isRule);
  const actRules = actual.lines.filter(isRule);
  const expSpec = expected.lines.filter((l) => !isRule(l));
  const actSpec = actual.lines.filter((l) => !isRule(l));
  if (expSpec.join('\n') !== actSpec.join('\n')) {
    out.push(`changed: ${where} is \`${actSpec.join(' ') || '(regular chain)'}\`, expected \`${expSpec.join(' ') || '(regular chain)'}\``);
  }
  const noun = expected.kind === 'chain' ? 'rule' : 'line';
  if (actRules.length === 0 && expRules.length > 0) out.push(`empty: ${where} has no ${noun}s, expected ${expRules.length}`);
  for (const l of minus(expRules, actRules)) out.push(`missing: ${noun} in ${where}: ${l}`);
  for (const l of minus(actRules, expRules)) out.push(`unexpected: ${noun} in ${where}: ${l}`);
  if (out.length === 0 && expRules.join('\n') !== actRules.join('\n')) {
    // Same rules, different order: in a chain, order is meaning.
    const at = expRules.findIndex((l, i) => actRules[i] !== l);
    out.push(`order: ${where} ${noun} ${at + 1} is \`${actRules[at]}\`, expected \`${expRules[at]}\``);
  }
  return out;
}

/**
 * Human-readable, precise differences between the expected and actual
 * tables; empty when they match. Every line names the table and chain.
 */
export function diffTables(expected: NftTable[], actual: NftTable[]): string[] {
  const out: string[] = [];
  const actualById = new Map(actual.map((t) => [tableId(t), t]));
  const expectedIds = new Set(expected.map(tableId));
  for (const exp of expected) {
    const id = tableId(exp);
    const act = actualById.get(id);
    if (!act) {
      out.push(`missing: table ${id}`);
      continue;
    }
    for (const l of minus(exp.attributes, act.attributes)) out.push(`missing: table ${id} attribute: ${l}`);
    for (const l of minus(act.attributes, exp.attributes)) out.push(`unexpected: table ${id} attribute: ${l}`);
    const actBlocks = new Map(act.blocks.map((b) => [`${b.kind} ${b.name}`, b]));
    const expKeys = new Set(exp.blocks.map((b) => `${b.kind} ${b.name}`));
    for (const b of exp.blocks) {
      const key = `${b.kind} ${b.name}`;
      const other = actBlocks.get(key);
      if (!other) out.push(`missing: ${b.kind} ${id} ${b.name}`);
      else out.push(...diffBlock(`${b.kind} ${id} ${b.name}`, b, other));
    }
    for (const b of act.blocks) if (!expKeys.has(`${b.kind} ${b.name}`)) out.push(`unexpected: ${b.kind} ${id} ${b.name}`);
  }
  for (const act of actual) if (!expectedIds.has(tableId(act))) out.push(`unexpected: table ${tableId(act)}`);
  return out;
}

/** The plan hash recorded as `comment "weir plan=<hash>"` on a weir table. */
export function planHashOf(tables: NftTable[]): string | undefined {
  for (const t of tables) {
    for (const a of t.attributes) {
      const m = /^comment "weir plan=([^"]+)"$/.exec(a);
      if (m) return m[1];
    }
  }
  return undefined;
}

/**
 * For each `table inet NAME { ... }` block in an nft script: the statements
 * directly inside it (comment, flags), without its chains/sets. Quotes are
 * respected so braces inside a comment do not confuse the scan.
 */
export function tableLevelStatements(script: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  const opener = /table inet ([A-Za-z][A-Za-z0-9_]*)\s*\{/g;
  for (let m = opener.exec(script); m; m = opener.exec(script)) {
    let depth = 1;
    let own = '';
    let i = m.index + m[0].length;
    for (; i < script.length && depth > 0; i++) {
      const c = script[i];
      if (c === '"') {
        const end = script.indexOf('"', i + 1);
        if (depth === 1) own += script.slice(i, end + 1);
        i = end < 0 ? script.length : end;
        continue;
      }
      if (c === '{') depth++;
      else if (c === '}') depth--;
      else if (depth === 1) own += c;
    }
    opener.lastIndex = i;
    // What is left at depth 1 is the table's own statements plus the
    // headers of its blocks ("chain output"), which have no body here.
    const stmts = (own.match(/(?:"[^"]*"|[^;\n"])+/g) ?? []).map((x) => x.trim()).filter((x) => x !== '' && !/^(chain|set|map|flowtable|counter|quota|limit|ct|secmark|synproxy)\s+\S+$/.test(x));
    out.set(m[1], [...(out.get(m[1]) ?? []), ...stmts]);
  }
  return out;
}
