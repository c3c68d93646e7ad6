// Reading Istio resources: every mistake names its field, unsupported
// fields are reported (never silently dropped), and `weir analyze` prints
// one `file: Kind ns/name: field: message` line per problem with exit 2.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { readIstioResource } from '../../src/istio/read.js';
import { compileProxyConfig } from '../../src/controlplane/translate/compile.js';
import { ISTIO_FIXTURES, loadIstioFixtures } from '../support/istio-fixtures.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
function weir(args: string[], input?: string) {
  return spawnSync(process.execPath, ['--import', 'tsx', path.join(ROOT, 'src/cli/main.ts'), ...args], { encoding: 'utf8', input, cwd: ROOT });
}

test('v1, v1beta1 and v1alpha3 read the same; other versions and kinds are refused by field', () => {
  const vs = (apiVersion: string) => readIstioResource({ apiVersion, kind: 'VirtualService', metadata: { name: 'a' }, spec: { hosts: ['a'], http: [{ route: [{ destination: { host: 'a' } }] }] } });
  for (const v of ['networking.istio.io/v1', 'networking.istio.io/v1beta1', 'networking.istio.io/v1alpha3']) {
    assert.deepEqual(vs(v).problems, [], v);
    assert.equal(vs(v).resource?.kind, 'VirtualService');
  }
  assert.equal(vs('networking.istio.io/v2').problems[0].field, 'apiVersion');
  assert.equal(readIstioResource({ apiVersion: 'networking.istio.io/v1', kind: 'Nope', metadata: { name: 'a' } }).problems[0].field, 'kind');
  assert.equal(readIstioResource(null).problems[0].field, '(document)');
  assert.equal(readIstioResource({ apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name: 'Bad_Name' }, spec: { hosts: ['a'] } }).problems[0].field, 'metadata.name');
});

test('every malformed field is named with its path, and a resource with errors is not applied', () => {
  const r = readIstioResource({ apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name: 'x', namespace: 'n' }, spec: {
    hosts: ['x'],
    http: [
      { match: [{ uri: { prefix: '/a', exact: '/b' } }, { headers: { h: { regex: '(' } } }], route: [{ destination: { host: 'x', port: { number: 70000 } } }] },
      { route: [{ destination: { host: 'x' }, weight: 50 }, { destination: { host: 'y' } }], timeout: 'soon' },
      { redirect: { uri: '/z' }, directResponse: { status: 200 } },
      { route: [{ destination: { host: 'x' } }], mirrorPercent: 5, fault: { delay: { percentage: { value: 10 } } } },
    ],
    tls: [{ route: [{ destination: { host: 'x' } }] }],
  } });
  assert.equal(r.resource, undefined, 'not applied');
  const byField = Object.fromEntries(r.problems.map((p) => [p.field, `${p.severity}: ${p.message}`]));
  assert.match(byField['spec.http[0].match[0].uri'], /exactly one of exact, prefix, regex/);
  assert.match(byField['spec.http[0].match[1].headers.h.regex'], /invalid regular expression/);
  assert.match(byField['spec.http[0].route[0].destination.port.number'], /≤ 65535/);
  assert.match(byField['spec.http[1].route[1].weight'], /required when a route has several destinations/);
  assert.match(byField['spec.http[1].timeout'], /duration/);
  assert.match(byField['spec.http[2]'], /exactly one of route, redirect, directResponse \(has redirect, directResponse\)/);
  assert.match(byField['spec.http[3].mirrorPercent'], /^unsupported/);
  assert.match(byField['spec.http[3].fault.delay.fixedDelay'], /is required/);
  assert.match(byField['spec.tls[0].match'], /required for tls routes/);
});

