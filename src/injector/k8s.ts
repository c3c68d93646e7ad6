// The Kubernetes shapes the injector reads and writes. Kept local (the
// injector runs in every admission request; it must not drag the API
// client's models in) and loose: anything the injector does not understand
// is carried through untouched, so a pod keeps every field it came with.
export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

export interface ObjectMeta {
  name?: string;
  generateName?: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  [k: string]: unknown;
}

export interface HttpGetAction { path?: string; port: number | string; host?: string; scheme?: string; httpHeaders?: { name: string; value: string }[] }
export interface Probe {
  httpGet?: HttpGetAction;
  tcpSocket?: { port: number | string; host?: string };
  grpc?: { port: number; service?: string };
  exec?: { command?: string[] };
  timeoutSeconds?: number;
  periodSeconds?: number;
  failureThreshold?: number;
  [k: string]: unknown;
}

export interface EnvVar { name: string; value?: string; valueFrom?: Record<string, unknown> }

export interface Container {
  name: string;
  image?: string;
  command?: string[];
  args?: string[];
  ports?: { containerPort: number; name?: string; protocol?: string }[];
  env?: EnvVar[];
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  startupProbe?: Probe;
  restartPolicy?: string;
  [k: string]: unknown;
}

export interface PodSpec {
  containers: Container[];
  initContainers?: Container[];
  hostNetwork?: boolean;
  restartPolicy?: string;
  shareProcessNamespace?: boolean;
  [k: string]: unknown;
}

export interface PodTemplate { metadata?: ObjectMeta; spec: PodSpec }

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: ObjectMeta;
  spec?: Record<string, unknown>;
  [k: string]: unknown;
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
