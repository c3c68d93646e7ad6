// One entry for every Istio resource weir reads: apiVersion/kind dispatch
// (networking.istio.io v1, v1beta1, v1alpha3 are the same schema), metadata,
// and the readers per kind. Returns the typed resource, or undefined when
// an error makes it unusable, plus every problem found.
import { Reader, type Problem } from './schema.js';
import { readHttpRoute, readL4Route, HOST_PATTERN } from './read-virtual-service.js';
import { readTrafficPolicy } from './read-destination-rule.js';
import type { DestinationRule, IstioResource, Meta, ServiceEntry, Sidecar, VirtualService } from './types.js';

export const NETWORKING_VERSIONS = ['networking.istio.io/v1', 'networking.istio.io/v1beta1', 'networking.istio.io/v1alpha3'];
export const KINDS = ['VirtualService', 'DestinationRule', 'ServiceEntry', 'Sidecar'] as const;

const NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

export interface ReadResult { resource?: IstioResource; problems: Problem[]; kind?: string; namespace?: string; name?: string }

export function meta(r: Reader, v: unknown, defaultNamespace: string): Meta | undefined {
  const m = (v && typeof v === 'object' && !Array.isArray(v) ? v : undefined) as Record<string, unknown> | undefined;
  if (!m) return r.error('metadata', 'is required');
  const name = r.string('metadata.name', m.name, { required: true, pattern: NAME, what: 'a DNS-1123 name' });
  const namespace = r.string('metadata.namespace', m.namespace, { pattern: NAME, what: 'a DNS-1123 name' }) ?? defaultNamespace;
  const ts = typeof m.creationTimestamp === 'string' ? Date.parse(m.creationTimestamp) : NaN;
  return name ? { name, namespace, created: Number.isFinite(ts) ? ts : 0 } : undefined;
}

function exportTo(r: Reader, v: unknown): string[] {
  const e = r.strings('spec.exportTo', v);
  return e.length ? e : ['*'];
}

function readVirtualService(r: Reader, m: Meta, s: Record<string, unknown>): VirtualService {
  const hosts = r.array('spec.hosts', s.hosts, (x, f) => r.string(f, x, { required: true, pattern: HOST_PATTERN, what: 'a host name or wildcard' }));
  if (hosts.length === 0) r.error('spec.hosts', 'is required (at least one host)');
  const gateways = r.strings('spec.gateways', s.gateways);
  if (gateways.length && !gateways.includes('mesh')) r.warning('spec.gateways', 'does not include "mesh": sidecars ignore this VirtualService');
  return {
    kind: 'VirtualService', meta: m, hosts, gateways, exportTo: exportTo(r, s.exportTo),
    http: r.array('spec.http', s.http, (x, f) => readHttpRoute(r, f, x)),
    tcp: r.array('spec.tcp', s.tcp, (x, f) => readL4Route(r, f, x, false)),
    tls: r.array('spec.tls', s.tls, (x, f) => readL4Route(r, f, x, true)),
  };
}

function readDestinationRule(r: Reader, m: Meta, s: Record<string, unknown>): DestinationRule {
  const ws = r.object('spec.workloadSelector', s.workloadSelector, ['matchLabels']);
  const subsets = r.array('spec.subsets', s.subsets, (x, f) => {
    const o = r.object(f, x, ['name', 'labels', 'trafficPolicy']);
    if (!o) return undefined;
    const name = r.string(`${f}.name`, o.name, { required: true, pattern: /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/, what: 'a subset name' });
    return name ? { name, labels: r.labels(`${f}.labels`, o.labels) ?? {}, trafficPolicy: readTrafficPolicy(r, `${f}.trafficPolicy`, o.trafficPolicy) } : undefined;
  });
  const seen = new Set<string>();
  subsets.forEach((ss, i) => { if (seen.has(ss.name)) r.error(`spec.subsets[${i}].name`, `duplicate subset ${ss.name}`); seen.add(ss.name); });
  return {
    kind: 'DestinationRule', meta: m,
    host: r.string('spec.host', s.host, { required: true, pattern: HOST_PATTERN, what: 'a host name or wildcard' }) ?? '',
    exportTo: exportTo(r, s.exportTo), trafficPolicy: readTrafficPolicy(r, 'spec.trafficPolicy', s.trafficPolicy), subsets,
    workloadSelector: ws ? r.labels('spec.workloadSelector.matchLabels', ws.matchLabels) : undefined,
  };
}

