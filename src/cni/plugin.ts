// weir-cni: a chained CNI plugin. It validates what the runtime sent, asks
// the node agent to do the work for this sandbox, and passes the previous
// plugin's result through unchanged. Decisions (capture or not, which rules)
// live in the agent; the plugin only knows which namespaces never need it.
import type { CniAddResponse, CniCheckResponse, CniDelRequest, CniGcResponse, CniPodRequest, AgentReadyResponse } from './agent-protocol.js';
import { callAgent, AgentUnavailableError, type AgentCallOptions } from './agent-client.js';
import { parseConf, parseEnv, sniffVersion, type PluginConf, type PluginEnv } from './conf.js';
import { CniCode, CniError, LATEST_VERSION, MAX_CNI_INPUT_BYTES, SUPPORTED_VERSIONS, errorJson, inputTooLarge, isSupportedVersion, versionAtLeast } from './spec.js';
import { PluginLog } from './plugin-log.js';

export interface PluginOutcome { stdout: string; exitCode: number }

/** How the plugin logic reaches the agent: over its socket (the Node plugin), or in-process (the agent running the logic for the C relay). */
export type AgentCall = <T>(opts: AgentCallOptions, path: string, body?: unknown) => Promise<T>;

/** The result a chained plugin prints: the previous result as received, or an empty one in the conf's version. */
function passThrough(conf: PluginConf): string {
  if (conf.prevResult) return JSON.stringify(conf.prevResult);
  return JSON.stringify({ cniVersion: conf.cniVersion, interfaces: [], ips: [], dns: {} });
}

function podRequest(env: PluginEnv, conf: PluginConf): CniPodRequest {
  return {
    containerId: env.containerId,
    netns: env.netns,
    ifName: env.ifName,
    podNamespace: env.podNamespace,
    podName: env.podName,
    podUid: env.podUid,
    ips: conf.ips,
    cniVersion: conf.cniVersion,
    network: conf.name,
    runtimeConfig: conf.runtimeConfig,
  };
}

function excluded(env: PluginEnv, conf: PluginConf): boolean {
  return env.podNamespace !== undefined && conf.excludeNamespaces.includes(env.podNamespace);
}

async function add(env: PluginEnv, conf: PluginConf, log: PluginLog, call: AgentCall): Promise<string> {
  if (excluded(env, conf)) {
    log.log('debug', 'namespace excluded from capture; agent not asked', { reason: 'excluded-namespace' });
    return passThrough(conf);
  }
  const agent = { socketPath: conf.agentSocket, timeoutMs: conf.agentTimeoutMs };
  try {
    const res = await call<CniAddResponse>(agent, '/cni/add', podRequest(env, conf));
    log.log('info', res.captured ? 'traffic capture programmed' : 'not captured', { reason: res.reason, backend: res.backend });
    return passThrough(conf);
  } catch (e) {
    if (e instanceof AgentUnavailableError) {
      // The agent may have started programming before we gave up; ask it
      // (briefly) to undo, so a failed ADD leaves nothing behind even if the
      // runtime never sends DEL.
      await call({ ...agent, timeoutMs: Math.min(1000, agent.timeoutMs) }, '/cni/del', { containerId: env.containerId, ifName: env.ifName, netns: env.netns } satisfies CniDelRequest)
        .catch(() => undefined);
    }
    throw e;
  }
}

async function del(env: PluginEnv, conf: PluginConf, log: PluginLog, call: AgentCall): Promise<string> {
  // DEL must succeed whatever happens: the sandbox is going away either way,
  // and a failing DEL wedges the runtime's teardown. Leftover records are
  // removed by the agent's GC.
  const req: CniDelRequest = { ...podRequest(env, conf) };
  try {
    await call(agent(conf), '/cni/del', req);
  } catch (e) {
    log.log('warn', `DEL not confirmed by the agent (ignored): ${(e as Error).message}`);
  }
  return '';
}

const agent = (conf: PluginConf) => ({ socketPath: conf.agentSocket, timeoutMs: conf.agentTimeoutMs });

