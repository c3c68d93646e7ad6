// A workload's compiled security (compile.ts) as the items of the v2
// `Security` kind (docs/proxy-protocol.md): one `mtls` item (the
// PeerAuthentication outcome and the notes) and one item per
// AuthorizationPolicy that applies, keyed by its namespace/name, so a change
// to one policy resends that policy only. The proxy reassembles them; the
// order of policies (which one a decision names) is by key, as compile.ts
// orders them.
import type { CompiledPolicy, CompiledSecurity } from './compile.js';
import type { MtlsMode, Rule } from './types.js';

type Mode = Exclude<MtlsMode, 'UNSET'>;

export interface MtlsItem {
  name: 'mtls';
  mode: Mode;
  /** Port (as a string: JSON object keys) → mode. */
  portLevel: Record<string, Mode>;
  peerAuthentications: string[];
  /** What was not applied and why (CUSTOM policies, unsupported fields, rejected objects). */
  ignored: string[];
}

export interface PolicyItem { name: string; action: 'ALLOW' | 'DENY' | 'AUDIT'; rules: Rule[] }

export type SecurityItem = MtlsItem | PolicyItem;

export const MTLS_ITEM = 'mtls';

export function securityItems(c: CompiledSecurity): SecurityItem[] {
  const mtls: MtlsItem = { name: MTLS_ITEM, mode: c.mode, portLevel: Object.fromEntries(Object.entries(c.portLevel)), peerAuthentications: c.peerAuthentications, ignored: c.ignored };
  const policy = (p: CompiledPolicy): PolicyItem => ({ name: p.name, action: p.action as PolicyItem['action'], rules: p.rules });
  return [mtls, ...c.deny.map(policy), ...c.allow.map(policy), ...c.audit.map(policy)];
}

/** Items already checked (controlplane/v2/security-schema.ts) → the compiled form the evaluator reads. */
export function compiledFromItems(items: Iterable<SecurityItem>): CompiledSecurity {
  const out: CompiledSecurity = { mode: 'PERMISSIVE', portLevel: {}, peerAuthentications: [], deny: [], allow: [], audit: [], ignored: [] };
  const policies: PolicyItem[] = [];
  for (const it of items) {
    if (it.name === MTLS_ITEM) {
      const m = it as MtlsItem;
      out.mode = m.mode;
      for (const [port, mode] of Object.entries(m.portLevel)) out.portLevel[Number(port)] = mode;
      out.peerAuthentications = m.peerAuthentications;
      out.ignored = m.ignored;
    } else policies.push(it as PolicyItem);
  }
  policies.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const p of policies) {
    const c: CompiledPolicy = { name: p.name, action: p.action, rules: p.rules };
    (p.action === 'DENY' ? out.deny : p.action === 'ALLOW' ? out.allow : out.audit).push(c);
  }
  return out;
}