function readServiceEntry(r: Reader, m: Meta, s: Record<string, unknown>): ServiceEntry {
  const ws = r.object('spec.workloadSelector', s.workloadSelector, ['labels']);
  const hosts = r.array('spec.hosts', s.hosts, (x, f) => r.string(f, x, { required: true, pattern: HOST_PATTERN, what: 'a host name or wildcard' }));
  if (hosts.length === 0) r.error('spec.hosts', 'is required (at least one host)');
  const resolution = r.oneOf('spec.resolution', s.resolution, ['NONE', 'STATIC', 'DNS', 'DNS_ROUND_ROBIN'] as const, 'NONE')!;
  const endpoints = r.array('spec.endpoints', s.endpoints, (x, f) => {
    const o = r.object(f, x, ['address', 'ports', 'labels', 'network', 'locality', 'weight'], ['serviceAccount']);
    if (!o) return undefined;
    const ports = o.ports as Record<string, unknown> | undefined;
    return { address: r.string(`${f}.address`, o.address, { required: true }) ?? '', ports: ports ? Object.fromEntries(Object.entries(ports).map(([k, p]) => [k, r.int(`${f}.ports.${k}`, p, { min: 1, max: 65535 }) ?? 0])) : undefined, labels: r.labels(`${f}.labels`, o.labels), network: r.string(`${f}.network`, o.network), locality: r.string(`${f}.locality`, o.locality), weight: r.int(`${f}.weight`, o.weight, { min: 0 }) };
  });
  if (resolution === 'STATIC' && endpoints.length === 0 && !ws) r.error('spec.endpoints', 'resolution STATIC needs endpoints or a workloadSelector');
  if (hosts.some((h) => h.startsWith('*')) && (resolution === 'DNS' || resolution === 'DNS_ROUND_ROBIN') && endpoints.length === 0) r.error('spec.hosts', 'wildcard hosts cannot be resolved by DNS without endpoints');
  return {
    kind: 'ServiceEntry', meta: m, hosts,
    addresses: r.strings('spec.addresses', s.addresses),
    ports: r.array('spec.ports', s.ports, (x, f) => {
      const o = r.object(f, x, ['number', 'protocol', 'name', 'targetPort']);
      if (!o) return undefined;
      const number = r.int(`${f}.number`, o.number, { min: 1, max: 65535, required: true });
      return number ? { number, protocol: r.string(`${f}.protocol`, o.protocol), name: r.string(`${f}.name`, o.name) ?? `port-${number}`, targetPort: r.int(`${f}.targetPort`, o.targetPort, { min: 1, max: 65535 }) } : undefined;
    }),
    location: r.oneOf('spec.location', s.location, ['MESH_EXTERNAL', 'MESH_INTERNAL'] as const, 'MESH_EXTERNAL')!,
    resolution, endpoints, exportTo: exportTo(r, s.exportTo),
    workloadSelector: ws ? r.labels('spec.workloadSelector.labels', ws.labels) : undefined,
  };
}

function readSidecar(r: Reader, m: Meta, s: Record<string, unknown>): Sidecar {
  const ws = r.object('spec.workloadSelector', s.workloadSelector, ['labels']);
  const otp = r.object('spec.outboundTrafficPolicy', s.outboundTrafficPolicy, ['mode'], ['egressProxy']);
  return {
    kind: 'Sidecar', meta: m,
    workloadSelector: ws ? r.labels('spec.workloadSelector.labels', ws.labels) : undefined,
    egress: r.array('spec.egress', s.egress, (x, f) => {
      const o = r.object(f, x, ['hosts', 'port'], ['bind', 'captureMode']);
      if (!o) return undefined;
      const hosts = r.array(`${f}.hosts`, o.hosts, (h, hf) => r.string(hf, h, { required: true, pattern: /^(\*|\.|~|[a-z0-9][-a-z0-9]*)\/(\*|(\*\.)?[A-Za-z0-9][-A-Za-z0-9_.]*)$/, what: 'namespace/host (e.g. "./*", "istio-system/*", "*/foo.example.com")' }));
      if (hosts.length === 0) r.error(`${f}.hosts`, 'is required');
      const p = r.object(`${f}.port`, o.port, ['number', 'protocol', 'name']);
      // The port binds the listener's hosts (translate/sidecar-scope.ts); its protocol is not what picks the chain.
      if (p?.protocol !== undefined) r.unsupported(`${f}.port.protocol`, 'not applied: the protocol of each Service port (its name or appProtocol) decides');
      return { hosts, port: p ? { number: r.int(`${f}.port.number`, p.number, { min: 1, max: 65535, required: true }) ?? 0, protocol: r.string(`${f}.port.protocol`, p.protocol), name: r.string(`${f}.port.name`, p.name) } : undefined };
    }),
    outboundTrafficPolicy: r.oneOf('spec.outboundTrafficPolicy.mode', otp?.mode, ['ALLOW_ANY', 'REGISTRY_ONLY'] as const, 'ALLOW_ANY')!,
  };
}

