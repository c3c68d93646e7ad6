// Pod → RedirectPlan: the one place annotations and the proxy container's
// securityContext are read. Renderers and backends only see the plan.
import { createHash } from 'node:crypto';
import { FieldError } from '../common/errors.js';
import type { Pod } from '../kube/pod-types.js';
import { containerEnv, DEFAULT_PROXY_CONTAINER_NAMES, findProxyContainer, type ProxyContainer } from '../kube/proxy-container.js';
import { normalisePorts } from './addr.js';
import {
  ANNOTATIONS, parseBackend, parseBoolean, parseCidrList, parseCidrSelector, parseId, parseInterceptionMode,
  parseInterfaceList, parsePortList, parsePortSelector,
} from './annotations.js';
import type { PlanSettings, PortRange, RedirectPlan } from './types.js';

export const DEFAULT_PROXY_ID = 1337;
export const INBOUND_CAPTURE_PORT = 15006;
export const OUTBOUND_CAPTURE_PORT = 15001;
export const DNS_CAPTURE_PORT = 15053;
/** Tunnel, merged metrics, health, Prometheus: never captured inbound. */
export const ALWAYS_EXCLUDED_INBOUND = [15008, 15020, 15021, 15090] as const;
/** Linkerd's proxy-init defaults, as linkerd-cni programs them. */
export const LINKERD_INBOUND_PORT = 4143;
export const LINKERD_OUTBOUND_PORT = 4140;
export const LINKERD_PROXY_UID = 2102;
/** linkerd-proxy's control (tap) and admin ports: never captured inbound. */
export const LINKERD_IGNORED_INBOUND = [4190, 4191] as const;
/** Istio's TPROXY constants: the packet mark and the policy routing table. */
export const TPROXY_MARK = 1337;
export const TPROXY_ROUTE_TABLE = 133;

/**
 * The proxy's uid and gid: the proxy container's securityContext first (it
 * is what the proxy really runs as), then Linkerd's proxy-uid annotation,
 * then the default. The gid follows the uid when only the uid is known, so
 * a custom uid never leaves an unrelated gid 1337 exempt.
 */
function proxyIdentity(pod: Pod, settings: PlanSettings, found: ProxyContainer | undefined): { uid: number; gid: number } {
  const sc = found?.container.securityContext;
  const annotation = pod.metadata.annotations?.[ANNOTATIONS.linkerdProxyUid];
  let uid: number | undefined;
  if (sc?.runAsUser !== undefined) uid = parseId(`${found!.where}.securityContext.runAsUser`, sc.runAsUser);
  else if (annotation !== undefined) uid = parseId(ANNOTATIONS.linkerdProxyUid, annotation);
  let gid: number | undefined;
  if (sc?.runAsGroup !== undefined) gid = parseId(`${found!.where}.securityContext.runAsGroup`, sc.runAsGroup);
  // linkerd-proxy runs as 2102 with no group of its own: only its uid is exempt, so the gid follows.
  const defaultUid = found?.kind === 'linkerd' ? LINKERD_PROXY_UID : settings.defaultProxyUid ?? DEFAULT_PROXY_ID;
  const defaultGid = found?.kind === 'linkerd' ? (uid ?? LINKERD_PROXY_UID) : settings.defaultProxyGid ?? DEFAULT_PROXY_ID;
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
  const found = findProxyContainer(pod, settings.proxyContainerNames ?? DEFAULT_PROXY_CONTAINER_NAMES);
  const linkerd = found?.kind === 'linkerd';
  const { uid, gid } = proxyIdentity(pod, settings, found);

  const includeInboundText = get(ANNOTATIONS.includeInboundPorts);
  const includeInbound = includeInboundText === undefined ? 'all' : parsePortSelector(ANNOTATIONS.includeInboundPorts, includeInboundText);
  const excludeInbound = normalisePorts([
    ...(linkerd ? LINKERD_IGNORED_INBOUND : ALWAYS_EXCLUDED_INBOUND).map(single),
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

  const backendText = get(ANNOTATIONS.backend);
  const backend = backendText === undefined ? undefined : parseBackend(backendText);
  const dnsText = get(ANNOTATIONS.dnsCapture);
  const dnsEnabled = dnsText === undefined ? dnsDefault(found, settings) : parseBoolean(ANNOTATIONS.dnsCapture, dnsText);

  return {
    version: 1,
    mode,
    // Optional keys appear only when they apply, so the plans (and plan
    // hashes) of plain Istio-style REDIRECT pods do not change with them.
    ...(linkerd ? { style: 'linkerd' as const } : {}),
    ...(backend ? { backend } : {}),
    ...(mode === 'TPROXY' ? { tproxy: { mark: TPROXY_MARK, routeTable: TPROXY_ROUTE_TABLE } } : {}),
    proxyUid: uid,
    proxyGid: gid,
    inboundPort: linkerd ? LINKERD_INBOUND_PORT : INBOUND_CAPTURE_PORT,
    outboundPort: linkerd ? LINKERD_OUTBOUND_PORT : OUTBOUND_CAPTURE_PORT,
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

/**
 * DNS capture unless the pod says otherwise: a stock istio-proxy has no DNS
 * listener on 15053 unless its agent was told to (ISTIO_META_DNS_CAPTURE,
 * exactly the test istio-cni makes), linkerd-proxy never has one, weir's own
 * proxy always does. settings.captureDns false turns it off node-wide.
 */
function dnsDefault(found: ProxyContainer | undefined, settings: PlanSettings): boolean {
  if (settings.captureDns === false) return false;
  if (found?.kind === 'istio') return containerEnv(found.container, 'ISTIO_META_DNS_CAPTURE')?.trim().toLowerCase() === 'true';
  if (found?.kind === 'linkerd') return false;
  return true;
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
