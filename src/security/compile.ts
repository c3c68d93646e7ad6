// The security of ONE workload (namespace + labels), compiled from every
// PeerAuthentication and AuthorizationPolicy the proxy was given:
//   mTLS mode: mesh (root namespace, no selector) → namespace (no selector)
//   → workload (selector) → portLevelMtls; UNSET inherits; default
//   PERMISSIVE. Several at one level: the oldest wins (Istio's rule).
//   AuthorizationPolicy: root-namespace policies apply mesh-wide, others to
//   their namespace; a selector narrows to matching labels. CUSTOM is
//   dropped and reported.
import type { AuthorizationPolicy, MtlsMode, PeerAuthentication, SecurityResource } from './types.js';

export const DEFAULT_ROOT_NAMESPACE = 'istio-system';

export interface Workload { namespace: string; labels: Record<string, string> }

export interface CompiledPolicy { name: string; action: AuthorizationPolicy['action']; rules: AuthorizationPolicy['rules'] }

export interface CompiledSecurity {
  /** The workload-wide mode (after inheritance; never UNSET). */
  mode: Exclude<MtlsMode, 'UNSET'>;
  /** Port overrides (never UNSET). */
  portLevel: Record<number, Exclude<MtlsMode, 'UNSET'>>;
  /** Which PeerAuthentications decided it, mesh → workload. */
  peerAuthentications: string[];
  deny: CompiledPolicy[];
  allow: CompiledPolicy[];
  audit: CompiledPolicy[];
  /** Notes for config_dump / analyze (ignored CUSTOM policies...). */
  ignored: string[];
}

const key = (m: { namespace: string; name: string }) => `${m.namespace}/${m.name}`;

function selects(sel: Record<string, string> | undefined, labels: Record<string, string>): boolean {
  return !sel || Object.entries(sel).every(([k, v]) => labels[k] === v);
}

function oldest<T extends { meta: { created: number; name: string } }>(xs: T[]): T | undefined {
  return [...xs].sort((a, b) => a.meta.created - b.meta.created || (a.meta.name < b.meta.name ? -1 : a.meta.name > b.meta.name ? 1 : 0))[0];
}

export function compileSecurity(resources: SecurityResource[], w: Workload, rootNamespace = DEFAULT_ROOT_NAMESPACE): CompiledSecurity {
  const pas = resources.filter((r): r is PeerAuthentication => r.kind === 'PeerAuthentication');
  const mesh = oldest(pas.filter((p) => p.meta.namespace === rootNamespace && !p.selector));
  const ns = w.namespace === rootNamespace ? undefined : oldest(pas.filter((p) => p.meta.namespace === w.namespace && !p.selector));
  const workload = oldest(pas.filter((p) => p.meta.namespace === w.namespace && p.selector && Object.keys(p.selector).length > 0 && selects(p.selector, w.labels)));
  let mode: Exclude<MtlsMode, 'UNSET'> = 'PERMISSIVE';
  const decided: string[] = [];
  for (const p of [mesh, ns, workload]) {
    if (!p) continue;
    decided.push(key(p.meta));
    if (p.mode !== 'UNSET') mode = p.mode;
  }
  const portLevel: CompiledSecurity['portLevel'] = {};
  for (const [port, m] of Object.entries(workload?.portLevel ?? {})) portLevel[Number(port)] = m === 'UNSET' ? mode : m;

  const out: CompiledSecurity = { mode, portLevel, peerAuthentications: decided, deny: [], allow: [], audit: [], ignored: [] };
  const aps = resources.filter((r): r is AuthorizationPolicy => r.kind === 'AuthorizationPolicy')
    .filter((p) => (p.meta.namespace === rootNamespace || p.meta.namespace === w.namespace) && selects(p.selector, w.labels))
    .sort((a, b) => (key(a.meta) < key(b.meta) ? -1 : key(a.meta) > key(b.meta) ? 1 : 0));
  for (const p of aps) {
    const c: CompiledPolicy = { name: key(p.meta), action: p.action, rules: p.rules };
    if (p.action === 'DENY') out.deny.push(c);
    else if (p.action === 'ALLOW') out.allow.push(c);
    else if (p.action === 'AUDIT') out.audit.push(c);
    else out.ignored.push(`${c.name}: action CUSTOM is not supported; policy ignored`);
  }
  return out;
}

/** The mode on one workload port. */
export function modeForPort(c: CompiledSecurity, port: number): Exclude<MtlsMode, 'UNSET'> {
  return c.portLevel[port] ?? c.mode;
}
