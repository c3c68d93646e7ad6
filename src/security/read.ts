// PeerAuthentication and AuthorizationPolicy (security.istio.io v1 and
// v1beta1: the same schema) → typed, with every problem at its field path,
// in src/istio/schema.ts's style. What weir does not enforce (CUSTOM,
// request.auth.*, requestPrincipals, targetRefs) is reported "unsupported"
// so `weir analyze` says so, never silently dropped.
import { Reader, type Problem } from '../istio/schema.js';
import { claimedKind, readEnvelope } from '../istio/read.js';
import { parseCidr } from '../redirect/addr.js';
import type { AuthorizationPolicy, Condition, MtlsMode, Operation, PeerAuthentication, Rule, SecurityResource, Source } from './types.js';

export const SECURITY_VERSIONS = ['security.istio.io/v1', 'security.istio.io/v1beta1'];
export const SECURITY_KINDS = ['PeerAuthentication', 'AuthorizationPolicy'] as const;
const MODES = ['UNSET', 'DISABLE', 'PERMISSIVE', 'STRICT'] as const;

/** `when` keys weir evaluates; request.auth.* and the rest are reported. */
const WHEN_KEYS = /^(request\.headers\[[^\]]+\]|source\.ip|remote\.ip|source\.namespace|source\.principal|destination\.ip|destination\.port|connection\.sni)$/;

export interface SecurityReadResult { resource?: SecurityResource; problems: Problem[]; kind?: string; namespace?: string; name?: string }

function selector(r: Reader, v: unknown): Record<string, string> | undefined {
  const o = r.object('spec.selector', v, ['matchLabels']);
  return o ? r.labels('spec.selector.matchLabels', o.matchLabels) ?? {} : undefined;
}

function readPeerAuthentication(r: Reader, m: PeerAuthentication['meta'], s: Record<string, unknown>): PeerAuthentication {
  const mtls = r.object('spec.mtls', s.mtls, ['mode']);
  const sel = selector(r, s.selector);
  const portLevel: Record<number, MtlsMode> = {};
  const pl = r.object('spec.portLevelMtls', s.portLevelMtls, Object.keys((s.portLevelMtls as object) ?? {}));
  if (pl) {
    if (!sel) r.warning('spec.portLevelMtls', 'ignored without spec.selector (Istio applies port-level mTLS only to selected workloads)');
    for (const [k, v] of Object.entries(pl)) {
      const f = `spec.portLevelMtls.${k}`;
      if (!/^\d+$/.test(k) || Number(k) < 1 || Number(k) > 65535) { r.error(f, 'key must be a port number 1-65535'); continue; }
      const o = r.object(f, v, ['mode']);
      const mode = r.oneOf(`${f}.mode`, o?.mode, MODES, 'UNSET');
      if (sel && mode) portLevel[Number(k)] = mode;
    }
  }
  return { kind: 'PeerAuthentication', meta: m, selector: sel, mode: r.oneOf('spec.mtls.mode', mtls?.mode, MODES, 'UNSET')!, portLevel };
}

function cidrs(r: Reader, field: string, v: unknown): string[] | undefined {
  if (v === undefined) return undefined;
  const list = r.strings(field, v);
  list.forEach((c, i) => { if (!parseCidr(c)) r.error(`${field}[${i}]`, `must be an IP or CIDR (got ${JSON.stringify(c)})`); });
  return list;
}

function strs(r: Reader, field: string, v: unknown): string[] | undefined {
  return v === undefined ? undefined : r.strings(field, v);
}

function readSource(r: Reader, f: string, v: unknown): Source | undefined {
  const o = r.object(f, v, ['principals', 'notPrincipals', 'namespaces', 'notNamespaces', 'ipBlocks', 'notIpBlocks', 'remoteIpBlocks', 'notRemoteIpBlocks'], ['requestPrincipals', 'notRequestPrincipals']);
  if (!o) return undefined;
  return {
    principals: strs(r, `${f}.principals`, o.principals), notPrincipals: strs(r, `${f}.notPrincipals`, o.notPrincipals),
    namespaces: strs(r, `${f}.namespaces`, o.namespaces), notNamespaces: strs(r, `${f}.notNamespaces`, o.notNamespaces),
    ipBlocks: cidrs(r, `${f}.ipBlocks`, o.ipBlocks), notIpBlocks: cidrs(r, `${f}.notIpBlocks`, o.notIpBlocks),
    remoteIpBlocks: cidrs(r, `${f}.remoteIpBlocks`, o.remoteIpBlocks), notRemoteIpBlocks: cidrs(r, `${f}.notRemoteIpBlocks`, o.notRemoteIpBlocks),
    requestPrincipals: strs(r, `${f}.requestPrincipals`, o.requestPrincipals), notRequestPrincipals: strs(r, `${f}.notRequestPrincipals`, o.notRequestPrincipals),
  };
}

