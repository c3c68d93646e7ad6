// Schemas of the messages the CNI plugin (the C relay, or the Node plugin)
// sends the agent on cni.sock. Every body is checked here before any field
// is used, so a malformed one is a 400 naming the field (CNI code 7) and
// never an exception inside the controller. The socket is root-only, but a
// confused or hostile root process must not be able to crash the agent.
import path from 'node:path';
import type { CniGcRequest, CniLogLine, CniPodRequest } from '../cni/agent-protocol.js';
import { MAX_CNI_INPUT_BYTES } from '../cni/spec.js';

export class BadRequest extends Error {}

/**
 * Largest /v1/cni/exec body: the stdin limit after the relay's JSON escaping
 * (a control byte becomes 6 bytes) plus the CNI_* variables (the kernel caps
 * each at 128 KiB). Anything larger cannot be valid, so it is refused
 * without buffering it; the decoded stdin is then held to MAX_CNI_INPUT_BYTES.
 */
export const MAX_EXEC_BODY_BYTES = 6 * (MAX_CNI_INPUT_BYTES + 6 * 128 * 1024) + 4096;
/** Every other route carries a small JSON object. */
export const MAX_OP_BODY_BYTES = 1 << 20;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function str(o: Record<string, unknown>, field: string, required: boolean): string | undefined {
  const v = o[field];
  if (v === undefined || v === null || v === '') {
    if (required) throw new BadRequest(`${field}: missing`);
    return undefined;
  }
  if (typeof v !== 'string') throw new BadRequest(`${field}: must be a string`);
  return v;
}

export function podRequest(body: unknown, netnsRequired: boolean): CniPodRequest {
  if (!isObject(body)) throw new BadRequest('body: must be an object');
  const o = body;
  const ips = o.ips ?? [];
  if (!Array.isArray(ips) || ips.some((x) => typeof x !== 'string')) throw new BadRequest('ips: must be a list of strings');
  const netns = str(o, 'netns', netnsRequired) ?? '';
  if (netns && !path.isAbsolute(netns)) throw new BadRequest('netns: must be an absolute path');
  if (o.runtimeConfig !== undefined && o.runtimeConfig !== null && !isObject(o.runtimeConfig)) throw new BadRequest('runtimeConfig: must be an object');
  return {
    containerId: str(o, 'containerId', true)!,
    ifName: str(o, 'ifName', true)!,
    netns,
    podNamespace: str(o, 'podNamespace', false),
    podName: str(o, 'podName', false),
    podUid: str(o, 'podUid', false),
    ips: ips as string[],
    cniVersion: str(o, 'cniVersion', false) ?? '',
    network: str(o, 'network', false) ?? '',
    runtimeConfig: isObject(o.runtimeConfig) ? o.runtimeConfig : undefined,
  };
}

export function gcRequest(body: unknown): CniGcRequest {
  const valid = isObject(body) ? body.validAttachments : undefined;
  if (!Array.isArray(valid) || valid.some((v) => !isObject(v) || typeof v.containerId !== 'string' || typeof v.ifName !== 'string')) {
    throw new BadRequest('validAttachments: must be a list of {containerId, ifName}');
  }
  return { validAttachments: valid as CniGcRequest['validAttachments'] };
}

const LEVELS = ['debug', 'info', 'warn', 'error'] as const;

/** A plugin log line; lenient (a log line is never worth failing a pod for) but every field typed. */
export function logLine(body: unknown): CniLogLine {
  const o = isObject(body) ? body : {};
  const text = (k: string): string | undefined => (typeof o[k] === 'string' ? o[k] as string : undefined);
  return {
    level: (LEVELS as readonly unknown[]).includes(o.level) ? o.level as CniLogLine['level'] : 'info',
    msg: text('msg') ?? '',
    containerId: text('containerId'),
    podNamespace: text('podNamespace'),
    podName: text('podName'),
    fields: isObject(o.fields) ? o.fields : undefined,
  };
}

/** POST /v1/cni/exec: `{env: {CNI_*: string}, stdin: string}` from the C relay. Non-CNI_ variables are dropped. */
export function execRequest(body: unknown): { env: NodeJS.ProcessEnv; stdin: string } {
  if (!isObject(body)) throw new BadRequest('body: must be an object');
  const { env: rawEnv, stdin } = body;
  if (!isObject(rawEnv)) throw new BadRequest('env: must be an object of strings');
  if (typeof stdin !== 'string') throw new BadRequest('stdin: must be a string');
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(rawEnv)) {
    if (!k.startsWith('CNI_')) continue;
    if (typeof v !== 'string') throw new BadRequest(`env.${k}: must be a string`);
    env[k] = v;
  }
  return { env, stdin };
}
