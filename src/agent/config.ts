// The agent's configuration from flags and environment, validated in one
// place: every bad value is an error naming the flag and its env variable.
import type { BackendName } from '../netns/backend-types.js';
import { BACKEND_NAMES } from '../netns/backends.js';
import { EBPF_FALLBACKS, type EbpfFallback } from '../netns/backend-select.js';
import { REPAIR_MODES, type RepairMode } from './repair.js';
import { parseListenAddress } from './metrics.js';
import { FieldError } from '../common/errors.js';
import { parseDuration } from '../common/duration.js';
import { CLUSTER_NAME_RULE, isClusterName } from '../common/cluster-name.js';

export interface AgentConfig {
  nodeName: string;
  /** undefined = in-cluster service account. */
  kubeconfig?: string;
  cniConfDir: string;
  cniBinDir: string;
  /** The weir-cni executable the installer copies into cniBinDir. */
  cniPluginBinary: string;
  /** false: do not install or chain (tests, or a node where the plugin is installed otherwise). */
  install: boolean;
  runDir: string;
  backend: BackendName;
  /** ebpf pods when the programs cannot be loaded: program them with nftables (default), or fail closed (ADD fails, the pod does not start). */
  ebpfFallback?: EbpfFallback;
  /** ebpf: bpffs directory for weir's pinned programs and maps (default /sys/fs/bpf/weir). */
  bpfPinDir?: string;
  /** ebpf: the HOST's cgroup2 root the programs attach to (in a container, a hostPath of it); undefined = this process's cgroup2 mount. */
  ebpfCgroup?: string;
  repairMode: RepairMode;
  repairIntervalMs: number;
  metricsAddr: string;
  hostProc: string;
  excludeNamespaces: string[];
  keepChainOnShutdown: boolean;
  /** Start the node control plane for proxies (@weir/proxy in each captured pod's netns, and proxy.sock). */
  controlPlane: boolean;
  clusterDomain: string;
  /** Istio's root namespace: mesh-wide Sidecars and DestinationRules live there. */
  istioRootNamespace?: string;
  logLevel: string;
  /** The weir CA proxies' CSRs are forwarded to (https://weir-ca.weir-system.svc:15012); undefined = no certificates. */
  ca?: { url: string; tokenFile: string; rootsFile: string; trustDomain: string };
  /** This cluster's name in a multi-cluster mesh (Istio's CLUSTER_ID; default "Kubernetes", as Istio's). */
  clusterId?: string;
  /** This cluster's network (topology.istio.io/network); unset = one flat network with every remote. */
  network?: string;
  /** Namespace whose labelled Secrets name remote clusters (docs/multicluster.md); unset = no remote clusters. */
  remoteSecretNamespace?: string;
  /** Only local endpoints while one is ready (remote ones on failover). */
  preferLocalCluster?: boolean;
}

/** Raw strings as they come from commander (flags) — env is read here. */
export type RawAgentOptions = Partial<Record<keyof AgentConfig | string, string | boolean | undefined>>;

interface Spec { flag: string; env: string }
const SPECS: Record<string, Spec> = {
  nodeName: { flag: '--node-name', env: 'NODE_NAME' },
  kubeconfig: { flag: '--kubeconfig', env: 'KUBECONFIG' },
  cniConfDir: { flag: '--cni-conf-dir', env: 'WEIR_CNI_CONF_DIR' },
  cniBinDir: { flag: '--cni-bin-dir', env: 'WEIR_CNI_BIN_DIR' },
  cniPluginBinary: { flag: '--cni-plugin-binary', env: 'WEIR_CNI_PLUGIN_BINARY' },
  install: { flag: '--no-install', env: 'WEIR_INSTALL' },
  runDir: { flag: '--run-dir', env: 'WEIR_RUN_DIR' },
  backend: { flag: '--backend', env: 'WEIR_BACKEND' },
  ebpfFallback: { flag: '--ebpf-fallback', env: 'WEIR_EBPF_FALLBACK' },
  bpfPinDir: { flag: '--bpf-pin-dir', env: 'WEIR_BPF_PIN_DIR' },
  ebpfCgroup: { flag: '--ebpf-cgroup', env: 'WEIR_EBPF_CGROUP' },
  repairMode: { flag: '--repair-mode', env: 'WEIR_REPAIR_MODE' },
  repairInterval: { flag: '--repair-interval', env: 'WEIR_REPAIR_INTERVAL' },
  metricsAddr: { flag: '--metrics-addr', env: 'WEIR_METRICS_ADDR' },
  hostProc: { flag: '--host-proc', env: 'WEIR_HOST_PROC' },
  excludeNamespaces: { flag: '--exclude-namespaces', env: 'WEIR_EXCLUDE_NAMESPACES' },
  keepChainOnShutdown: { flag: '--keep-chain-on-shutdown', env: 'WEIR_KEEP_CHAIN_ON_SHUTDOWN' },
  controlPlane: { flag: '--no-control-plane', env: 'WEIR_CONTROL_PLANE' },
  clusterDomain: { flag: '--cluster-domain', env: 'WEIR_CLUSTER_DOMAIN' },
  istioRootNamespace: { flag: '--istio-root-namespace', env: 'WEIR_ISTIO_ROOT_NAMESPACE' },
  logLevel: { flag: '--log-level', env: 'WEIR_LOG_LEVEL' },
  caUrl: { flag: '--ca-url', env: 'WEIR_CA_URL' },
  caTokenFile: { flag: '--ca-token-file', env: 'WEIR_CA_TOKEN_FILE' },
  caRootsFile: { flag: '--ca-roots-file', env: 'WEIR_CA_ROOTS_FILE' },
  trustDomain: { flag: '--trust-domain', env: 'WEIR_TRUST_DOMAIN' },
  clusterId: { flag: '--cluster-id', env: 'CLUSTER_ID' },
  network: { flag: '--network', env: 'WEIR_NETWORK' },
  remoteSecretNamespace: { flag: '--remote-secret-namespace', env: 'WEIR_REMOTE_SECRET_NAMESPACE' },
  remoteClusters: { flag: '--no-remote-clusters', env: 'WEIR_REMOTE_CLUSTERS' },
  preferLocalCluster: { flag: '--prefer-local-cluster', env: 'WEIR_PREFER_LOCAL_CLUSTER' },
};

