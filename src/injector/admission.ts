// AdmissionReview (admission.k8s.io/v1) in and out, pure. A review that is
// not one is a ReviewError (the server answers 400 naming the field); a
// review for something the injector does not handle is allowed unchanged.
import { FieldError } from '../common/errors.js';
import type { InjectorConfig } from './config.js';
import { isObject, type PodTemplate } from './k8s.js';
import { diff } from './json-patch.js';
import { injectPodTemplate, type InjectResult } from './mutate.js';

export class ReviewError extends FieldError {}

export interface AdmissionResponse {
  uid: string;
  allowed: boolean;
  patchType?: 'JSONPatch';
  patch?: string;
  status?: { code: number; message: string };
  warnings?: string[];
}

export interface ReviewOutcome {
  response: AdmissionResponse;
  /** What happened to the pod (for the log and metrics); absent for non-pod reviews. */
  result?: InjectResult;
  skipped?: string;
}

function need<T>(cond: unknown, field: string, msg: string): asserts cond is T {
  if (!cond) throw new ReviewError(field, msg);
}

export function review(body: unknown, config: InjectorConfig): ReviewOutcome {
  need(isObject(body), 'body', 'must be a JSON AdmissionReview object');
  const b = body as Record<string, unknown>;
  need(b.apiVersion === 'admission.k8s.io/v1', 'apiVersion', `must be admission.k8s.io/v1 (got ${JSON.stringify(b.apiVersion)})`);
  need(b.kind === 'AdmissionReview', 'kind', `must be AdmissionReview (got ${JSON.stringify(b.kind)})`);
  need(isObject(b.request), 'request', 'missing');
  const req = b.request as Record<string, unknown>;
  need(typeof req.uid === 'string' && req.uid.length > 0, 'request.uid', 'must be a non-empty string');
  const uid = req.uid as string;
  const allow = (skipped: string): ReviewOutcome => ({ response: { uid, allowed: true }, skipped });

  const kind = isObject(req.kind) ? req.kind : {};
  if (kind.kind !== 'Pod' || (kind.group ?? '') !== '' || req.subResource) return allow(`not a pod: ${JSON.stringify(req.kind)}`);
  if (req.operation !== 'CREATE') return allow(`operation ${String(req.operation)}`);
  need(isObject(req.object), 'request.object', 'missing: a CREATE review carries the pod');
  const pod = req.object as Record<string, unknown>;
  need(isObject(pod.spec), 'request.object.spec', 'missing');
  need(Array.isArray((pod.spec as Record<string, unknown>).containers), 'request.object.spec.containers', 'must be a list');
  const meta = isObject(pod.metadata) ? pod.metadata : {};
  const namespace = typeof req.namespace === 'string' && req.namespace ? req.namespace : typeof meta.namespace === 'string' ? meta.namespace : 'default';
  // Dry runs are mutated like real ones: the API server shows the user what would be stored.
  const template = { metadata: meta, spec: pod.spec } as PodTemplate;
  let result: InjectResult;
  try {
    // The API server called us, so the namespaceSelector (or the object selector) matched.
    result = injectPodTemplate(template, { config, namespace, namespaceSelected: true });
  } catch (err) {
    if (!(err instanceof FieldError)) throw err;
    // A pod whose annotations are wrong is refused with the reason (failurePolicy Fail would
    // refuse it anyway on an error; this way the user reads which annotation to fix).
    return { response: { uid, allowed: false, status: { code: 400, message: `weir injector: ${err.message}` } } };
  }
  if (!result.injected) return { response: { uid, allowed: true }, result };
  const ops = [
    // A pod without metadata (possible in a review, never in etcd) gets it whole.
    ...(isObject(pod.metadata) ? diff(pod.metadata, result.template.metadata, '/metadata') : [{ op: 'add', path: '/metadata', value: result.template.metadata }]),
    ...diff(pod.spec, result.template.spec, '/spec'),
  ];
  return { response: { uid, allowed: true, patchType: 'JSONPatch', patch: Buffer.from(JSON.stringify(ops)).toString('base64') }, result };
}

export function reviewResponse(resp: AdmissionResponse): object {
  return { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: resp };
}
