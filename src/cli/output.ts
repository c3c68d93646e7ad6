// Output formats for every listing: `-o table` (default, for people),
// `-o wide` (more columns), `-o json` / `-o yaml` (the full objects, for scripts).
import { Option } from 'commander';
import { stringify } from 'yaml';

export const OUTPUT_FORMATS = ['table', 'wide', 'json', 'yaml'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

export function outputOption(formats: readonly OutputFormat[] = OUTPUT_FORMATS): Option {
  return new Option('-o, --output <format>', `output format: ${formats.join('|')}`).choices([...formats]).default('table');
}

export function table(rows: (string | number | boolean | undefined)[][], header: string[]): string {
  const all = [header, ...rows.map((r) => r.map((c) => (c === undefined || c === '' ? '-' : String(c))))];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  return all.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('  ').trimEnd()).join('\n') + '\n';
}

export interface Columns<T> { header: string; value: (row: T) => string | number | boolean | undefined; wide?: boolean }

/** Prints `data` in the chosen format; tables are built from `columns` (wide ones only with -o wide). */
export function printListing<T>(format: string | undefined, data: T[], columns: Columns<T>[]): void {
  if (format === 'json' || format === 'yaml') { printObject(format, data); return; }
  const cols = columns.filter((c) => !c.wide || format === 'wide');
  process.stdout.write(table(data.map((d) => cols.map((c) => c.value(d))), cols.map((c) => c.header)));
}

/** json/yaml print the object; anything else calls `human`. */
export function printObject(format: string | undefined, data: unknown, human?: () => string): void {
  if (format === 'json') process.stdout.write(`${JSON.stringify(data, null, 2)}\n`);
  else if (format === 'yaml') process.stdout.write(stringify(data));
  else process.stdout.write(human ? human() : stringify(data));
}


export { optionWithDefault } from '../common/cli-option.js';
