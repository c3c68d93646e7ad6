// Pod → RedirectPlan: the one place annotations and the proxy container's
// securityContext are read. Renderers and backends only see the plan.
import { createHash } from 'node:crypto';
import { FieldError } from '../common/errors.js';
import type { Pod } from '../kube/pod-types.js';
import { DEFAULT_PROXY_CONTAINER_NAMES, findProxyContainer } from '../kube/proxy-container.js';
import { normalisePorts } from './addr.js';
import {
  ANNOTATIONS, parseBoolean, parseCidrList, parseCidrSelector, parseId, parseInterceptionMode,
  parseInterfaceList, parsePortList, parsePortSelector,
} from './annotations.js';
import type { PlanSettings, PortRange, RedirectPlan } from './types.js';

export const DEFAULT_PROXY_ID = 1337;
export const INBOUND_CAPTURE_PORT = 15006;
export const OUTBOUND_CAPTURE_PORT = 15001;
export const DNS_CAPTURE_PORT = 15053;
/** Tunnel, merged metrics, health, Prometheus: never captured inbound. */
export const ALWAYS_EXCLUDED_INBOUND = [15008, 15020, 15021, 15090] as const;
/**
 * The proxy's uid and gid: the proxy container's securityContext first (it
 * is what the proxy really runs as), then Linkerd's proxy-uid annotation,
 * then the default. The gid follows the uid when only the uid is known, so
 * a custom uid never leaves an unrelated gid 1337 exempt.
 */
function proxyIdentity(pod: Pod, settings: PlanSettings): { uid: number; gid: number } {
  const found = findProxyContainer(pod, settings.proxyContainerNames ?? DEFAULT_PROXY_CONTAINER_NAMES);
  const sc = found?.container.securityContext;
  const annotation = pod.metadata.annotations?.[ANNOTATIONS.linkerdProxyUid];
  let uid: number | undefined;
  if (sc?.runAsUser !== undefined) uid = parseId(`${found!.where}.securityContext.runAsUser`, sc.runAsUser);
  else if (annotation !== undefined) uid = parseId(ANNOTATIONS.linkerdProxyUid, annotation);
  let gid: number | undefined;
  if (sc?.runAsGroup !== undefined) gid = parseId(`${found!.where}.securityContext.runAsGroup`, sc.runAsGroup);
  const defaultUid = settings.defaultProxyUid ?? DEFAULT_PROXY_ID;
  const defaultGid = settings.defaultProxyGid ?? DEFAULT_PROXY_ID;
  return { uid: uid ?? defaultUid, gid: gid ?? (uid !== undefined ? uid : defaultGid) };
}

const single = (p: number): PortRange => ({ from: p, to: p });

/** Builds the plan; throws FieldError naming the annotation and token on any malformed value. */
export function buildPlan(pod: Pod, settings: PlanSettings = {}): RedirectPlan {
  if (!pod || typeof pod !== 'object' || !pod.metadata || typeof pod.metadata !== 'object') {
    throw new FieldError('metadata', 'pod has no metadata object');
  }
  const ann = pod.metadata.annotations ?? {};
  for (const [k, v] of Object.entries(ann)) {
    if (typeof v !== 'string') throw new FieldError(`metadata.annotations.${k}`, 'annotation values must be strings', JSON.stringify(v));
  }
  const get = (name: string): string | undefined => ann[name];

  const modeText = get(ANNOTATIONS.interceptionMode);
  const mode = modeText === undefined ? 'REDIRECT' : parseInterceptionMode(modeText);
  const { uid, gid } = proxyIdentity(pod, settings);

  const includeInboundText = get(ANNOTATIONS.includeInboundPorts);
  const includeInbound = includeInboundText === undefined ? 'all' : parsePortSelector(ANNOTATIONS.includeInboundPorts, includeInboundText);
  const excludeInbound = normalisePorts([
    ...ALWAYS_EXCLUDED_INBOUND.map(single),
    ...parsePortList(ANNOTATIONS.excludeInboundPorts, get(ANNOTATIONS.excludeInboundPorts) ?? ''),
    ...parsePortList(ANNOTATIONS.linkerdSkipInboundPorts, get(ANNOTATIONS.linkerdSkipInboundPorts) ?? ''),
  ]);

  const includeCidrsText = get(ANNOTATIONS.includeOutboundIPRanges);
  const includeCidrs = includeCidrsText === undefined ? 'all' : parseCidrSelector(ANNOTATIONS.includeOutboundIPRanges, includeCidrsText);
  const excludeCidrs = parseCidrList(ANNOTATIONS.excludeOutboundIPRanges, get(ANNOTATIONS.excludeOutboundIPRanges) ?? '');
  const skipSubnets = parseCidrList(ANNOTATIONS.linkerdSkipSubnets, get(ANNOTATIONS.linkerdSkipSubnets) ?? '');
  const excludeOutboundPorts = normalisePorts([
    ...parsePortList(ANNOTATIONS.excludeOutboundPorts, get(ANNOTATIONS.excludeOutboundPorts) ?? ''),
    ...parsePortList(ANNOTATIONS.linkerdSkipOutboundPorts, get(ANNOTATIONS.linkerdSkipOutboundPorts) ?? ''),
  ]);
  const includeOutboundPorts = parsePortList(ANNOTATIONS.includeOutboundPorts, get(ANNOTATIONS.includeOutboundPorts) ?? '');

  const dnsText = get(ANNOTATIONS.dnsCapture);
  const dnsEnabled = dnsText === undefined ? (settings.captureDns ?? true) : parseBoolean(ANNOTATIONS.dnsCapture, dnsText);

  return {
    version: 1,
    mode,
    proxyUid: uid,
    proxyGid: gid,
    inboundPort: INBOUND_CAPTURE_PORT,
    outboundPort: OUTBOUND_CAPTURE_PORT,
    dns: { enabled: dnsEnabled, port: DNS_CAPTURE_PORT },
    inbound: {
      capture: includeInbound === 'all' ? 'all' : includeInbound.length === 0 ? 'none' : 'list',
      includePorts: includeInbound === 'all' ? [] : includeInbound,
      excludePorts: excludeInbound,
    },
    outbound: {
      includeCidrs,
      excludeCidrs: normaliseCidrsUnion(excludeCidrs, skipSubnets),
      includePorts: includeOutboundPorts,
      excludePorts: excludeOutboundPorts,
    },
    excludeInterfaces: parseInterfaceList(ANNOTATIONS.excludeInterfaces, get(ANNOTATIONS.excludeInterfaces) ?? ''),
  };
}

function normaliseCidrsUnion(a: RedirectPlan['outbound']['excludeCidrs'], b: RedirectPlan['outbound']['excludeCidrs']) {
  return parseCidrList('(merged)', [...a, ...b].map((c) => `${c.address}/${c.prefix}`).join(','));
}

/** JSON with object keys sorted, so equal plans serialise identically. */
export function canonicalPlanJson(plan: RedirectPlan): string {
  const sortKeys = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(sortKeys);
    if (v && typeof v === 'object') {
      return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortKeys((v as Record<string, unknown>)[k])]));
    }
    return v;
  };
  return JSON.stringify(sortKeys(plan));
}

/** Short stable hash of the canonical plan: recorded in the netns to tell which plan is programmed. */
export function planHash(plan: RedirectPlan): string {
  return createHash('sha256').update(canonicalPlanJson(plan)).digest('hex').slice(0, 12);
}
