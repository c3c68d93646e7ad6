// `weir inject` works on whatever the user applies: a Pod, or a workload
// whose pod template it finds here. Like `istioctl kube-inject`, offline
// injection assumes the namespace is selected (the user asked for it); the
// safety rules and the pod's own opt-out still hold.
import { FieldError } from '../common/errors.js';
import type { InjectorConfig } from './config.js';
import { isObject, type KubeObject, type PodTemplate } from './k8s.js';
import { injectPodTemplate, type InjectResult } from './mutate.js';
import { objectAt, POD_TEMPLATE_PATH } from '../kube/workloads.js';

/** Where each kind keeps its pod template (field path from the object root); a Pod is its own. */
const TEMPLATE_PATH: Readonly<Record<string, readonly string[]>> = { Pod: [], ...POD_TEMPLATE_PATH };

export const INJECTABLE_KINDS = Object.keys(TEMPLATE_PATH);

export interface ManifestResult {
  object: unknown;
  kind: string;
  name: string;
  /** Not a workload (Service, ConfigMap …): passed through untouched. */
  passedThrough: boolean;
  result?: InjectResult;
}

/** Inject one manifest document. `docLabel` names it in errors ("document 2"). */
export function injectManifest(doc: unknown, config: InjectorConfig, docLabel: string): ManifestResult {
  if (!isObject(doc)) throw new FieldError(docLabel, 'must be a Kubernetes object (a YAML mapping)');
  const obj = doc as KubeObject;
  const kind = typeof obj.kind === 'string' ? obj.kind : '';
  const name = obj.metadata?.name ?? '';
  if (kind === 'List' && Array.isArray(obj.items)) {
    throw new FieldError(`${docLabel}.kind`, 'a List: pass its items as separate documents');
  }
  const path = TEMPLATE_PATH[kind];
  if (!path) return { object: doc, kind, name, passedThrough: true };
  const label = `${docLabel} (${kind} ${name || '<unnamed>'})`;
  const tpl = path.length ? objectAt(obj, path) : obj;
  if (!tpl) throw new FieldError(`${label}.${path.join('.')}`, 'missing: no pod template');
  if (!isObject(tpl.spec) || !Array.isArray(tpl.spec.containers)) throw new FieldError(`${label}.${[...path, 'spec', 'containers'].join('.')}`, 'must be a list of containers');
  const namespace = obj.metadata?.namespace ?? 'default';
  let result: InjectResult;
  try {
    result = injectPodTemplate(tpl as unknown as PodTemplate, { config, namespace, namespaceSelected: true, workloadName: kind === 'Pod' ? undefined : name || undefined });
  } catch (err) {
    if (err instanceof FieldError) throw new FieldError(`${label}.${err.field}`, err.message.slice(err.field.length + 2));
    throw err;
  }
  if (!result.injected) return { object: doc, kind, name, passedThrough: false, result };
  const out = structuredClone(obj) as Record<string, unknown>;
  if (path.length === 0) return { object: { ...out, metadata: result.template.metadata, spec: result.template.spec }, kind, name, passedThrough: false, result };
  const parent = objectAt(out, path.slice(0, -1))!;
  parent[path[path.length - 1]] = result.template;
  return { object: out, kind, name, passedThrough: false, result };
}
