// weir proxy settings: defaults, then environment, then flags. Every bad
// value is an error that names the flag (or variable) to fix.
import { FieldError } from '../common/errors.js';
import { parseDuration } from '../common/duration.js';
import { POD_SOCKET } from '../controlplane/protocol.js';
import { DEFAULT_SAMPLING_PERCENT, resolveTracing, type TracingConfig } from './telemetry/tracing/config.js';
import { CLUSTER_NAME_RULE, isClusterName } from '../common/cluster-name.js';

export interface ProxyConfig {
  /** `@name`: abstract socket in this pod's netns (default @weir/proxy, no mount); else a path (legacy host socket). */
  controlPlaneSocket: string;
  podNamespace: string;
  podName: string;
  /** The cluster this pod runs in (Istio's ISTIO_META_CLUSTER_ID, set by the injector): the source_cluster label. */
  clusterId: string;
  /** Workload label for metrics; default derived from the pod name. */
  workload: string;
  outboundPort: number;
  inboundPort: number;
  adminPort: number;
  readyPort: number;
  prometheusPort: number;
  maxConnections: number;
  idleTimeoutMs: number;
  connectTimeoutMs: number;
  /** Endpoints tried per outbound connection before giving up (first try included). */
  connectAttempts: number;
  /** Ready without an agent after this long (the proxy passes traffic through meanwhile). */
  readyWithoutAgentMs: number;
  drainTimeoutMs: number;
  /** Access log lines (stdout): off (Istio's default), Istio's default text format, or JSON. */
  accessLog: 'off' | 'text' | 'json';
  /**
   * How long protocol detection waits for a client's first bytes before the
   * connection is treated as TCP (server-first protocols on ports that
   * declare nothing). Istio has no timeout here (such ports hang); Linkerd
   * waits 10 s. 100 ms: a client-first protocol sends at once, so only a
   * silent client pays it, once per connection and hop.
   */
  protocolDetectionTimeoutMs: number;
  /**
   * The same on the inbound side. A timeout only starts the upstream
   * connection early: if the client's first bytes then arrive before the
   * server's and are HTTP (a busy peer proxy's late HTTP/2 preface), the
   * connection still goes to the HTTP chain (tcp/chain.ts lateVerdict).
   */
  inboundProtocolDetectionTimeoutMs: number;
  /** Retries per HTTP request on the outbound side (Istio's default: 2). */
  httpRetries: number;
  /** Downward-API file with this pod's labels (app, version, canonical names), as Istio mounts /etc/istio/pod/labels. */
  podLabelsFile: string;
  /** How bytes move: splice in the kernel (native addon), Node streams, or auto (splice when built). */
  pump: 'auto' | 'splice' | 'stream';
  /** HTTP/1.1 connections whose routes need nothing more go to the addon's native path (http/native-h1.ts); js = always the JS chain. */
  httpEngine: 'native' | 'js';
  /**
   * Splice pump busy-poll window, µs: after activity the pump thread keeps
   * polling (epoll_wait with a zero timeout, yielding the CPU in between)
   * this long before it sleeps, so the next packet of an exchange does not
   * pay a thread (and, on VMs, vCPU) wakeup. 0 = always sleep. No effect on
   * the stream pump.
   */
  busyPollUs: number;
  /**
   * Native accept (src/proxy/native-l4): the outbound listener accepts on the
   * pump thread, which routes opaque-TCP destinations, dials and pumps them
   * without JavaScript (anything else is handed to JavaScript). auto = when
   * the splice pump and the addon's accept path are there; off = Node listens.
   */
  nativeAccept: 'auto' | 'off';
  /** DNS proxy port on 127.0.0.1 and ::1; 0 = no DNS proxy. */
  dnsPort: number;
  /** Inbound hand-off to the app leaves from this source so capture lets it through. */
  inboundSourceV4: string;
  /**
   * How the pod's inbound is captured (sidecar.istio.io/interceptionMode).
   * TPROXY: the inbound listener is IP_TRANSPARENT, the original destination
   * is the accepted socket's own address, and the hand-off to the app comes
   * from the client's address (SO_MARK tproxyMark, to the pod IP) so the app
   * sees the real client. Needs the native addon and CAP_NET_ADMIN (IP_TRANSPARENT).
   */
  interceptionMode: 'REDIRECT' | 'TPROXY';
  /** The mark the TPROXY rules and the policy route use (Istio: 1337). */
  tproxyMark: number;
  /** Zipkin span export and sampling (telemetry/tracing/config.ts). */
  tracing: TracingConfig;
  /** A CompiledProxyConfig JSON file applied at start (compiled/static-config.ts); empty = none. */
  staticConfig: string;
  /**
   * Mesh mTLS (src/proxy/mtls/): off; auto = get a workload certificate
   * through the agent when it issues them and use it (readiness waits for the
   * first one then); required = readiness always waits for it and mesh
   * destinations are never dialled in plaintext.
   */
  mtls: 'off' | 'auto' | 'required';
  trustDomain: string;
  /** PeerAuthentication/AuthorizationPolicy from a file (YAML/JSON) until control plane v2 pushes them. */
  staticSecurityFile?: string;
  /** Renew the workload certificate at least this often (tests/bench: forced rotation); 0 = at half-life. */
  certRotationMs: number;
  /**
   * Who runs mTLS of opaque TCP: native = the addon's TLS relay (OpenSSL in
   * native code, src/proxy/mtls/native-tls.ts), node = node:tls streams, auto =
   * native when the addon has it. HTTP over mTLS is always node:tls.
   */
  mtlsEngine: 'auto' | 'native' | 'node';
}

