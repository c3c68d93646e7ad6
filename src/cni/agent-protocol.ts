// Wire protocol between the weir-cni plugin and the node agent: HTTP/1.1 with
// JSON bodies over a unix socket (default /var/run/weir/cni.sock). Versioned
// by path prefix; the agent answers 404 for unknown versions so an old plugin
// fails loudly rather than half-working.
export const CNI_API_PREFIX = '/v1';
export const DEFAULT_AGENT_SOCKET = '/var/run/weir/cni.sock';

/** POST /v1/cni/add, /v1/cni/check */
export interface CniPodRequest {
  containerId: string;
  /** May be empty on DEL (containerd's second DEL). */
  netns: string;
  ifName: string;
  podNamespace?: string;
  podName?: string;
  podUid?: string;
  /** Pod IPs from prevResult. */
  ips: string[];
  cniVersion: string;
  /** Network name from the conf. */
  network: string;
  /** runtimeConfig from the conf, if any (may carry pod annotations). */
  runtimeConfig?: Record<string, unknown>;
}

/** 200 answer to ADD. */
export interface CniAddResponse {
  captured: boolean;
  /** Why (not) captured: see capture-decision reasons. */
  reason: string;
  backend?: string;
  planHash?: string;
}

/** 200 answer to CHECK; a drift is a 409 CniErrorBody. */
export interface CniCheckResponse { ok: true; captured: boolean }

/** POST /v1/cni/del: same fields, netns and pod fields may be missing. Always 200 unless the agent is broken. */
export type CniDelRequest = Partial<CniPodRequest> & { containerId: string; ifName: string };

/** POST /v1/cni/gc */
export interface CniGcRequest { validAttachments: { containerId: string; ifName: string }[] }
export interface CniGcResponse { removed: string[] }

/** GET /v1/ready */
export interface AgentReadyResponse { ready: boolean; reason: string }

/** POST /v1/log: the plugin's log lines, shown in the agent's log with the pod's name. */
export interface CniLogLine { level: 'debug' | 'info' | 'warn' | 'error'; msg: string; containerId?: string; podNamespace?: string; podName?: string; fields?: Record<string, unknown> }

/** Body of every non-2xx answer. `cniCode` is the CNI error code the plugin must return. */
export interface CniErrorBody { cniCode: number; msg: string; details?: string }
