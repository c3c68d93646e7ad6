// The subset of Service and EndpointSlice (discovery.k8s.io/v1) that the
// registry reads. Plain JSON shapes, so the builder stays pure and testable
// without the Kubernetes client.
export interface KubeMeta {
  name?: string;
  namespace?: string;
  resourceVersion?: string;
  labels?: Record<string, string>;
  deletionTimestamp?: string | Date;
}

export interface KubeServicePort {
  name?: string;
  port: number;
  protocol?: string;
  appProtocol?: string;
  targetPort?: number | string;
}

export interface KubeService {
  metadata?: KubeMeta;
  spec?: {
    type?: string;
    clusterIP?: string;
    clusterIPs?: string[];
    externalName?: string;
    ports?: KubeServicePort[];
  };
}

export interface KubeEndpoint {
  addresses: string[];
  conditions?: { ready?: boolean | null; serving?: boolean | null; terminating?: boolean | null };
  hostname?: string;
  nodeName?: string;
  targetRef?: { kind?: string; name?: string; namespace?: string };
}

export interface KubeEndpointSlice {
  metadata?: KubeMeta;
  addressType?: string;
  endpoints?: KubeEndpoint[] | null;
  ports?: { name?: string | null; port?: number | null; protocol?: string | null }[] | null;
}

/** The label EndpointSlices carry to name their Service. */
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';