export const DEFAULTS: ProxyConfig = {
  controlPlaneSocket: POD_SOCKET,
  podNamespace: '',
  clusterId: 'Kubernetes',
  podName: '',
  workload: '',
  outboundPort: 15001,
  inboundPort: 15006,
  adminPort: 15000,
  readyPort: 15021,
  prometheusPort: 15090,
  maxConnections: 16384,
  idleTimeoutMs: 3_600_000,
  connectTimeoutMs: 10_000,
  connectAttempts: 3,
  readyWithoutAgentMs: 5_000,
  drainTimeoutMs: 5_000,
  accessLog: 'off',
  protocolDetectionTimeoutMs: 100,
  inboundProtocolDetectionTimeoutMs: 100,
  httpRetries: 2,
  podLabelsFile: '/etc/istio/pod/labels',
  dnsPort: 15053,
  pump: 'auto',
  httpEngine: 'native',
  busyPollUs: 0,
  nativeAccept: 'auto',
  inboundSourceV4: '127.0.0.6',
  interceptionMode: 'REDIRECT',
  tproxyMark: 1337,
  tracing: { samplingPercent: DEFAULT_SAMPLING_PERCENT },
  staticConfig: '',
  mtls: 'auto',
  trustDomain: 'cluster.local',
  certRotationMs: 0,
  mtlsEngine: 'auto',
};

/** Flags as commander hands them over (strings), plus the environment. */
export interface RawProxyOptions {
  controlPlaneSocket?: string;
  podNamespace?: string;
  podName?: string;
  clusterId?: string;
  workload?: string;
  outboundPort?: string;
  inboundPort?: string;
  adminPort?: string;
  readyPort?: string;
  prometheusPort?: string;
  maxConnections?: string;
  idleTimeout?: string;
  connectTimeout?: string;
  connectAttempts?: string;
  readyWithoutAgent?: string;
  drainTimeout?: string;
  /** commander: a format string, or false from --no-access-log */
  accessLog?: string | boolean;
  protocolDetectionTimeout?: string;
  inboundProtocolDetectionTimeout?: string;
  httpRetries?: string;
  podLabels?: string;
  dnsPort?: string;
  pump?: string;
  httpEngine?: string;
  busyPoll?: string;
  nativeAccept?: string;
  /** commander's --no-dns */
  dns?: boolean;
  interceptionMode?: string;
  zipkinAddress?: string;
  traceSampling?: string;
  staticConfig?: string;
  mtls?: string;
  trustDomain?: string;
  staticSecurity?: string;
  certRotation?: string;
  mtlsEngine?: string;
}

function port(flag: string, v: string | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > 65535) throw new FieldError(flag, 'must be a port number 1-65535', v);
  return Number(v);
}

function positiveInt(flag: string, v: string | undefined, dflt: number, max = 10_000_000): number {
  if (v === undefined) return dflt;
  if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > max) throw new FieldError(flag, `must be an integer 1-${max}`, v);
  return Number(v);
}

/** A duration flag (src/common/duration.ts: a unit is required), or its default when absent. */
function duration(flag: string, v: string | undefined, dflt: number): number {
  return v === undefined ? dflt : parseDuration(flag, v);
}

/**
 * Istio labels workloads by their owner (Deployment, StatefulSet). Without
 * owner references at hand, strip the ReplicaSet hash and pod suffix that
 * Kubernetes appends ("web-7c9d8f6b5-x2k4q" → "web").
 */
export function workloadFromPodName(pod: string): string {
  if (!pod) return 'unknown';
  return pod.replace(/-[a-z0-9]{6,10}-[a-z0-9]{5}$/, '').replace(/-[a-z0-9]{5}$/, '') || pod;
}

