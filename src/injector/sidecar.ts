// The proxy container weir injects. No init container for iptables (the CNI
// chain programs capture), nothing that needs hostPath, and a security
// context that passes Pod Security "restricted" as is.
import type { InjectorConfig } from './config.js';
import { PROMETHEUS_PORT, PROXY_CONTAINER, PROXY_UID, READY_PORT } from './config.js';
import type { Container, EnvVar } from './k8s.js';

export interface SidecarOptions {
  native: boolean;
  /** Regular-container mode: block the app containers' start until the proxy is ready (postStart hook). */
  holdApplication: boolean;
  /** Regular-container mode in a restartPolicy Never pod: the proxy exits when the app containers have. */
  exitWhenAppExits: boolean;
  resources: { requests: Record<string, string>; limits: Record<string, string> };
  /** ISTIO_KUBE_APP_PROBERS, when any probe was rewritten. */
  probers?: string;
  appContainers: string[];
}

const fieldRef = (name: string, fieldPath: string): EnvVar => ({ name, valueFrom: { fieldRef: { fieldPath } } });

export const RESTRICTED_SECURITY_CONTEXT = {
  runAsUser: PROXY_UID,
  runAsGroup: PROXY_UID,
  runAsNonRoot: true,
  allowPrivilegeEscalation: false,
  privileged: false,
  readOnlyRootFilesystem: true,
  capabilities: { drop: ['ALL'] },
  seccompProfile: { type: 'RuntimeDefault' },
};

export function proxyContainer(cfg: InjectorConfig, o: SidecarOptions): Container {
  const env: EnvVar[] = [
    fieldRef('POD_NAME', 'metadata.name'),
    fieldRef('POD_NAMESPACE', 'metadata.namespace'),
    // The app-health prober dials the app on the pod IP from 127.0.0.6.
    fieldRef('INSTANCE_IP', 'status.podIP'),
    fieldRef('SERVICE_ACCOUNT', 'spec.serviceAccountName'),
    { name: 'WEIR_APP_CONTAINERS', value: o.appContainers.join(',') },
  ];
  if (cfg.clusterId) env.push({ name: 'ISTIO_META_CLUSTER_ID', value: cfg.clusterId });
  if (o.probers) env.push({ name: 'ISTIO_KUBE_APP_PROBERS', value: o.probers });
  if (o.exitWhenAppExits) env.push({ name: 'WEIR_EXIT_WHEN_APP_EXITS', value: 'true' });
  const readyProbe = () => ({ httpGet: { path: '/healthz/ready', port: READY_PORT, scheme: 'HTTP' } });
  const c: Container = {
    name: PROXY_CONTAINER,
    image: cfg.proxyImage,
    command: [...cfg.proxyCommand],
    args: ['proxy', ...cfg.extraProxyArgs],
    env,
    ports: [{ name: 'http-envoy-prom', containerPort: PROMETHEUS_PORT, protocol: 'TCP' }],
    readinessProbe: { ...readyProbe(), periodSeconds: 15, timeoutSeconds: 3, failureThreshold: 4 },
    resources: o.resources,
    securityContext: structuredClone(RESTRICTED_SECURITY_CONTEXT),
    terminationMessagePolicy: 'FallbackToLogsOnError',
  };
  if (o.native) {
    // KEP-753: an init container that keeps running. The kubelet starts the
    // next init container and the app only once this startup probe passes,
    // and stops it after the app containers have exited (Jobs complete).
    c.restartPolicy = 'Always';
    c.startupProbe = { ...readyProbe(), periodSeconds: 1, timeoutSeconds: 3, failureThreshold: 600 };
  } else if (o.holdApplication) {
    // The kubelet starts containers in order and waits for a postStart hook
    // before the next one: the app starts after the proxy answers ready.
    c.lifecycle = { postStart: { exec: { command: [...cfg.proxyCommand, 'proxy-wait', '--timeout', '120s'] } } };
  }
  return c;
}
