// Validates manifests against the Kubernetes OpenAPI schemas (kubernetes-models'
// compiled validators: required fields, types, enums). Those validators allow
// unknown fields, so `unknownFields` adds the check the API server's strict
// field validation would make for the objects the injector writes.
import { Pod } from 'kubernetes-models/v1';
import { CronJob, Job } from 'kubernetes-models/batch/v1';
import { DaemonSet, Deployment, ReplicaSet, StatefulSet } from 'kubernetes-models/apps/v1';
import { MutatingWebhookConfiguration } from 'kubernetes-models/admissionregistration.k8s.io/v1';

type Validatable = { validate(): void };
const MODELS: Record<string, new (o: never) => Validatable> = {
  'v1/Pod': Pod, 'apps/v1/Deployment': Deployment, 'apps/v1/StatefulSet': StatefulSet, 'apps/v1/DaemonSet': DaemonSet,
  'apps/v1/ReplicaSet': ReplicaSet, 'batch/v1/Job': Job, 'batch/v1/CronJob': CronJob,
  'admissionregistration.k8s.io/v1/MutatingWebhookConfiguration': MutatingWebhookConfiguration,
};

/** Throws with the schema's complaint; returns false for kinds it has no model for. */
export function validateManifest(obj: { apiVersion?: string; kind?: string }): boolean {
  const M = MODELS[`${obj.apiVersion}/${obj.kind}`];
  if (!M) return false;
  new M(obj as never).validate();
  return true;
}

// core/v1 Container's fields (Kubernetes 1.31).
const CONTAINER_FIELDS = new Set(['name', 'image', 'command', 'args', 'workingDir', 'ports', 'envFrom', 'env', 'resources', 'resizePolicy', 'restartPolicy', 'volumeMounts', 'volumeDevices', 'livenessProbe', 'readinessProbe', 'startupProbe', 'lifecycle', 'terminationMessagePath', 'terminationMessagePolicy', 'imagePullPolicy', 'securityContext', 'stdin', 'stdinOnce', 'tty']);
const PROBE_FIELDS = new Set(['exec', 'httpGet', 'tcpSocket', 'grpc', 'initialDelaySeconds', 'timeoutSeconds', 'periodSeconds', 'successThreshold', 'failureThreshold', 'terminationGracePeriodSeconds']);

/** Field names of a container (and its probes) that core/v1 does not have. */
export function unknownContainerFields(c: Record<string, unknown>): string[] {
  const bad = Object.keys(c).filter((k) => !CONTAINER_FIELDS.has(k));
  for (const p of ['livenessProbe', 'readinessProbe', 'startupProbe']) {
    const probe = c[p] as Record<string, unknown> | undefined;
    if (probe) bad.push(...Object.keys(probe).filter((k) => !PROBE_FIELDS.has(k)).map((k) => `${p}.${k}`));
  }
  return bad;
}
