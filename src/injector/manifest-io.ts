// Multi-document YAML in and out for `weir inject`: every document is
// injected or passed through, in order, and the output applies as is.
import { parseAllDocuments, stringify } from 'yaml';
import { FieldError } from '../common/errors.js';
import type { InjectorConfig } from './config.js';
import { injectManifest, type ManifestResult } from './workloads.js';

export interface InjectOutput { yaml: string; results: ManifestResult[] }

export function injectYaml(text: string, config: InjectorConfig, source = 'input'): InjectOutput {
  const docs = parseAllDocuments(text);
  const results: ManifestResult[] = [];
  const out: string[] = [];
  docs.forEach((d, i) => {
    const label = `${source} document ${i + 1}`;
    if (d.errors.length) throw new FieldError(label, `not valid YAML: ${d.errors[0].message}`);
    const value: unknown = d.toJS();
    if (value === null || value === undefined) return; // an empty document (e.g. a trailing ---)
    const r = injectManifest(value, config, label);
    results.push(r);
    out.push(stringify(r.object, { lineWidth: 0, aliasDuplicateObjects: false }));
  });
  return { yaml: out.join('---\n'), results };
}

/** One stderr line per workload: what happened and why. */
export function describeResult(r: ManifestResult): string | undefined {
  if (r.passedThrough || !r.result) return undefined;
  const what = `${r.kind} ${r.name || '<unnamed>'}`;
  if (!r.result.injected) return `${what}: not injected (${r.result.reason})`;
  const native = r.result.template.spec.initContainers?.some((c) => c.restartPolicy === 'Always' && c.name === 'weir-proxy');
  return `${what}: injected (${native ? 'native sidecar' : 'sidecar container'})`;
}