export class ConfigError extends Error {
  constructor(key: string, message: string, value?: unknown) {
    const s = SPECS[key];
    const name = s ? `${s.flag} (env ${s.env})` : key;
    super(`${name}: ${message}${value !== undefined ? ` (bad value: ${JSON.stringify(value)})` : ''}`);
    this.name = 'ConfigError';
  }
}

/** A duration setting (src/common/duration.ts: a unit is required), its error naming the flag and env variable. */
function durationSetting(key: string, value: string): number {
  try {
    return parseDuration(key, value);
  } catch (e) {
    if (e instanceof FieldError) throw new ConfigError(key, e.reason, value);
    throw e;
  }
}

function parseBool(value: string | boolean, key: string): boolean {
  if (typeof value === 'boolean') return value;
  const v = value.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(v)) return true;
  if (['0', 'false', 'no', 'off'].includes(v)) return false;
  throw new ConfigError(key, 'must be true or false', value);
}

export function resolveAgentConfig(raw: RawAgentOptions, env: NodeJS.ProcessEnv = process.env): AgentConfig {
  const pick = (key: string): string | boolean | undefined => {
    const v = raw[key];
    if (v !== undefined) return v;
    const e = env[SPECS[key].env];
    return e === undefined || e === '' ? undefined : e;
  };
  const str = (key: string, def?: string): string | undefined => {
    const v = pick(key);
    if (v === undefined) return def;
    if (typeof v !== 'string') throw new ConfigError(key, 'must be a string', v);
    return v;
  };
  const nodeName = str('nodeName');
  if (!nodeName) throw new ConfigError('nodeName', 'required (the DaemonSet sets it from spec.nodeName)');
  if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(nodeName) || nodeName.length > 253) throw new ConfigError('nodeName', 'must be a DNS-1123 subdomain', nodeName);

  const backend = str('backend', 'nftables')!;
  if (!(BACKEND_NAMES as readonly string[]).includes(backend)) throw new ConfigError('backend', `must be one of ${BACKEND_NAMES.join(', ')}`, backend);
  const ebpfFallback = str('ebpfFallback', 'nftables')!;
  if (!(EBPF_FALLBACKS as readonly string[]).includes(ebpfFallback)) throw new ConfigError('ebpfFallback', `must be one of ${EBPF_FALLBACKS.join(', ')}`, ebpfFallback);
  const repairMode = str('repairMode', 'repair')!;
  if (!(REPAIR_MODES as readonly string[]).includes(repairMode)) throw new ConfigError('repairMode', `must be one of ${REPAIR_MODES.join(', ')}`, repairMode);
  const repairIntervalMs = durationSetting('repairInterval', str('repairInterval', '60s')!);
  const metricsAddr = str('metricsAddr', '0.0.0.0:15014')!;
  try { parseListenAddress(metricsAddr, 'metrics-addr'); } catch { throw new ConfigError('metricsAddr', 'must be host:port', metricsAddr); }
  const excludeRaw = str('excludeNamespaces', 'kube-system')!;
  const excludeNamespaces = excludeRaw.split(',').map((s) => s.trim()).filter(Boolean);
  for (const ns of excludeNamespaces) {
    if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(ns) || ns.length > 63) throw new ConfigError('excludeNamespaces', 'each entry must be a namespace name', ns);
  }
  const abs = (key: string, def: string): string => {
    const v = str(key, def)!;
    if (!v.startsWith('/')) throw new ConfigError(key, 'must be an absolute path', v);
    return v;
  };
  const install = pick('install');
  const controlPlane = pick('controlPlane');
  const keep = pick('keepChainOnShutdown');
  const logLevel = str('logLevel', 'info')!;
  const istioRootNamespace = str('istioRootNamespace', 'istio-system')!;
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(istioRootNamespace) || istioRootNamespace.length > 63) throw new ConfigError('istioRootNamespace', 'must be a namespace name', istioRootNamespace);
  const clusterId = str('clusterId', 'Kubernetes')!;
  // Becomes a metric label and an endpoint field: the same shape Istio accepts for cluster names.
  if (!isClusterName(clusterId)) throw new ConfigError('clusterId', CLUSTER_NAME_RULE, clusterId);
  const network = str('network');
  if (network !== undefined && !isClusterName(network)) throw new ConfigError('network', CLUSTER_NAME_RULE, network);
  // Default: the agent's own namespace (the downward API's POD_NAMESPACE), as istiod reads remote Secrets from istio-system.
  const remoteNs = str('remoteSecretNamespace') ?? (env.POD_NAMESPACE || undefined);
  if (remoteNs !== undefined && (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(remoteNs) || remoteNs.length > 63)) throw new ConfigError('remoteSecretNamespace', 'must be a namespace name', remoteNs);
  const remoteOn = pick('remoteClusters');
  const preferLocal = pick('preferLocalCluster');
  if (!['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'].includes(logLevel)) throw new ConfigError('logLevel', 'must be trace|debug|info|warn|error|fatal|silent', logLevel);
  return {
    nodeName,
    kubeconfig: str('kubeconfig'),
    cniConfDir: abs('cniConfDir', '/etc/cni/net.d'),
    cniBinDir: abs('cniBinDir', '/opt/cni/bin'),
    cniPluginBinary: abs('cniPluginBinary', '/usr/local/lib/weir/weir-cni'),
    install: install === undefined ? true : parseBool(install, 'install'),
    runDir: abs('runDir', '/var/run/weir'),
    backend: backend as BackendName,
    ebpfFallback: ebpfFallback as EbpfFallback,
    bpfPinDir: abs('bpfPinDir', '/sys/fs/bpf/weir'),
    ...(str('ebpfCgroup') !== undefined ? { ebpfCgroup: abs('ebpfCgroup', '/') } : {}),
    repairMode: repairMode as RepairMode,
    repairIntervalMs,
    metricsAddr,
    hostProc: abs('hostProc', '/proc'),
    excludeNamespaces,
    // Default true: fail closed across restarts and rollouts; `weir uninstall` removes the chain for good.
    keepChainOnShutdown: keep === undefined ? true : parseBool(keep, 'keepChainOnShutdown'),
    controlPlane: controlPlane === undefined ? true : parseBool(controlPlane, 'controlPlane'),
    clusterDomain: str('clusterDomain', 'cluster.local')!,
    istioRootNamespace,
    logLevel,
    clusterId,
    ...(network ? { network } : {}),
    ...(remoteNs && (remoteOn === undefined || parseBool(remoteOn, 'remoteClusters')) ? { remoteSecretNamespace: remoteNs } : {}),
    preferLocalCluster: preferLocal === undefined ? false : parseBool(preferLocal, 'preferLocalCluster'),
    ca: caSettings(str, abs),
  };
}

/** The CA settings: all or nothing (a URL without a token could never authenticate). */
function caSettings(str: (key: string, def?: string) => string | undefined, abs: (key: string, def: string) => string): AgentConfig['ca'] {
  const url = str('caUrl');
  if (!url) return undefined;
  let u: URL;
  try { u = new URL(url); } catch { throw new ConfigError('caUrl', 'must be a URL', url); }
  if (u.protocol !== 'https:') throw new ConfigError('caUrl', 'must be https:// (the CA is verified against the mesh roots)', url);
  const trustDomain = str('trustDomain', 'cluster.local')!;
  if (!/^[a-z0-9._-]+$/.test(trustDomain)) throw new ConfigError('trustDomain', 'must be a trust domain name ([a-z0-9._-])', trustDomain);
  return {
    url,
    tokenFile: abs('caTokenFile', '/var/run/secrets/weir/ca-token/token'),
    rootsFile: abs('caRootsFile', '/var/run/secrets/weir/mesh-roots/root-cert.pem'),
    trustDomain,
  };
}