const SPEC_KEYS: Record<(typeof KINDS)[number], { known: string[]; unsupported: string[] }> = {
  VirtualService: { known: ['hosts', 'gateways', 'http', 'tcp', 'tls', 'exportTo'], unsupported: [] },
  DestinationRule: { known: ['host', 'trafficPolicy', 'subsets', 'exportTo', 'workloadSelector'], unsupported: [] },
  ServiceEntry: { known: ['hosts', 'addresses', 'ports', 'location', 'resolution', 'endpoints', 'workloadSelector', 'exportTo'], unsupported: ['subjectAltNames'] },
  Sidecar: { known: ['workloadSelector', 'egress', 'outboundTrafficPolicy'], unsupported: ['ingress', 'inboundConnectionPool'] },
};

/** What every Istio object shares, once checked: its kind, metadata and spec. */
export interface Envelope { kind: string; meta?: Meta; spec: Record<string, unknown> }

/**
 * The part of reading every Istio object that does not depend on its kind:
 * an object, a kind of `kinds`, an apiVersion of `versions`, metadata, and a
 * spec with only the keys that kind knows (unsupported ones reported). Used by
 * the networking and the security readers alike. undefined = no usable kind.
 */
export function readEnvelope<K extends string>(r: Reader, obj: unknown, o: {
  kinds: readonly K[]; versions: readonly string[]; specKeys: Record<K, { known: string[]; unsupported: string[] }>; defaultNamespace: string;
}): Envelope | undefined {
  const v = (obj && typeof obj === 'object' && !Array.isArray(obj) ? obj : undefined) as Record<string, unknown> | undefined;
  if (!v) return r.error('(document)', 'must be an object');
  const kind = typeof v.kind === 'string' ? v.kind : undefined;
  if (!kind || !(o.kinds as readonly string[]).includes(kind)) { r.error('kind', `must be one of ${o.kinds.join(', ')} (got ${JSON.stringify(v.kind)})`); return undefined; }
  if (!o.versions.includes(String(v.apiVersion))) r.error('apiVersion', `must be one of ${o.versions.join(', ')} (got ${JSON.stringify(v.apiVersion)})`);
  const m = meta(r, v.metadata, o.defaultNamespace);
  const keys = o.specKeys[kind as K];
  const spec = r.object('spec', v.spec ?? {}, keys.known, keys.unsupported) ?? {};
  return { kind, meta: m, spec };
}

/** The kind an object claims, even when it is not one weir reads (for the problem lines). */
export function claimedKind(obj: unknown): string | undefined {
  const k = (obj as { kind?: unknown } | null)?.kind;
  return typeof k === 'string' ? k : undefined;
}

/** Reads one object (from YAML or the API). `defaultNamespace` applies when metadata.namespace is absent. */
export function readIstioResource(obj: unknown, defaultNamespace = 'default'): ReadResult {
  const r = new Reader();
  const e = readEnvelope(r, obj, { kinds: KINDS, versions: NETWORKING_VERSIONS, specKeys: SPEC_KEYS, defaultNamespace });
  if (!e) return { problems: r.problems, kind: claimedKind(obj) };
  const { kind, meta: m, spec } = e;
  if (!m) return { problems: r.problems, kind };
  const resource = kind === 'VirtualService' ? readVirtualService(r, m, spec)
    : kind === 'DestinationRule' ? readDestinationRule(r, m, spec)
      : kind === 'ServiceEntry' ? readServiceEntry(r, m, spec)
        : readSidecar(r, m, spec);
  return { resource: r.ok ? resource : undefined, problems: r.problems, kind, namespace: m.namespace, name: m.name };
}
