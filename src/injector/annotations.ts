// The pod annotations that shape the injected proxy. A malformed value is a
// FieldError naming the annotation: the pod is refused with that message
// rather than injected half-right.
import { parse as parseYaml } from 'yaml';
import { FieldError } from '../common/errors.js';
import type { ObjectMeta } from './k8s.js';

export const ANN = {
  status: 'sidecar.istio.io/status',
  proxyCPU: 'sidecar.istio.io/proxyCPU',
  proxyCPULimit: 'sidecar.istio.io/proxyCPULimit',
  proxyMemory: 'sidecar.istio.io/proxyMemory',
  proxyMemoryLimit: 'sidecar.istio.io/proxyMemoryLimit',
  rewriteProbes: 'sidecar.istio.io/rewriteAppHTTPProbers',
  nativeSidecar: 'sidecar.istio.io/nativeSidecar',
  /** Istio's per-pod ProxyConfig (YAML); weir reads holdApplicationUntilProxyStarts from it. */
  proxyConfig: 'proxy.istio.io/config',
} as const;

// Kubernetes resource.Quantity: a decimal number with an optional binary
// (Ki…Ei), decimal SI (n u m k M G T P E) or exponent suffix.
const QUANTITY = /^[+]?(\d+(\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?\d+)?$/;

export function quantity(meta: ObjectMeta, key: string): string | undefined {
  const v = meta.annotations?.[key];
  if (v === undefined) return undefined;
  const t = v.trim();
  if (!QUANTITY.test(t)) throw new FieldError(`metadata.annotations["${key}"]`, 'must be a Kubernetes quantity like 100m, 0.5, 128Mi or 1Gi', v);
  return t;
}

export function bool(meta: ObjectMeta, key: string): boolean | undefined {
  const v = meta.annotations?.[key];
  if (v === undefined) return undefined;
  const t = v.trim().toLowerCase();
  if (t === 'true') return true;
  if (t === 'false') return false;
  throw new FieldError(`metadata.annotations["${key}"]`, 'must be "true" or "false"', v);
}

/** Resources from the annotations, over the defaults; a request above its limit is an error. */
export function proxyResources(meta: ObjectMeta, defaults: { requests: { cpu: string; memory: string }; limits: { cpu?: string; memory: string } }): { requests: Record<string, string>; limits: Record<string, string> } {
  const requests: Record<string, string> = { cpu: quantity(meta, ANN.proxyCPU) ?? defaults.requests.cpu, memory: quantity(meta, ANN.proxyMemory) ?? defaults.requests.memory };
  const limits: Record<string, string> = {};
  const cpuLimit = quantity(meta, ANN.proxyCPULimit) ?? defaults.limits.cpu;
  const memLimit = quantity(meta, ANN.proxyMemoryLimit) ?? defaults.limits.memory;
  if (cpuLimit) limits.cpu = cpuLimit;
  if (memLimit) limits.memory = memLimit;
  // The API server would refuse the pod anyway; say which annotation to fix.
  if (limits.cpu && toNumber(requests.cpu) > toNumber(limits.cpu)) throw new FieldError(`metadata.annotations["${ANN.proxyCPU}"]`, `request ${requests.cpu} is above the CPU limit ${limits.cpu}`, requests.cpu);
  if (limits.memory && toNumber(requests.memory) > toNumber(limits.memory)) throw new FieldError(`metadata.annotations["${ANN.proxyMemory}"]`, `request ${requests.memory} is above the memory limit ${limits.memory}`, requests.memory);
  return { requests, limits };
}

const SUFFIX: Record<string, number> = {
  Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60,
  n: 1e-9, u: 1e-6, m: 1e-3, '': 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18,
};

/** A quantity's value (for comparing a request with its limit). */
export function toNumber(q: string): number {
  const m = QUANTITY.exec(q);
  if (!m) return Number.NaN;
  const base = Number(m[1]);
  const s = m[3] ?? '';
  if (/^[eE]/.test(s)) return base * 10 ** Number(s.slice(1));
  return base * (SUFFIX[s] ?? Number.NaN);
}

/** `holdApplicationUntilProxyStarts` from the pod's proxy.istio.io/config, as Istio users write it. */
export function holdApplication(meta: ObjectMeta): boolean | undefined {
  const raw = meta.annotations?.[ANN.proxyConfig];
  if (raw === undefined) return undefined;
  const field = `metadata.annotations["${ANN.proxyConfig}"]`;
  let v: unknown;
  try { v = parseYaml(raw); } catch (err) { throw new FieldError(field, `is not YAML: ${(err as Error).message.split('\n')[0]}`); }
  if (v === null || v === undefined) return undefined;
  if (typeof v !== 'object' || Array.isArray(v)) throw new FieldError(field, 'must be a ProxyConfig mapping');
  const hold = (v as Record<string, unknown>).holdApplicationUntilProxyStarts;
  if (hold === undefined) return undefined;
  if (typeof hold !== 'boolean') throw new FieldError(`${field}.holdApplicationUntilProxyStarts`, 'must be true or false', String(hold));
  return hold;
}