async function check(env: PluginEnv, conf: PluginConf, call: AgentCall): Promise<string> {
  if (!versionAtLeast(conf.cniVersion, '0.4.0')) throw new CniError(CniCode.incompatibleVersion, `stdin.cniVersion: CHECK needs 0.4.0 or later, conf has ${conf.cniVersion}`);
  if (!conf.prevResult) throw new CniError(CniCode.invalidConfig, 'stdin.prevResult: CHECK needs the previous result');
  if (excluded(env, conf)) return '';
  await call<CniCheckResponse>(agent(conf), '/cni/check', podRequest(env, conf));
  return '';
}

async function status(conf: PluginConf, call: AgentCall): Promise<string> {
  let ready: AgentReadyResponse;
  try {
    ready = await call<AgentReadyResponse>(agent(conf), '/ready');
  } catch (e) {
    throw new CniError(CniCode.notAvailable, `weir agent not available: ${(e as Error).message}`);
  }
  if (!ready.ready) throw new CniError(CniCode.notAvailable, `weir agent not ready: ${ready.reason}`);
  return '';
}

async function gc(conf: PluginConf, log: PluginLog, call: AgentCall): Promise<string> {
  const res = await call<CniGcResponse>(agent(conf), '/cni/gc', { validAttachments: conf.validAttachments ?? [] });
  if (res.removed.length > 0) log.log('info', 'removed capture leftovers', { removed: res.removed });
  return '';
}

function version(stdin: string): string {
  // The runtime may send {"cniVersion": X}; answer in X when weir speaks it.
  let v: string = LATEST_VERSION;
  try {
    const asked = (JSON.parse(stdin) as { cniVersion?: unknown }).cniVersion;
    if (isSupportedVersion(asked)) v = asked;
  } catch { /* empty or garbage stdin: answer in the latest version */ }
  return JSON.stringify({ cniVersion: v, supportedVersions: [...SUPPORTED_VERSIONS] });
}

export async function runPlugin(processEnv: NodeJS.ProcessEnv, stdin: string, log = new PluginLog(), agentCall: AgentCall = callAgent): Promise<PluginOutcome> {
  const size = Buffer.byteLength(stdin);
  if (size > MAX_CNI_INPUT_BYTES) return { stdout: errorJson(LATEST_VERSION, inputTooLarge(size)), exitCode: 1 };
  let answerVersion = sniffVersion(stdin);
  try {
    if (processEnv.CNI_COMMAND === 'VERSION') return { stdout: version(stdin), exitCode: 0 };
    const env = parseEnv(processEnv);
    const conf = parseConf(stdin);
    answerVersion = conf.cniVersion;
    log.configure(conf.logLevel, conf.agentSocket, { containerId: env.containerId || undefined, podNamespace: env.podNamespace, podName: env.podName });
    if ((env.command === 'STATUS' || env.command === 'GC') && !versionAtLeast(conf.cniVersion, '1.1.0')) {
      throw new CniError(CniCode.incompatibleVersion, `stdin.cniVersion: ${env.command} needs 1.1.0, conf has ${conf.cniVersion}`);
    }
    let out = '';
    switch (env.command) {
      case 'ADD': out = await add(env, conf, log, agentCall); break;
      case 'DEL': out = await del(env, conf, log, agentCall); break;
      case 'CHECK': out = await check(env, conf, agentCall); break;
      case 'STATUS': out = await status(conf, agentCall); break;
      case 'GC': out = await gc(conf, log, agentCall); break;
    }
    return { stdout: out, exitCode: 0 };
  } catch (e) {
    const err = e instanceof CniError ? e : new CniError(CniCode.ioFailure, `weir-cni internal error: ${(e as Error).message}`);
    log.log('error', err.message, { code: err.code, command: processEnv.CNI_COMMAND });
    return { stdout: errorJson(answerVersion, err), exitCode: 1 };
  } finally {
    await log.flush();
  }
}
