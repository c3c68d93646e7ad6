// The plugin's network configuration (stdin) and environment, validated so
// every error names the field or variable a person has to fix.
import { CniCode, CniError, LATEST_VERSION, SUPPORTED_VERSIONS, isSupportedVersion, resultIps, type CniVersion } from './spec.js';
import { DEFAULT_AGENT_SOCKET } from './agent-protocol.js';

export const DEFAULT_EXCLUDE_NAMESPACES = ['kube-system'];
export const DEFAULT_AGENT_TIMEOUT_MS = 5000;
/** Upper bound: the kubelet's own CNI timeout is minutes, but a stuck ADD blocks the pod; 30 s is plenty for a local socket. */
export const MAX_AGENT_TIMEOUT_MS = 30000;
export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface PluginConf {
  cniVersion: CniVersion;
  name: string;
  type: string;
  agentSocket: string;
  excludeNamespaces: string[];
  agentTimeoutMs: number;
  logLevel: LogLevel;
  /** Raw prevResult object, echoed back unchanged. */
  prevResult?: Record<string, unknown>;
  /** Addresses (no prefix) from prevResult.ips. */
  ips: string[];
  runtimeConfig?: Record<string, unknown>;
  /** GC only: cni.dev/valid-attachments. */
  validAttachments?: { containerId: string; ifName: string }[];
}

const CONF_FIELD = 'stdin';

function fail(code: number, msg: string, details?: string): never {
  throw new CniError(code, msg, details);
}

/** Best effort: the version to answer errors in, even when the conf is otherwise bad. */
export function sniffVersion(stdin: string): string {
  try {
    const v = (JSON.parse(stdin) as { cniVersion?: unknown }).cniVersion;
    if (isSupportedVersion(v)) return v;
  } catch { /* fall through */ }
  return LATEST_VERSION;
}

