// The proxy's side of a v2 push (docs/proxy-protocol.md, "Version 2"): the
// envelope and every item are checked before anything is applied; a push
// that fails, or a delta from a version this proxy does not hold, is
// answered with a NACK naming what is wrong, and the kind stays at its last
// good version. The registry kind replaces the v1 registry the L4 path and
// the DNS proxy read; the compiled kinds fill the CompiledConfigStore; the
// Security kind goes to the mesh's SecurityState (`onSecurity`).
import type { AckMsg, NackError, NackMsg, PushMsg } from '../controlplane/protocol.js';
import { isKind, keyOf, KINDS, type Kind, type RouteTableEntry } from '../controlplane/v2/kinds.js';
import { FieldError } from '../common/errors.js';
import { validateCompiledConfig } from './compiled/validate.js';
import { checkItems } from '../controlplane/v2/item-schema.js';
import type { Registry, RegistryService } from '../controlplane/types.js';
import type { CompiledConfigStore } from './compiled/store.js';
import type { SecurityItem } from '../security/items.js';

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const MAX_NONCE = 64;

/** The envelope of a push: errors name the field; the caller nacks (or drops the connection when kind/nonce are unreadable). */
export function checkPush(raw: Record<string, unknown>): { msg?: PushMsg; errors: NackError[] } {
  const errors: NackError[] = [];
  const e = (field: string, message: string) => errors.push({ name: '', field: `push.${field}`, message });
  if (!isKind(raw.kind)) e('kind', `must be one of ${KINDS.join(', ')}`);
  if (typeof raw.nonce !== 'string' || raw.nonce.length === 0 || raw.nonce.length > MAX_NONCE) e('nonce', 'must be a non-empty string');
  if (!Number.isSafeInteger(raw.version) || (raw.version as number) < 0) e('version', 'must be a non-negative integer');
  if (raw.full !== undefined && typeof raw.full !== 'boolean') e('full', 'must be a boolean');
  if (raw.full !== true && (!Number.isSafeInteger(raw.fromVersion) || (raw.fromVersion as number) < 0)) e('fromVersion', 'must be a non-negative integer on a delta (full is not set)');
  if (!Array.isArray(raw.upserts)) e('upserts', 'must be a list');
  if (!Array.isArray(raw.deletes) || !(raw.deletes as unknown[]).every((d) => typeof d === 'string')) e('deletes', 'must be a list of strings');
  return errors.length ? { errors } : { msg: raw as unknown as PushMsg, errors };
}

export class V2Applier {
  /** The version of each kind this proxy holds (applied and acked). */
  private readonly held = new Map<Kind, number>();
  registry: Registry | undefined;
  nacks = 0;
  lastNack?: { kind: string; version: number; errors: NackError[] };
  /** The Security items held (by name). */
  private security = new Map<string, SecurityItem>();

  /** `onSecurity` gets every Security item after each applied push; throwing refuses the push (nack). */
  constructor(private readonly store: CompiledConfigStore, private clusterDomain: string, private readonly onRegistry: (r: Registry) => void, private readonly onSecurity?: (items: SecurityItem[]) => void) {}

  setClusterDomain(d: string): void { this.clusterDomain = d; }

  /** What to send in hello.resume.versions. */
  versions(): Partial<Record<Kind, number>> { return Object.fromEntries(this.held); }

  /** Forget what is held (a new agent epoch: everything comes whole again). */
  reset(): void { this.held.clear(); }

  /** One push → the ack or nack to send. */
  handle(msg: PushMsg): AckMsg | NackMsg {
    const answer = { kind: msg.kind, version: msg.version, nonce: msg.nonce };
    const nack = (errors: NackError[]): NackMsg => {
      this.nacks++;
      this.lastNack = { kind: msg.kind, version: msg.version, errors };
      return { type: 'nack', ...answer, errors };
    };
    const have = this.held.get(msg.kind);
    if (!msg.full && have !== msg.fromVersion) {
      return nack([{ name: '', field: 'push.fromVersion', message: `this proxy holds ${msg.kind} version ${have ?? 'none'}, not ${msg.fromVersion}` }]);
    }
    const errors = [...checkItems(msg.kind, msg.upserts), ...compiledErrors(msg.kind, msg.upserts)];
    if (errors.length) return nack(errors.slice(0, 100));
    try {
      if (msg.kind === 'Registry') this.applyRegistry(msg);
      else if (msg.kind === 'Security') this.applySecurity(msg);
      else this.store.applyKind(msg.kind, msg.full === true, msg.upserts as never[], msg.deletes);
    } catch (err) {
      // A reader of the store threw on the new config: it is not taken as applied.
      return nack([{ name: '', field: '', message: `applying failed: ${(err as Error).message}` }]);
    }
    this.held.set(msg.kind, msg.version);
    return { type: 'ack', ...answer };
  }

  private applySecurity(msg: PushMsg): void {
    const next = msg.full ? new Map<string, SecurityItem>() : new Map(this.security);
    for (const k of msg.deletes) next.delete(k);
    for (const it of msg.upserts as SecurityItem[]) next.set(it.name, it);
    this.onSecurity?.([...next.values()]);
    this.security = next;
  }

  private applyRegistry(msg: PushMsg): void {
    const services = msg.full || !this.registry ? new Map<string, RegistryService>() : new Map(this.registry.services);
    for (const k of msg.deletes) services.delete(k);
    for (const s of msg.upserts as RegistryService[]) services.set(`${s.namespace}/${s.name}`, s);
    this.registry = { version: msg.version, clusterDomain: this.clusterDomain, services };
    this.onRegistry(this.registry);
  }
}

/**
 * Cluster, RouteTable and L4Service items go through the same validator as
 * `--static-config` (compiled/validate.ts: shapes, RE2 rules, catastrophic
 * regexes), one check for both ways config reaches the proxy. Its path
 * ("routes[3].virtualHosts[0]…") is mapped back to the item's key and field.
 */
function compiledErrors(kind: Kind, upserts: unknown[]): NackError[] {
  let config: Record<string, unknown>;
  let prefix: RegExp;
  switch (kind) {
    case 'Cluster': config = { clusters: upserts }; prefix = /^clusters\[(\d+)\]\.?/; break;
    case 'L4Service': config = { l4: upserts }; prefix = /^l4\[(\d+)\]\.?/; break;
    case 'RouteTable':
      config = { routes: (upserts as RouteTableEntry[]).map((e) => (isObj(e) ? { port: e.port, virtualHosts: [e.virtualHost] } : e)) };
      prefix = /^routes\[(\d+)\]\.?/;
      break;
    default: return [];
  }
  try {
    validateCompiledConfig(config);
    return [];
  } catch (err) {
    if (!(err instanceof FieldError)) throw err;
    const m = prefix.exec(err.field);
    const i = m ? Number(m[1]) : -1;
    let name = `#${i}`;
    try { if (i >= 0) name = keyOf(kind, upserts[i] as never); } catch { /* the index names it */ }
    let field = m ? err.field.slice(m[0].length) : err.field;
    if (kind === 'RouteTable') field = field.startsWith('virtualHosts[0]') ? `virtualHost${field.slice('virtualHosts[0]'.length)}` : field;
    return [{ name, field, message: err.reason }];
  }
}
