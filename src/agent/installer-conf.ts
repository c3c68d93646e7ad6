// Pure parts of the installer: how libcni picks the primary network conf,
// and how weir's entry is added to / removed from it. No I/O here beyond
// reading the directory, so these rules are easy to test and reason about.
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';

export const CONF_EXTENSIONS = ['.conf', '.conflist', '.json'];

export interface ConfFile {
  path: string;
  /** The raw JSON object. */
  json: Record<string, unknown>;
  text: string;
  mode: number;
  /** True for a .conflist (or .json with `plugins`); false for a single-plugin conf. */
  isList: boolean;
}

/** Parses a conf file the way libcni accepts it; undefined when libcni would skip it. */
export function parseConfText(file: string, text: string, mode: number): ConfFile | undefined {
  let json: unknown;
  try { json = JSON.parse(text); } catch { return undefined; }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return undefined;
  const o = json as Record<string, unknown>;
  if (Array.isArray(o.plugins)) {
    if (o.plugins.length === 0 || o.plugins.some((p) => typeof (p as { type?: unknown })?.type !== 'string')) return undefined;
    return { path: file, json: o, text, mode, isList: true };
  }
  if (file.endsWith('.conflist')) return undefined;
  if (typeof o.type !== 'string') return undefined;
  return { path: file, json: o, text, mode, isList: false };
}

export async function readConf(file: string): Promise<ConfFile | undefined> {
  try {
    const [text, st] = await Promise.all([readFile(file, 'utf8'), stat(file)]);
    return parseConfText(file, text, st.mode & 0o7777);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

/**
 * The primary conf as the kubelet/libcni choose it: the lexically first
 * valid .conf/.conflist/.json in the directory (or the named file).
 * `ignore` lists files that are not candidates (weir's own standalone conf).
 */
export async function findPrimaryConf(confDir: string, opts: { name?: string; ignore?: string[] } = {}): Promise<ConfFile | undefined> {
  if (opts.name) return readConf(path.join(confDir, opts.name));
  let names: string[];
  try { names = await readdir(confDir); } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  const candidates = names
    .filter((n) => !n.startsWith('.') && CONF_EXTENSIONS.includes(path.extname(n)) && !(opts.ignore ?? []).includes(n))
    .sort();
  for (const n of candidates) {
    const conf = await readConf(path.join(confDir, n));
    if (conf) return conf;
  }
  return undefined;
}

export function pluginsOf(conf: ConfFile): Record<string, unknown>[] {
  return conf.isList ? conf.json.plugins as Record<string, unknown>[] : [conf.json];
}

export function weirEntryIndex(conf: ConfFile, pluginType: string): number {
  return pluginsOf(conf).findIndex((p) => p.type === pluginType);
}

/**
 * The conflist with weir's entry last (replacing an outdated weir entry in
 * place). A single conf becomes a list whose first plugin is the conf as it
 * was (libcni's own conversion), so nothing of the primary's is changed.
 */
export function chainedConf(conf: ConfFile, entry: Record<string, unknown>): Record<string, unknown> {
  if (!conf.isList) {
    return { cniVersion: conf.json.cniVersion, name: conf.json.name, plugins: [conf.json, entry] };
  }
  const plugins = [...pluginsOf(conf)];
  const i = plugins.findIndex((p) => p.type === entry.type);
  if (i >= 0) plugins.splice(i, 1);
  plugins.push(entry);
  return { ...conf.json, plugins };
}

/** The conflist without weir's entry. */
export function unchainedConf(conf: ConfFile, pluginType: string): Record<string, unknown> {
  return { ...conf.json, plugins: pluginsOf(conf).filter((p) => p.type !== pluginType) };
}

/** Same JSON value (key order ignored). */
export function sameJson(a: unknown, b: unknown): boolean {
  return canonical(a) === canonical(b);
}

function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}
