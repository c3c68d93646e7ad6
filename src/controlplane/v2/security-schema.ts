// What a proxy checks in each item of a `Security` push before applying any
// of it (item-schema.ts calls this): the shapes the evaluator
// (src/security/evaluate.ts) relies on, with every unknown field refused, so
// a policy is never half-understood. A bad item NACKs the whole push and
// the proxy keeps enforcing its last good policies.
import { parseCidr } from '../../redirect/addr.js';
import { MTLS_ITEM } from '../../security/items.js';
import type { Check } from './item-schema.js';

type Obj = Record<string, unknown>;

const MODES = ['DISABLE', 'PERMISSIVE', 'STRICT'] as const;
const SOURCE = ['principals', 'notPrincipals', 'namespaces', 'notNamespaces', 'ipBlocks', 'notIpBlocks', 'remoteIpBlocks', 'notRemoteIpBlocks', 'requestPrincipals', 'notRequestPrincipals'];
const OPERATION = ['hosts', 'notHosts', 'ports', 'notPorts', 'methods', 'notMethods', 'paths', 'notPaths'];
const CIDR_FIELDS = new Set(['ipBlocks', 'notIpBlocks', 'remoteIpBlocks', 'notRemoteIpBlocks']);
const PORT_FIELDS = new Set(['ports', 'notPorts']);

function onlyKeys(c: Check, f: string, o: Obj, allowed: readonly string[]): void {
  for (const k of Object.keys(o)) if (!allowed.includes(k)) c.fail(f ? `${f}.${k}` : k, 'unknown field');
}

function strings(c: Check, f: string, v: unknown, each?: (s: string, f: string) => void): void {
  c.arr(f, v, (x, xf) => { if (typeof x !== 'string') c.fail(xf, 'must be a string'); else each?.(x, xf); });
}

/** Source / Operation: every field optional, each a list of strings. */
function fields(c: Check, f: string, v: unknown, allowed: readonly string[]): void {
  if (!c.obj(f, v)) return;
  onlyKeys(c, f, v, allowed);
  for (const k of allowed) {
    if (v[k] === undefined) continue;
    strings(c, `${f}.${k}`, v[k], (s, sf) => {
      if (CIDR_FIELDS.has(k) && !parseCidr(s)) c.fail(sf, 'must be an IP or CIDR');
      if (PORT_FIELDS.has(k) && !(/^\d+$/.test(s) && Number(s) >= 1 && Number(s) <= 65535)) c.fail(sf, 'must be a port number 1-65535');
    });
  }
}

function rule(c: Check, f: string, r: unknown): void {
  if (!c.obj(f, r)) return;
  onlyKeys(c, f, r, ['from', 'to', 'when']);
  if (r.from !== undefined) c.arr(`${f}.from`, r.from, (s, sf) => fields(c, sf, s, SOURCE));
  if (r.to !== undefined) c.arr(`${f}.to`, r.to, (o, of) => fields(c, of, o, OPERATION));
  if (r.when !== undefined) {
    c.arr(`${f}.when`, r.when, (w, wf) => {
      if (!c.obj(wf, w)) return;
      onlyKeys(c, wf, w, ['key', 'values', 'notValues']);
      c.str(`${wf}.key`, w.key);
      if (w.values !== undefined) strings(c, `${wf}.values`, w.values);
      if (w.notValues !== undefined) strings(c, `${wf}.notValues`, w.notValues);
    });
  }
}

export function checkSecurityItem(c: Check, o: Obj): void {
  c.str('name', o.name);
  if (o.name === MTLS_ITEM) {
    onlyKeys(c, '', o, ['name', 'mode', 'portLevel', 'peerAuthentications', 'ignored']);
    c.oneOf('mode', o.mode, MODES);
    if (c.obj('portLevel', o.portLevel)) {
      for (const [port, mode] of Object.entries(o.portLevel)) {
        if (!/^\d+$/.test(port) || Number(port) < 1 || Number(port) > 65535) c.fail(`portLevel.${port}`, 'key must be a port number 1-65535');
        c.oneOf(`portLevel.${port}`, mode, MODES);
      }
    }
    strings(c, 'peerAuthentications', o.peerAuthentications);
    strings(c, 'ignored', o.ignored);
    return;
  }
  onlyKeys(c, '', o, ['name', 'action', 'rules']);
  c.oneOf('action', o.action, ['ALLOW', 'DENY', 'AUDIT']);
  c.arr('rules', o.rules, (r, rf) => rule(c, rf, r));
}
