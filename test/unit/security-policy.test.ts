// PeerAuthentication / AuthorizationPolicy: the reader's field-path errors,
// the per-workload compile (golden), and evaluation in Istio's order.
// UPDATE_GOLDEN=1 rewrites the goldens (review the diff, test/golden/README.md).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { readSecurityResource } from '../../src/security/read.js';
import { compileSecurity, modeForPort } from '../../src/security/compile.js';
import { authorize, stringMatch, type RequestAttributes } from '../../src/security/evaluate.js';
import type { SecurityResource } from '../../src/security/types.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const update = process.env.UPDATE_GOLDEN === '1';

function load(): SecurityResource[] {
  const text = readFileSync(path.join(ROOT, 'test/fixtures/security/policies.yaml'), 'utf8');
  return parseAllDocuments(text).map((d) => {
    const r = readSecurityResource(d.toJS());
    assert.ok(r.resource, JSON.stringify(r.problems));
    return r.resource;
  });
}

test('reader: every bad field is named; unsupported features are reported, not dropped', () => {
  const byField = (o: unknown) => Object.fromEntries(readSecurityResource(o).problems.map((p) => [p.field, `${p.severity}: ${p.message}`]));
  const ap = byField({
    apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'x', namespace: 'n' },
    spec: {
      action: 'ALOW', targetRefs: [{}],
      rules: [{ from: [{ source: { ipBlocks: ['10.0.0.0/33'], requestPrincipals: ['*'] } }], to: [{ operation: { ports: ['http'], method: ['GET'] } }], when: [{ key: 'request.auth.claims[groups]', values: ['x'] }, { key: 'source.ip' }] }],
    },
  });
  assert.match(ap['spec.action'], /^error: must be one of ALLOW, DENY, AUDIT, CUSTOM/);
  assert.match(ap['spec.targetRefs'], /^unsupported/);
  assert.match(ap['spec.rules[0].from[0].source.ipBlocks[0]'], /must be an IP or CIDR/);
  assert.match(ap['spec.rules[0].from[0].source.requestPrincipals'], /^unsupported/);
  assert.match(ap['spec.rules[0].to[0].operation.ports[0]'], /must be a port number/);
  assert.match(ap['spec.rules[0].to[0].operation.method'], /unknown field/);
  assert.match(ap['spec.rules[0].when[0].key'], /^unsupported: request\.auth\.claims\[groups\]/);
  assert.match(ap['spec.rules[0].when[1]'], /needs values or notValues/);
  assert.equal(readSecurityResource({ apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'x' }, spec: { action: 'ALOW' } }).resource, undefined, 'an error refuses the whole policy');
  const pa = byField({ apiVersion: 'security.istio.io/v1beta1', kind: 'PeerAuthentication', metadata: { name: 'p' }, spec: { selector: { matchLabels: { app: 'a' } }, mtls: { mode: 'strict' }, portLevelMtls: { http: { mode: 'STRICT' }, '8080': { mode: 'NOPE' } } } });
  assert.match(pa['spec.mtls.mode'], /must be one of UNSET, DISABLE, PERMISSIVE, STRICT/);
  assert.match(pa['spec.portLevelMtls.http'], /key must be a port number/);
  assert.match(pa['spec.portLevelMtls.8080.mode'], /must be one of/);
  assert.match(byField({ apiVersion: 'security.istio.io/v2', kind: 'PeerAuthentication', metadata: { name: 'p' } }).apiVersion, /must be one of security\.istio\.io\/v1/);
});

test('compile per workload: golden (mesh → namespace → workload → port; oldest wins; CUSTOM ignored)', () => {
  const resources = load();
  const workloads = {
    'shop-details': { namespace: 'shop', labels: { app: 'details' } },
    'shop-reviews': { namespace: 'shop', labels: { app: 'reviews' } },
    'other-web': { namespace: 'other', labels: { app: 'web' } },
  };
  for (const [name, w] of Object.entries(workloads)) {
    const got = JSON.stringify(compileSecurity(resources, w), null, 2) + '\n';
    const file = path.join(ROOT, 'test/golden/security', `${name}.json`);
    if (update) writeFileSync(file, got);
    assert.equal(got, readFileSync(file, 'utf8'), `${name}: compiled security differs from ${file}`);
  }
  const details = compileSecurity(resources, workloads['shop-details']);
  assert.equal(details.mode, 'STRICT', 'UNSET inherits the namespace STRICT, and the younger DISABLE loses');
  assert.equal(modeForPort(details, 9080), 'PERMISSIVE');
  assert.equal(modeForPort(details, 9443), 'STRICT');
  assert.equal(modeForPort(compileSecurity(resources, workloads['other-web']), 80), 'PERMISSIVE');
});

