// What a proxy checks in every v2 push of the registry, listener and ignored
// kinds before applying any of it: each item has the shape the readers rely
// on (the compiled route/cluster/L4 kinds go through the proxy's compiled
// config validator instead). A failure is a NACK error
// naming the item (its key), the field and why; the push is then not applied
// at all and the proxy keeps its last good version of the kind.
import { isIP } from 'node:net';
import type { NackError } from '../protocol.js';
import { keyOf, type Kind } from './kinds.js';
import { checkSecurityItem } from './security-schema.js';

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

export class Check {
  readonly errors: NackError[] = [];
  constructor(private readonly name: string) {}
  fail(field: string, message: string): false { this.errors.push({ name: this.name, field, message }); return false; }
  obj(f: string, v: unknown): v is Obj { return isObj(v) || this.fail(f, 'must be an object'); }
  str(f: string, v: unknown, optional = false): boolean { return (optional && v === undefined) || typeof v === 'string' || this.fail(f, 'must be a string'); }
  int(f: string, v: unknown, min: number, max: number, optional = false): boolean {
    return (optional && v === undefined) || (Number.isSafeInteger(v) && (v as number) >= min && (v as number) <= max) || this.fail(f, `must be an integer in ${min}..${max}`);
  }
  arr(f: string, v: unknown, each?: (x: unknown, f: string) => void): boolean {
    if (!Array.isArray(v)) return this.fail(f, 'must be a list');
    if (each) v.forEach((x, i) => each(x, `${f}[${i}]`));
    return true;
  }
  strMap(f: string, v: unknown, optional = false): boolean {
    if (optional && v === undefined) return true;
    if (!isObj(v)) return this.fail(f, 'must be an object of strings');
    for (const [k, x] of Object.entries(v)) if (typeof x !== 'string') this.fail(`${f}.${k}`, 'must be a string');
    return true;
  }
  oneOf(f: string, v: unknown, allowed: readonly string[]): boolean {
    return (typeof v === 'string' && allowed.includes(v)) || this.fail(f, `must be one of ${allowed.join(', ')}`);
  }
}

/** The compiled Cluster/RouteTable/L4Service shapes are checked by the proxy's own validator (src/proxy/compiled/validate.ts, v2-applier.ts). */
const CHECKS: Partial<Record<Kind, (c: Check, o: Obj) => void>> = {
  Registry(c, s) {
    c.str('namespace', s.namespace); c.str('name', s.name);
    c.oneOf('kind', s.kind, ['ClusterIP', 'Headless', 'ExternalName', 'NodePort', 'LoadBalancer']);
    c.arr('clusterIPs', s.clusterIPs, (ip, f) => { if (typeof ip !== 'string' || !isIP(ip)) c.fail(f, 'must be an IP address'); });
    c.arr('ports', s.ports, (p, f) => { if (c.obj(f, p)) { c.int(`${f}.port`, p.port, 1, 65535); c.str(`${f}.name`, p.name); } });
    c.arr('endpoints', s.endpoints, (e, f) => {
      if (!c.obj(f, e)) return;
      if (typeof e.ip !== 'string' || !isIP(e.ip)) c.fail(`${f}.ip`, 'must be an IP address');
      c.arr(`${f}.ports`, e.ports);
      c.strMap(`${f}.labels`, e.labels, true);
    });
  },
  Listener(c, o) {
    c.oneOf('name', o.name, ['outbound']);
    c.oneOf('outboundTrafficPolicy', o.outboundTrafficPolicy, ['ALLOW_ANY', 'REGISTRY_ONLY']);
  },
  Ignored(c, o) { c.str('resource', o.resource); c.str('field', o.field); c.str('message', o.message); },
  Security: (c, o) => checkSecurityItem(c, o),
};

/** Errors of every item of one push (empty = applicable). `name` is the item's index when its key cannot be read. */
export function checkItems(kind: Kind, items: unknown[]): NackError[] {
  const errors: NackError[] = [];
  items.forEach((item, i) => {
    const o = isObj(item) ? item : undefined;
    let key = `#${i}`;
    try { if (o) key = keyOf(kind, o as never); } catch { /* unreadable key: the index names it */ }
    const c = new Check(key);
    if (!o) c.fail('', 'must be an object');
    else CHECKS[kind]?.(c, o);
    errors.push(...c.errors);
  });
  return errors;
}