test('weir analyze: one line per problem, exit 2; clean input exit 0; -o json; stdin', () => {
  const bad = weir(['analyze', '-f', path.join(ISTIO_FIXTURES, 'bad-resources.yaml')]);
  assert.equal(bad.status, 2, bad.stderr);
  const lines = bad.stdout.trim().split('\n').map((l) => l.replace(`${ISTIO_FIXTURES}/`, ''));
  const expect = [
    'bad-resources.yaml: VirtualService app/weights: spec.http[0].route: weights add up to 90, must be 100',
    'bad-resources.yaml: VirtualService app/typo: spec.http[0].timout: unknown field',
    'bad-resources.yaml: VirtualService app/ghost: spec.http[0].fault.abort.percentage.value: must be a number between 0 and 100',
    'bad-resources.yaml: VirtualService app/ghost: spec.http[0].retries.perTryTimeout: must be a duration like 500ms, 30s, 5m, 1h (got "2 seconds")',
    'bad-resources.yaml: DestinationRule app/web: spec.trafficPolicy.loadBalancer.simple: must be one of UNSPECIFIED, LEAST_REQUEST, LEAST_CONN, ROUND_ROBIN, RANDOM, PASSTHROUGH (got "FASTEST")',
    'bad-resources.yaml: DestinationRule app/web: spec.trafficPolicy.outlierDetection.splitExternalLocalOriginErrors: unsupported: not supported by weir yet; ignored',
    'bad-resources.yaml: Sidecar app/two: spec.egress[0].hosts[1]: must be namespace/host (e.g. "./*", "istio-system/*", "*/foo.example.com") (got "bad host")',
    'bad-resources.yaml: AuthorizationPolicy app/ext: spec.action: unsupported: CUSTOM (external authorization) is not supported by weir; the policy is ignored',
    'bad-resources.yaml: AuthorizationPolicy app/jwt: spec.rules[0].when[0].key: unsupported: request.auth.claims[iss]: JWT request authentication is not supported by weir; an ALLOW rule with it never matches, a DENY rule with it always does',
    'bad-resources.yaml: AuthorizationPolicy app/jwt: spec.rules[0].when[1].key: unknown condition key "source.pod"',
    'bad-resources.yaml: PeerAuthentication app/strict: spec.mtls.mode: must be one of UNSET, DISABLE, PERMISSIVE, STRICT (got "STRICTEST")',
    'bad-resources.yaml: PeerAuthentication app/strict: spec.portLevelMtls: warning: ignored without spec.selector (Istio applies port-level mTLS only to selected workloads)',
    'bad-resources.yaml: VirtualService app/nosubset: spec.http[0].route[0].destination.subset: subset v9: no DestinationRule for web.app.svc.cluster.local is visible from namespace app',
  ];
  for (const e of expect) assert.ok(lines.includes(e), `missing line:\n${e}\nin:\n${lines.join('\n')}`);
  // The DestinationRule with an error is not applied, so the subset check says no DestinationRule is visible.
  const clean = weir(['analyze', '-f', path.join(ISTIO_FIXTURES, 'bookinfo-services.yaml'), path.join(ISTIO_FIXTURES, 'destination-rule-all.yaml'), path.join(ISTIO_FIXTURES, 'virtual-service-reviews-90-10.yaml')]);
  assert.equal(clean.status, 0, clean.stdout);
  assert.match(clean.stdout, /no problems found/);
  const json = weir(['analyze', '-o', 'json', '-f', '-'], 'apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a}\nspec: {hosts: [a], http: [{route: [{destination: {host: a, subset: v1}}]}]}\n');
  assert.equal(json.status, 2);
  const findings = JSON.parse(json.stdout) as { file: string; severity: string; field: string }[];
  assert.ok(findings.some((f) => f.file === '<stdin>' && f.field === 'spec.http[0].route[0].destination.subset' && f.severity === 'error'), json.stdout);
  const yamlErr = weir(['analyze', '-f', '-'], 'kind: [\n');
  assert.equal(yamlErr.status, 2);
  assert.match(yamlErr.stdout, /<stdin>|-: document 1: YAML/);
});

test('the bookinfo 90/10 canary compiles to one route with 90 and 10 on subsets v1 and v3', () => {
  const { services, resources } = loadIstioFixtures(['bookinfo-services.yaml', 'destination-rule-all.yaml', 'virtual-service-reviews-90-10.yaml']);
  const out = compileProxyConfig({ clusterDomain: 'cluster.local', rootNamespace: 'istio-system', proxyNamespace: 'default', services, resources });
  const vh = out.routes.find((t) => t.port === 9080)!.virtualHosts.find((v) => v.name === 'reviews.default.svc.cluster.local:9080')!;
  assert.ok(vh.domains.includes('reviews') && vh.domains.includes('reviews.default.svc:9080') && vh.domains.includes('10.96.0.13:9080'));
  assert.equal(vh.routes.length, 1);
  const action = vh.routes[0].action as { route: { cluster: string; weight: number }[] };
  assert.deepEqual(action.route, [{ cluster: 'outbound|9080|v1|reviews.default.svc.cluster.local', weight: 90 }, { cluster: 'outbound|9080|v3|reviews.default.svc.cluster.local', weight: 10 }]);
  const v3 = out.clusters.find((c) => c.name === 'outbound|9080|v3|reviews.default.svc.cluster.local')!;
  assert.deepEqual(v3.selector, { version: 'v3' });
  assert.equal(v3.loadBalancer.simple, 'LEAST_REQUEST');
  // Hosts without a VirtualService keep the default route with Istio's default retries.
  const details = out.routes[0].virtualHosts.find((v) => v.name.startsWith('details'))!;
  assert.equal(details.routes[0].source, 'default');
  assert.equal(details.routes[0].retries?.attempts, 2);
  assert.deepEqual(out.ignored, []);
});