test('evaluate: the seeds\' example (deny-all, then GET /details* from one service account), DENY before ALLOW, TCP semantics', () => {
  const resources = load();
  const details = compileSecurity(resources, { namespace: 'shop', labels: { app: 'details' } });
  const reviews = compileSecurity(resources, { namespace: 'shop', labels: { app: 'reviews' } });
  const other = compileSecurity(resources, { namespace: 'other', labels: {} });
  const req = (principal: string | undefined, method: string, p: string): RequestAttributes => ({
    sourcePrincipal: principal, sourceNamespace: principal?.split('/')[2], sourceIp: '10.0.0.9', destinationPort: 9080,
    http: { host: 'details:9080', method, path: p, headers: {} },
  });
  const pp = 'cluster.local/ns/shop/sa/productpage';
  assert.equal(authorize(details, req(pp, 'GET', '/details/1?x=1')).allowed, true);
  assert.equal(authorize(details, req(pp, 'POST', '/details/1')).allowed, false);
  assert.equal(authorize(details, req('cluster.local/ns/shop/sa/reviews', 'GET', '/details/1')).allowed, false);
  assert.equal(authorize(details, req(undefined, 'GET', '/details/1')).allowed, false, 'plaintext has no principal');
  assert.equal(authorize(reviews, req(pp, 'GET', '/details/1')).reason, 'no ALLOW policy matched', 'deny-all (ALLOW with no rules) covers the namespace');
  const dbg = authorize(details, req(pp, 'GET', '/details/debug'));
  assert.deepEqual([dbg.allowed, dbg.policy], [false, 'istio-system/block-debug'], 'the mesh-wide DENY wins over the ALLOW');
  assert.equal(authorize(other, req(undefined, 'GET', '/')).allowed, true, 'no ALLOW policy: allowed');
  assert.equal(authorize(reviews, req(pp, 'POST', '/x')).audited, 'shop/audit-writes');
  // TCP: an ALLOW rule that needs HTTP fields cannot match; a DENY rule ignores them (fails closed).
  const tcp: RequestAttributes = { sourcePrincipal: pp, sourceNamespace: 'shop', sourceIp: '10.0.0.9', destinationPort: 9080 };
  assert.equal(authorize(details, tcp).allowed, false);
  assert.equal(authorize(other, tcp).policy, 'istio-system/block-debug');
});

test('evaluate: sources, operations and when conditions', () => {
  const sec = (rules: unknown[], action = 'ALLOW') => compileSecurity([readSecurityResource({ apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'p', namespace: 'n' }, spec: { action, rules } }).resource!], { namespace: 'n', labels: {} });
  const a = (over: Partial<RequestAttributes> = {}): RequestAttributes => ({ sourcePrincipal: 'cluster.local/ns/x/sa/y', sourceNamespace: 'x', sourceIp: '10.1.2.3', destinationPort: 8080, http: { host: 'Web.N.svc:8080', method: 'GET', path: '/api/v1', headers: { 'x-user': 'alice' } }, ...over });
  const allowed = (rules: unknown[], over?: Partial<RequestAttributes>) => authorize(sec(rules), a(over)).allowed;
  assert.equal(allowed([{ from: [{ source: { notPrincipals: ['*/sa/y'] } }] }]), false);
  assert.equal(allowed([{ from: [{ source: { principals: ['*'] } }] }], { sourcePrincipal: undefined }), false);
  assert.equal(allowed([{ from: [{ source: { ipBlocks: ['10.1.0.0/16'] } }] }]), true);
  assert.equal(allowed([{ from: [{ source: { remoteIpBlocks: ['10.2.0.0/16'] } }] }]), false);
  assert.equal(allowed([{ from: [{ source: { notNamespaces: ['x'] } }] }]), false);
  assert.equal(allowed([{ to: [{ operation: { hosts: ['web.n.svc'] } }] }]), true, 'hosts: case-insensitive, port optional');
  assert.equal(allowed([{ to: [{ operation: { ports: ['8080'], notPaths: ['/api/*'] } }] }]), false);
  assert.equal(allowed([{ when: [{ key: 'request.headers[X-User]', values: ['al*'] }, { key: 'destination.port', values: ['8080'] }] }]), true);
  assert.equal(allowed([{ when: [{ key: 'source.namespace', notValues: ['x'] }] }]), false);
  assert.equal(allowed([{}]), true, 'an empty rule matches everything');
  assert.equal(allowed([]), false, 'ALLOW without rules allows nothing');
  assert.equal(authorize(sec([], 'DENY'), a()).allowed, true, 'DENY without rules never matches');
  assert.equal(stringMatch('*', ''), false);
  assert.equal(stringMatch('/a*', '/abc'), true);
  assert.equal(stringMatch('*.svc', 'x.svc'), true);
});