function accessLogChoice(v: string | boolean | undefined): ProxyConfig['accessLog'] {
  if (v === undefined || v === false || v === 'off') return 'off';
  if (v === true || v === 'text') return 'text';
  if (v === 'json') return 'json';
  throw new FieldError('--access-log', 'must be off, text or json', String(v));
}

function positiveIntOrZero(flag: string, v: string, max: number): number {
  if (!/^\d+$/.test(v) || Number(v) > max) throw new FieldError(flag, `must be an integer 0-${max}`, v);
  return Number(v);
}

/** The flag, else Istio's injected ISTIO_META_INTERCEPTION_MODE, else REDIRECT. */
function interceptionMode(flag: string | undefined, env: NodeJS.ProcessEnv): ProxyConfig['interceptionMode'] {
  const [field, v] = flag !== undefined ? ['--interception-mode', flag] : ['ISTIO_META_INTERCEPTION_MODE', env.ISTIO_META_INTERCEPTION_MODE];
  if (v === undefined || v === '') return 'REDIRECT';
  const t = v.trim().toUpperCase();
  if (t === 'REDIRECT' || t === 'TPROXY') return t;
  throw new FieldError(field, 'must be REDIRECT or TPROXY', v);
}

function mtlsChoice(v: string | undefined): ProxyConfig['mtls'] {
  if (v === undefined || v === '') return 'auto';
  if (v === 'off' || v === 'auto' || v === 'required') return v;
  throw new FieldError('--mtls', 'must be off, auto or required', v);
}

function mtlsEngineChoice(v: string | undefined): ProxyConfig['mtlsEngine'] {
  if (v === undefined || v === '') return 'auto';
  if (v === 'auto' || v === 'native' || v === 'node') return v;
  throw new FieldError('--mtls-engine', 'must be auto, native or node', v);
}

function httpEngineChoice(field: string, v: string | undefined): ProxyConfig['httpEngine'] {
  if (v === undefined || v === '') return 'native';
  if (v === 'native' || v === 'js') return v;
  throw new FieldError(field, 'must be native or js', v);
}

function pumpChoice(v: string | undefined): ProxyConfig['pump'] {
  if (v === undefined) return 'auto';
  if (v === 'auto' || v === 'splice' || v === 'stream') return v;
  throw new FieldError('--pump', 'must be auto, splice or stream', v);
}

function nativeAcceptChoice(v: string | undefined): ProxyConfig['nativeAccept'] {
  if (v === undefined) return 'auto';
  if (v === 'auto' || v === 'off') return v;
  throw new FieldError('--native-accept', 'must be auto or off', v);
}

/** Busy-poll window: "off", "0", "200us", "0.2ms" or bare microseconds; at most 10 ms. */
export function parseBusyPoll(field: string, v: string | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  const t = v.trim();
  if (t === 'off') return 0;
  const m = /^(\d+(?:\.\d+)?)(us|µs|ms)?$/.exec(t);
  if (!m) throw new FieldError(field, 'must be off or a duration in microseconds like 200us or 0.2ms', v);
  const us = Math.round(Number(m[1]) * (m[2] === 'ms' ? 1000 : 1));
  if (us > 10_000) throw new FieldError(field, 'must be at most 10ms (a longer window is a spinning thread)', v);
  return us;
}

/** The flag, else Istio's injected ISTIO_META_CLUSTER_ID, else Istio's default "Kubernetes". */
function clusterIdSetting(flag: string | undefined, env: NodeJS.ProcessEnv): string {
  const [field, v] = flag !== undefined ? ['--cluster-id', flag] : ['ISTIO_META_CLUSTER_ID', env.ISTIO_META_CLUSTER_ID];
  if (v === undefined || v === '') return 'Kubernetes';
  if (!isClusterName(v)) throw new FieldError(field, CLUSTER_NAME_RULE, v);
  return v;
}