function ports(r: Reader, field: string, v: unknown): string[] | undefined {
  if (v === undefined) return undefined;
  const list = r.strings(field, v);
  list.forEach((p, i) => { if (!/^\d+$/.test(p) || Number(p) < 1 || Number(p) > 65535) r.error(`${field}[${i}]`, `must be a port number 1-65535 (got ${JSON.stringify(p)})`); });
  return list;
}

function readOperation(r: Reader, f: string, v: unknown): Operation | undefined {
  const o = r.object(f, v, ['hosts', 'notHosts', 'ports', 'notPorts', 'methods', 'notMethods', 'paths', 'notPaths']);
  if (!o) return undefined;
  return {
    hosts: strs(r, `${f}.hosts`, o.hosts), notHosts: strs(r, `${f}.notHosts`, o.notHosts),
    ports: ports(r, `${f}.ports`, o.ports), notPorts: ports(r, `${f}.notPorts`, o.notPorts),
    methods: strs(r, `${f}.methods`, o.methods), notMethods: strs(r, `${f}.notMethods`, o.notMethods),
    paths: strs(r, `${f}.paths`, o.paths), notPaths: strs(r, `${f}.notPaths`, o.notPaths),
  };
}

function readCondition(r: Reader, f: string, v: unknown): Condition | undefined {
  const o = r.object(f, v, ['key', 'values', 'notValues']);
  if (!o) return undefined;
  const key = r.string(`${f}.key`, o.key, { required: true });
  if (!key) return undefined;
  if (key.startsWith('request.auth.')) r.unsupported(`${f}.key`, `${key}: JWT request authentication is not supported by weir; an ALLOW rule with it never matches, a DENY rule with it always does`);
  else if (!WHEN_KEYS.test(key)) r.error(`${f}.key`, `unknown condition key ${JSON.stringify(key)}`);
  const values = strs(r, `${f}.values`, o.values);
  const notValues = strs(r, `${f}.notValues`, o.notValues);
  if (!values?.length && !notValues?.length) r.error(f, 'needs values or notValues');
  return { key, values, notValues };
}

function readRule(r: Reader, f: string, v: unknown): Rule | undefined {
  const o = r.object(f, v, ['from', 'to', 'when']);
  if (!o) return {};
  const from = o.from === undefined ? undefined : r.array(`${f}.from`, o.from, (x, ff) => readSource(r, `${ff}.source`, r.object(ff, x, ['source'])?.source));
  const to = o.to === undefined ? undefined : r.array(`${f}.to`, o.to, (x, ff) => readOperation(r, `${ff}.operation`, r.object(ff, x, ['operation'])?.operation));
  const when = o.when === undefined ? undefined : r.array(`${f}.when`, o.when, (x, ff) => readCondition(r, ff, x));
  return { from, to, when };
}

function readAuthorizationPolicy(r: Reader, m: AuthorizationPolicy['meta'], s: Record<string, unknown>): AuthorizationPolicy {
  const action = r.oneOf('spec.action', s.action, ['ALLOW', 'DENY', 'AUDIT', 'CUSTOM'] as const, 'ALLOW')!;
  if (action === 'CUSTOM') r.unsupported('spec.action', 'CUSTOM (external authorization) is not supported by weir; the policy is ignored');
  const rules = r.array('spec.rules', s.rules, (x, f) => readRule(r, f, x));
  return { kind: 'AuthorizationPolicy', meta: m, selector: selector(r, s.selector), action, rules };
}

const SPEC_KEYS = {
  PeerAuthentication: { known: ['selector', 'mtls', 'portLevelMtls'], unsupported: [] as string[] },
  AuthorizationPolicy: { known: ['selector', 'action', 'rules', 'provider'], unsupported: ['targetRef', 'targetRefs'] },
};

/** Reads one security.istio.io object. */
export function readSecurityResource(obj: unknown, defaultNamespace = 'default'): SecurityReadResult {
  const r = new Reader();
  const e = readEnvelope(r, obj, { kinds: SECURITY_KINDS, versions: SECURITY_VERSIONS, specKeys: SPEC_KEYS, defaultNamespace });
  if (!e) return { problems: r.problems, kind: claimedKind(obj) };
  const { kind, meta: m, spec } = e;
  if (!m) return { problems: r.problems, kind };
  const resource = kind === 'PeerAuthentication' ? readPeerAuthentication(r, m, spec) : readAuthorizationPolicy(r, m, spec);
  return { resource: r.ok ? resource : undefined, problems: r.problems, kind, namespace: m.namespace, name: m.name };
}
