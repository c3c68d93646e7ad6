// The subset of the Kubernetes object shapes weir reads. Kept local (instead
// of importing @kubernetes/client-node's models) so the CNI plugin bundle and
// the redirect planner stay small and do not depend on the client.
export interface ObjectMeta {
  name?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  deletionTimestamp?: string;
}

export interface SecurityContext {
  runAsUser?: number;
  runAsGroup?: number;
}

export interface ContainerPort { containerPort: number; protocol?: string; name?: string }

export interface EnvVar { name: string; value?: string }

export interface Container {
  name: string;
  image?: string;
  /** Istio gateways run istio-proxy with `proxy router`; sidecars with `proxy sidecar`. */
  args?: string[];
  /** Only literal values are read (DISABLE_ENVOY, ISTIO_META_DNS_CAPTURE); valueFrom is ignored. */
  env?: EnvVar[];
  ports?: ContainerPort[];
  securityContext?: SecurityContext;
  /** "Always" on an init container makes it a native sidecar (KEP-753). */
  restartPolicy?: string;
}

export interface PodSpec {
  nodeName?: string;
  serviceAccountName?: string;
  hostNetwork?: boolean;
  containers: Container[];
  initContainers?: Container[];
  securityContext?: SecurityContext;
}

export interface PodStatus { podIP?: string; podIPs?: { ip: string }[]; phase?: string }

export interface Pod {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
  spec: PodSpec;
  status?: PodStatus;
}

export interface Namespace { metadata: ObjectMeta }