export function resolveProxyConfig(raw: RawProxyOptions, env: NodeJS.ProcessEnv = process.env): ProxyConfig {
  const podNamespace = raw.podNamespace ?? env.POD_NAMESPACE ?? 'default';
  const podName = raw.podName ?? env.POD_NAME ?? '';
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(podNamespace)) throw new FieldError('--pod-namespace', 'must be a Kubernetes namespace name', podNamespace);
  const cfg: ProxyConfig = {
    ...DEFAULTS,
    controlPlaneSocket: raw.controlPlaneSocket ?? env.WEIR_CONTROL_PLANE_SOCKET ?? DEFAULTS.controlPlaneSocket,
    podNamespace,
    podName,
    clusterId: clusterIdSetting(raw.clusterId, env),
    workload: raw.workload ?? env.WEIR_WORKLOAD ?? workloadFromPodName(podName),
    outboundPort: port('--outbound-port', raw.outboundPort, DEFAULTS.outboundPort),
    inboundPort: port('--inbound-port', raw.inboundPort, DEFAULTS.inboundPort),
    adminPort: port('--admin-port', raw.adminPort, DEFAULTS.adminPort),
    readyPort: port('--ready-port', raw.readyPort, DEFAULTS.readyPort),
    prometheusPort: port('--prometheus-port', raw.prometheusPort, DEFAULTS.prometheusPort),
    maxConnections: positiveInt('--max-connections', raw.maxConnections, DEFAULTS.maxConnections, 1_000_000),
    idleTimeoutMs: duration('--idle-timeout', raw.idleTimeout, DEFAULTS.idleTimeoutMs),
    connectTimeoutMs: duration('--connect-timeout', raw.connectTimeout, DEFAULTS.connectTimeoutMs),
    connectAttempts: positiveInt('--connect-attempts', raw.connectAttempts, DEFAULTS.connectAttempts, 10),
    readyWithoutAgentMs: duration('--ready-without-agent', raw.readyWithoutAgent, DEFAULTS.readyWithoutAgentMs),
    drainTimeoutMs: duration('--drain-timeout', raw.drainTimeout, DEFAULTS.drainTimeoutMs),
    accessLog: accessLogChoice(raw.accessLog ?? env.WEIR_ACCESS_LOG),
    protocolDetectionTimeoutMs: duration('--protocol-detection-timeout', raw.protocolDetectionTimeout, DEFAULTS.protocolDetectionTimeoutMs),
    inboundProtocolDetectionTimeoutMs: duration('--inbound-protocol-detection-timeout', raw.inboundProtocolDetectionTimeout, DEFAULTS.inboundProtocolDetectionTimeoutMs),
    httpRetries: raw.httpRetries === undefined ? DEFAULTS.httpRetries : positiveIntOrZero('--http-retries', raw.httpRetries, 10),
    podLabelsFile: raw.podLabels ?? env.WEIR_POD_LABELS_FILE ?? DEFAULTS.podLabelsFile,
    pump: pumpChoice(raw.pump),
    httpEngine: raw.httpEngine !== undefined ? httpEngineChoice('--http-engine', raw.httpEngine) : httpEngineChoice('WEIR_HTTP_ENGINE', env.WEIR_HTTP_ENGINE),
    nativeAccept: nativeAcceptChoice(raw.nativeAccept ?? env.WEIR_NATIVE_ACCEPT),
    busyPollUs: raw.busyPoll !== undefined
      ? parseBusyPoll('--busy-poll', raw.busyPoll, DEFAULTS.busyPollUs)
      : parseBusyPoll('WEIR_BUSY_POLL', env.WEIR_BUSY_POLL, DEFAULTS.busyPollUs),
    dnsPort: raw.dns === false ? 0 : port('--dns-port', raw.dnsPort, DEFAULTS.dnsPort),
    interceptionMode: interceptionMode(raw.interceptionMode, env),
    tracing: resolveTracing(raw, env),
    staticConfig: raw.staticConfig ?? '',
    mtls: mtlsChoice(raw.mtls ?? env.WEIR_MTLS),
    trustDomain: raw.trustDomain ?? env.WEIR_TRUST_DOMAIN ?? DEFAULTS.trustDomain,
    staticSecurityFile: raw.staticSecurity ?? (env.WEIR_STATIC_SECURITY || undefined),
    certRotationMs: raw.certRotation === undefined || raw.certRotation === '0' ? 0 : parseDuration('--cert-rotation', raw.certRotation),
    mtlsEngine: mtlsEngineChoice(raw.mtlsEngine ?? env.WEIR_MTLS_ENGINE),
  };
  if (!/^[a-z0-9._-]+$/.test(cfg.trustDomain)) throw new FieldError('--trust-domain', 'must be a trust domain name ([a-z0-9._-])', cfg.trustDomain);
  if (cfg.certRotationMs && cfg.certRotationMs < 1000) throw new FieldError('--cert-rotation', 'must be at least 1s', raw.certRotation);
  const ports = [['--outbound-port', cfg.outboundPort], ['--inbound-port', cfg.inboundPort], ['--admin-port', cfg.adminPort], ['--ready-port', cfg.readyPort], ['--prometheus-port', cfg.prometheusPort], ['--dns-port', cfg.dnsPort]] as const;
  for (let i = 0; i < ports.length; i++) {
    for (let j = i + 1; j < ports.length; j++) {
      if (ports[i][1] === ports[j][1] && ports[j][1] !== 0) throw new FieldError(ports[j][0], `same port as ${ports[i][0]}`, String(ports[j][1]));
    }
  }
  return cfg;
}
