// `--static-security FILE`: PeerAuthentication and AuthorizationPolicy
// objects (multi-document YAML, a JSON list, or a v1 List) read with the
// same reader `weir analyze` uses. Normally the agent pushes them (v2
// Security kind); a file pins them (tests, a proxy without an agent). An object with an error is refused whole
// (and logged with its field path); the proxy never half-applies a policy.
import { readFileSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';
import type { Problem } from '../../istio/schema.js';
import { readSecurityResource } from '../../security/read.js';
import type { SecurityResource } from '../../security/types.js';

export interface LoadedSecurity { resources: SecurityResource[]; problems: { resource: string; problem: Problem }[] }

export function loadStaticSecurity(file: string): LoadedSecurity {
  const text = readFileSync(file, 'utf8');
  const docs: unknown[] = [];
  for (const d of parseAllDocuments(text)) {
    if (d.errors.length) throw new Error(`${file}: YAML: ${d.errors[0].message.split('\n')[0]}`);
    const v = d.toJS() as unknown;
    if (Array.isArray(v)) docs.push(...(v as unknown[]));
    else if (v && typeof v === 'object' && (v as { kind?: string }).kind === 'List') docs.push(...((v as { items?: unknown[] }).items ?? []));
    else if (v !== null) docs.push(v);
  }
  const out: LoadedSecurity = { resources: [], problems: [] };
  for (const doc of docs) {
    const r = readSecurityResource(doc);
    const id = `${r.kind ?? '?'} ${r.namespace ?? '?'}/${r.name ?? '?'}`;
    for (const p of r.problems) out.problems.push({ resource: id, problem: p });
    if (r.resource) out.resources.push(r.resource);
  }
  return out;
}
