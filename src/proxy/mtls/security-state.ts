// The proxy's view of inbound security for its own workload: the compiled
// PeerAuthentication mode per port and AuthorizationPolicies, plus the
// counters every decision feeds. Where they come from: the agent's v2
// `Security` pushes (compiled by the agent for this pod's namespace and
// labels), or `--static-security FILE`, which pins them (compiled here for
// the agent's identity; pushes are then recorded but not enforced), or
// neither (PERMISSIVE, no policy).
import { Counter, type Registry } from 'prom-client';
import type { Logger } from '../../common/log.js';
import { compileSecurity, modeForPort, type CompiledSecurity } from '../../security/compile.js';
import { authorize, type Decision, type RequestAttributes } from '../../security/evaluate.js';
import type { SecurityResource } from '../../security/types.js';
import { loadStaticSecurity } from './static-security.js';
import { compiledFromItems, type SecurityItem } from '../../security/items.js';

export class SecurityState {
  private resources: SecurityResource[] = [];
  private compiled?: { namespace: string; c: CompiledSecurity };
  /** From the control plane (v2 Security kind). */
  private pushed?: CompiledSecurity;
  readonly pinned: boolean;
  pushes = 0;
  private readonly listeners: (() => void)[] = [];
  readonly denied: Counter<'protocol' | 'policy'>;
  readonly inbound: Counter<'mode' | 'outcome'>;

  constructor(private readonly labels: Record<string, string>, private readonly logger: Logger, metrics: Registry, file?: string) {
    this.denied = new Counter({ name: 'weir_authorization_denied_total', help: 'Inbound connections (tcp) and requests (http) denied by AuthorizationPolicy', labelNames: ['protocol', 'policy'], registers: [metrics] });
    this.inbound = new Counter({ name: 'weir_inbound_mtls_total', help: 'Inbound connections by PeerAuthentication mode and what happened (mtls, plaintext, passthrough_tls, refused_plaintext, handshake_failed)', labelNames: ['mode', 'outcome'], registers: [metrics] });
    this.pinned = file !== undefined;
    if (file) {
      const loaded = loadStaticSecurity(file);
      for (const p of loaded.problems) logger[p.problem.severity === 'error' ? 'error' : 'warn']({ resource: p.resource, field: p.problem.field, severity: p.problem.severity }, p.problem.message);
      this.resources = loaded.resources;
      logger.info({ file, resources: loaded.resources.length, refused: loaded.problems.filter((p) => p.problem.severity === 'error').length }, 'static security policies loaded');
    }
  }

  /** A Security push, already checked (v2-applier.ts): replaces what is enforced at once, for the next connection or request. */
  applyPushed(items: SecurityItem[]): void {
    const c = compiledFromItems(items);
    this.pushes++;
    if (this.pinned) {
      this.logger.info({ policies: c.deny.length + c.allow.length + c.audit.length }, 'security policies from the control plane not enforced: --static-security pins them');
      this.pushed = c;
      return;
    }
    for (const i of c.ignored) if (!this.pushed?.ignored.includes(i)) this.logger.warn(i);
    this.pushed = c;
    for (const l of this.listeners) l();
    this.logger.info({ mode: c.mode, portLevel: c.portLevel, deny: c.deny.map((p) => p.name), allow: c.allow.map((p) => p.name), audit: c.audit.map((p) => p.name) }, 'security policies from the control plane applied');
  }

  /** Where what is enforced comes from (config_dump). */
  source(): 'static-file' | 'control-plane' | 'none' {
    return this.pinned ? 'static-file' : this.pushed ? 'control-plane' : 'none';
  }

  /** What the control plane pushed while a file pins the policies (config_dump). */
  overridden(): CompiledSecurity | undefined { return this.pinned ? this.pushed : undefined; }

  forNamespace(namespace: string): CompiledSecurity {
    if (this.pushed && !this.pinned) return this.pushed;
    if (this.compiled?.namespace !== namespace) {
      const c = compileSecurity(this.resources, { namespace, labels: this.labels });
      for (const i of c.ignored) this.logger.warn({ namespace }, i);
      this.compiled = { namespace, c };
    }
    return this.compiled.c;
  }

  mode(namespace: string, port: number): ReturnType<typeof modeForPort> {
    return modeForPort(this.forNamespace(namespace), port);
  }

  /** True when any AuthorizationPolicy (ALLOW, DENY or AUDIT) applies to this workload: every connection and request is then decided in JavaScript. */
  hasAuthorization(namespace: string): boolean {
    const c = this.forNamespace(namespace);
    return c.allow.length > 0 || c.deny.length > 0 || c.audit.length > 0;
  }

  /** Called after every change of what is enforced (a push): the native inbound table is re-planned from it. */
  onChange(listener: () => void): void {
    this.listeners.push(listener);
  }

  /** True when some port of this workload requires mTLS (readiness then waits for the certificate). */
  strictAnywhere(namespace: string): boolean {
    const c = this.forNamespace(namespace);
    return c.mode === 'STRICT' || Object.values(c.portLevel).includes('STRICT');
  }

  decide(namespace: string, a: RequestAttributes, protocol: 'tcp' | 'http'): Decision {
    const d = authorize(this.forNamespace(namespace), a);
    if (d.audited) this.logger.info({ audit: d.audited, protocol, source: a.sourcePrincipal ?? a.sourceIp, port: a.destinationPort, path: a.http?.path }, 'AUDIT policy matched');
    if (!d.allowed) {
      this.denied.inc({ protocol, policy: d.policy ?? '(no ALLOW matched)' });
      this.logger.info({ rbac: 'denied', protocol, reason: d.reason, source: a.sourcePrincipal ?? a.sourceIp, port: a.destinationPort, method: a.http?.method, path: a.http?.path }, 'RBAC: access denied');
    }
    return d;
  }

  snapshot(namespace: string): CompiledSecurity { return this.forNamespace(namespace); }
}
