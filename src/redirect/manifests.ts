// Pods from what people have at hand: a file or stdin (`-f -`), one or many
// YAML documents (or a JSON object, or a kind: List), holding Pods or
// workloads whose pod template is what the pod will be — Deployment,
// StatefulSet, DaemonSet, ReplicaSet, Job, CronJob. Each pod is checked by
// parsePodManifest, so errors name the document and the field.
import { readFileSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';
import { FieldError } from '../common/errors.js';
import type { Pod } from '../kube/pod-types.js';
import { parsePodManifest } from './pod-file.js';
import { objectAt, POD_TEMPLATE_PATH } from '../kube/workloads.js';

export interface ManifestPod {
  /** e.g. "Pod/web" or "Deployment/web (pod template)" */
  label: string;
  pod: Pod;
}

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export const ACCEPTED_KINDS = ['Pod', ...Object.keys(POD_TEMPLATE_PATH), 'List'];

function fromObject(o: unknown, where: string, out: ManifestPod[]): void {
  if (!o || typeof o !== 'object' || Array.isArray(o)) throw new FieldError(where, 'expected a Kubernetes object');
  const obj = o as Obj;
  const kind = obj.kind === undefined ? 'Pod' : String(obj.kind);
  const name = typeof obj.metadata?.name === 'string' ? obj.metadata.name : '';
  if (kind === 'List') {
    if (!Array.isArray(obj.items)) throw new FieldError(`${where}: items`, 'a List needs items');
    obj.items.forEach((item: unknown, i: number) => fromObject(item, `${where}: items[${i}]`, out));
    return;
  }
  if (kind === 'Pod') {
    out.push({ label: `Pod/${name || '?'}`, pod: parsePodManifest(JSON.stringify(obj), where) });
    return;
  }
  const path = POD_TEMPLATE_PATH[kind];
  if (!path) throw new FieldError(`${where}: kind`, `expected one of ${ACCEPTED_KINDS.join(', ')}`, kind);
  const t = objectAt(obj, path);
  if (!t) throw new FieldError(`${where}: ${path.join('.')}`, `${kind} has no pod template`);
  const tpl = t as Obj;
  // The pod the controller creates: the template's metadata plus the workload's namespace.
  const pod = {
    kind: 'Pod',
    metadata: { ...(tpl.metadata ?? {}), name: tpl.metadata?.name ?? name, namespace: tpl.metadata?.namespace ?? obj.metadata?.namespace },
    spec: tpl.spec,
  };
  out.push({ label: `${kind}/${name || '?'} (pod template)`, pod: parsePodManifest(JSON.stringify(pod), `${where}: ${path.join('.')}`) });
}

/** Every pod in a YAML/JSON text; `source` names the file (or "stdin") in errors. */
export function podsFromText(text: string, source: string): ManifestPod[] {
  const docs = parseAllDocuments(text);
  const list = Array.isArray(docs) ? docs : [docs];
  const out: ManifestPod[] = [];
  list.forEach((doc, i) => {
    const where = list.length > 1 ? `${source} (document ${i + 1})` : source;
    if (doc.errors.length > 0) throw new FieldError(where, `not valid YAML or JSON: ${doc.errors[0].message.split('\n')[0]}`);
    const value: unknown = doc.toJS();
    if (value === null || value === undefined) return; // an empty document between two `---`
    fromObject(value, where, out);
  });
  if (out.length === 0) throw new FieldError(source, 'no Pod or workload found');
  return out;
}

/** `-` reads stdin (fd 0), anything else a file. */
export function readManifests(file: string): ManifestPod[] {
  const source = file === '-' ? 'stdin' : file;
  let text: string;
  try {
    text = readFileSync(file === '-' ? 0 : file, 'utf8');
  } catch (e) {
    throw new FieldError(source, `cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return podsFromText(text, source);
}