export function parseConf(stdin: string, opts: { requireName?: boolean } = {}): PluginConf {
  let raw: unknown;
  try {
    raw = JSON.parse(stdin);
  } catch (e) {
    fail(CniCode.decodeFailure, `${CONF_FIELD}: network configuration is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) fail(CniCode.decodeFailure, `${CONF_FIELD}: network configuration must be a JSON object`);
  const c = raw as Record<string, unknown>;

  if (c.cniVersion === undefined) fail(CniCode.invalidConfig, `${CONF_FIELD}.cniVersion: missing`);
  if (!isSupportedVersion(c.cniVersion)) {
    fail(CniCode.incompatibleVersion, `${CONF_FIELD}.cniVersion: ${JSON.stringify(c.cniVersion)} is not supported by weir-cni (supported: ${SUPPORTED_VERSIONS.join(', ')})`);
  }
  const name = c.name;
  if (opts.requireName !== false && (typeof name !== 'string' || name === '')) fail(CniCode.invalidConfig, `${CONF_FIELD}.name: must be a non-empty string`);
  if (c.type !== undefined && typeof c.type !== 'string') fail(CniCode.invalidConfig, `${CONF_FIELD}.type: must be a string`);

  const agentSocket = c.agentSocket ?? DEFAULT_AGENT_SOCKET;
  if (typeof agentSocket !== 'string' || !agentSocket.startsWith('/')) fail(CniCode.invalidConfig, `${CONF_FIELD}.agentSocket: must be an absolute path`, JSON.stringify(agentSocket));

  const excludeNamespaces = c.excludeNamespaces ?? DEFAULT_EXCLUDE_NAMESPACES;
  if (!Array.isArray(excludeNamespaces) || excludeNamespaces.some((n) => typeof n !== 'string' || n === '')) {
    fail(CniCode.invalidConfig, `${CONF_FIELD}.excludeNamespaces: must be a list of namespace names`);
  }

  const agentTimeoutMs = c.agentTimeoutMs ?? DEFAULT_AGENT_TIMEOUT_MS;
  if (typeof agentTimeoutMs !== 'number' || !Number.isInteger(agentTimeoutMs) || agentTimeoutMs < 100 || agentTimeoutMs > MAX_AGENT_TIMEOUT_MS) {
    fail(CniCode.invalidConfig, `${CONF_FIELD}.agentTimeoutMs: must be an integer between 100 and ${MAX_AGENT_TIMEOUT_MS}`, JSON.stringify(agentTimeoutMs));
  }

  const logLevel = c.logLevel ?? 'info';
  if (!(LOG_LEVELS as readonly unknown[]).includes(logLevel)) fail(CniCode.invalidConfig, `${CONF_FIELD}.logLevel: must be one of ${LOG_LEVELS.join(', ')}`, JSON.stringify(logLevel));

  let prevResult: Record<string, unknown> | undefined;
  if (c.prevResult !== undefined && c.prevResult !== null) {
    if (typeof c.prevResult !== 'object' || Array.isArray(c.prevResult)) fail(CniCode.invalidConfig, `${CONF_FIELD}.prevResult: must be an object`);
    prevResult = c.prevResult as Record<string, unknown>;
  }
  const ips = resultIps(prevResult, `${CONF_FIELD}.prevResult`);

  let runtimeConfig: Record<string, unknown> | undefined;
  if (c.runtimeConfig !== undefined) {
    if (typeof c.runtimeConfig !== 'object' || c.runtimeConfig === null || Array.isArray(c.runtimeConfig)) fail(CniCode.invalidConfig, `${CONF_FIELD}.runtimeConfig: must be an object`);
    runtimeConfig = c.runtimeConfig as Record<string, unknown>;
  }

  let validAttachments: PluginConf['validAttachments'];
  const va = c['cni.dev/valid-attachments'];
  if (va !== undefined) {
    if (!Array.isArray(va)) fail(CniCode.invalidConfig, `${CONF_FIELD}.cni.dev/valid-attachments: must be a list`);
    validAttachments = va.map((a, i) => {
      const o = a as { containerID?: unknown; ifname?: unknown } | null;
      if (typeof o?.containerID !== 'string' || typeof o?.ifname !== 'string') {
        fail(CniCode.invalidConfig, `${CONF_FIELD}.cni.dev/valid-attachments[${i}]: needs string containerID and ifname`);
      }
      return { containerId: o.containerID, ifName: o.ifname };
    });
  }

  return {
    cniVersion: c.cniVersion,
    name: typeof name === 'string' ? name : '',
    type: typeof c.type === 'string' ? c.type : 'weir-cni',
    agentSocket,
    excludeNamespaces: excludeNamespaces as string[],
    agentTimeoutMs,
    logLevel: logLevel as LogLevel,
    prevResult,
    ips,
    runtimeConfig,
    validAttachments,
  };
}

export const COMMANDS = ['ADD', 'DEL', 'CHECK', 'VERSION', 'STATUS', 'GC'] as const;
export type CniCommand = (typeof COMMANDS)[number];

export interface PluginEnv {
  command: CniCommand;
  containerId: string;
  netns: string;
  ifName: string;
  /** Parsed CNI_ARGS (K=V;K=V). */
  args: Record<string, string>;
  podNamespace?: string;
  podName?: string;
  podUid?: string;
}

/** CNI_ARGS: "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=n;..." */
export function parseCniArgs(text: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!text) return out;
  for (const pair of text.split(';')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    if (eq <= 0) fail(CniCode.invalidEnv, `CNI_ARGS: expected KEY=VALUE pairs separated by ';'`, pair);
    out[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return out;
}

const CONTAINER_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

export function parseEnv(env: NodeJS.ProcessEnv): PluginEnv {
  const command = env.CNI_COMMAND;
  if (!command) fail(CniCode.invalidEnv, 'CNI_COMMAND: missing');
  if (!(COMMANDS as readonly string[]).includes(command)) fail(CniCode.invalidEnv, `CNI_COMMAND: unknown command (expected one of ${COMMANDS.join(', ')})`, command);
  const cmd = command as CniCommand;
  const perSandbox = cmd === 'ADD' || cmd === 'DEL' || cmd === 'CHECK';
  const containerId = env.CNI_CONTAINERID ?? '';
  const netns = env.CNI_NETNS ?? '';
  const ifName = env.CNI_IFNAME ?? '';
  if (perSandbox) {
    if (!containerId) fail(CniCode.invalidEnv, 'CNI_CONTAINERID: missing');
    if (!CONTAINER_ID.test(containerId)) fail(CniCode.invalidEnv, 'CNI_CONTAINERID: must be alphanumeric with _ . -', containerId);
    if (!ifName) fail(CniCode.invalidEnv, 'CNI_IFNAME: missing');
    // DEL may come without a netns (containerd's second DEL after the sandbox is gone).
    if (cmd !== 'DEL' && !netns) fail(CniCode.invalidEnv, 'CNI_NETNS: missing');
    if (netns && !netns.startsWith('/')) fail(CniCode.invalidEnv, 'CNI_NETNS: must be an absolute path', netns);
  }
  const args = parseCniArgs(env.CNI_ARGS);
  return {
    command: cmd,
    containerId,
    netns,
    ifName,
    args,
    podNamespace: args.K8S_POD_NAMESPACE || undefined,
    podName: args.K8S_POD_NAME || undefined,
    podUid: args.K8S_POD_UID || undefined,
  };
}
