// VirtualService match semantics, route selection, rewrites, retry policy
// and the static-config validator, on the compiled shapes the translators
// produce (test/golden/istio/*.json).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { checkRegex, matchOne, stringMatches, UnsafeRegexError, type MatchInput } from '../../src/proxy/http/match.js';
import { pickWeighted, routeFor, virtualHostFor } from '../../src/proxy/http/compiled-route.js';
import { applyHeaderOps, redirectLocation, rewritePath, shadowAuthority } from '../../src/proxy/http/route-actions.js';
import { corsFor } from '../../src/proxy/http/cors.js';
import { defaultRetry, RetryPolicy } from '../../src/proxy/http/retry-policy.js';
import { validateCompiledConfig } from '../../src/proxy/compiled/validate.js';
import { l4RouteFor, l4ServiceFor, sniMatches } from '../../src/proxy/tcp/l4-routes.js';
import type { CompiledProxyConfig } from '../../src/controlplane/resources.js';

const input = (o: Partial<MatchInput> = {}): MatchInput => ({
  method: 'GET', path: '/', query: new URLSearchParams(), scheme: 'http', authority: 'reviews', headers: {}, port: 9080,
  sourceLabels: { app: 'productpage', version: 'v1' }, sourceNamespace: 'default', ...o,
});

test('string matches: exact, prefix, regex as a full match (RE2 semantics), ignoreUriCase', () => {
  assert.ok(stringMatches({ exact: '/a' }, '/a'));
  assert.ok(!stringMatches({ exact: '/a' }, '/ab'));
  assert.ok(stringMatches({ prefix: '/a' }, '/ab'));
  assert.ok(stringMatches({ regex: '/v[0-9]+' }, '/v12'));
  assert.ok(!stringMatches({ regex: '/v[0-9]+' }, '/v12/x'), 'regex must match the whole value');
  assert.ok(!stringMatches({ regex: 'a|b' }, 'ab'), 'alternation is anchored as a whole');
  assert.ok(stringMatches({ prefix: '/API' }, '/api/x', true));
  assert.ok(!stringMatches({ exact: 'x' }, undefined));
});

test('catastrophic or non-RE2 regexes are refused, and never match', () => {
  for (const bad of ['(a+)+$', '(a|aa)*b', '(.*a){12}', '(\\w+\\s?)*$', '(a)\\1', '(?=a)a', '(?<!a)b']) {
    assert.throws(() => checkRegex(bad), UnsafeRegexError, bad);
  }
  for (const ok of ['/v[0-9]+', '^(foo|bar)$', 'a(bc)?d', '[a-z]+(-[a-z]+)?', '(ab)+']) assert.doesNotThrow(() => checkRegex(ok), ok);
  const t0 = performance.now();
  assert.equal(stringMatches({ regex: '(a+)+$' }, 'a'.repeat(40) + '!'), false);
  assert.ok(performance.now() - t0 < 50, 'refused before it could backtrack');
});

test('HttpMatch: every condition must hold (headers, withoutHeaders, queryParams, method, port, sourceLabels, sourceNamespace)', () => {
  const m = { uri: { prefix: '/api' }, method: { exact: 'POST' }, headers: { 'end-user': { exact: 'jason' } }, queryParams: { v: { regex: '[0-9]+' } }, withoutHeaders: { 'x-canary': { exact: 'off' } }, sourceLabels: { app: 'productpage' }, sourceNamespace: 'default', port: 9080 };
  const ok = input({ method: 'POST', path: '/api/x', headers: { 'end-user': 'jason' }, query: new URLSearchParams('v=2') });
  assert.ok(matchOne(m, ok));
  assert.ok(!matchOne(m, { ...ok, method: 'GET' }));
  assert.ok(!matchOne(m, { ...ok, headers: { 'end-user': 'bob' } }));
  assert.ok(!matchOne(m, { ...ok, headers: { 'end-user': 'jason', 'x-canary': 'off' } }), 'withoutHeaders');
  assert.ok(matchOne(m, { ...ok, headers: { 'end-user': 'jason', 'x-canary': 'on' } }));
  assert.ok(!matchOne(m, { ...ok, query: new URLSearchParams('v=x') }));
  assert.ok(!matchOne(m, { ...ok, query: new URLSearchParams('') }));
  assert.ok(!matchOne(m, { ...ok, sourceLabels: { app: 'other' } }));
  assert.ok(!matchOne(m, { ...ok, sourceNamespace: 'shop' }));
  assert.ok(!matchOne(m, { ...ok, port: 80 }));
  assert.ok(matchOne({ headers: { 'x-present': { prefix: '' } } }, input({ headers: { 'x-present': '' } })), 'empty prefix = present');
  assert.ok(!matchOne({ headers: { 'x-present': { prefix: '' } } }, input()));
});

test('golden bookinfo: jason is routed by the first matching route; others fall to the next; virtual hosts by any domain', () => {
  const cfg = JSON.parse(readFileSync('test/golden/istio/bookinfo-ratings-test-abort.json', 'utf8')) as CompiledProxyConfig;
  const table = cfg.routes.find((t) => t.port === 9080)!;
  for (const host of ['ratings', 'ratings:9080', 'RATINGS.default.svc.cluster.local', 'ratings.default.svc.cluster.local.', '10.96.0.12:9080']) {
    assert.equal(virtualHostFor(table, host)?.name, 'ratings.default.svc.cluster.local:9080', host);
  }
  assert.equal(virtualHostFor(table, 'nope'), undefined);
  const vh = virtualHostFor(table, 'ratings')!;
  const jason = routeFor(vh, input({ headers: { 'end-user': 'jason' } }))!;
  assert.equal(jason.route.source, 'default/ratings#http[0]');
  assert.equal(jason.route.fault?.abort?.httpStatus, 500);
  assert.equal(routeFor(vh, input())!.route.source, 'default/ratings#http[1]');
});

test('weighted pick follows the weights', () => {
  const cs = [{ cluster: 'v1', weight: 90 }, { cluster: 'v2', weight: 10 }];
  assert.equal(pickWeighted(cs, 0.0)!.cluster, 'v1');
  assert.equal(pickWeighted(cs, 0.8999)!.cluster, 'v1');
  assert.equal(pickWeighted(cs, 0.9)!.cluster, 'v2');
  let v2 = 0;
  for (let i = 0; i < 10_000; i++) if (pickWeighted(cs)!.cluster === 'v2') v2++;
  assert.ok(v2 > 800 && v2 < 1200, `v2 ${v2}/10000`);
});

test('rewrite: prefix replaced after a prefix match, whole path after exact, "/" prefix without a uri match; regex rewrite with \\1; query kept', () => {
  assert.equal(rewritePath('/old/x?q=1', { uri: '/new' }, { uri: { prefix: '/old' } }), '/new/x?q=1');
  assert.equal(rewritePath('/exact?q=1', { uri: '/other' }, { uri: { exact: '/exact' } }), '/other?q=1');
  assert.equal(rewritePath('/foo', { uri: '/bar/' }, undefined), '/bar/foo');
  assert.equal(rewritePath('/v1/users/42', { uriRegexRewrite: { match: '^/v1/users/([0-9]+)', rewrite: '/users/\\1/v1' } }, undefined), '/users/42/v1');
  assert.equal(redirectLocation({ uri: '/moved', authority: 'new.example', port: 8443, scheme: 'https' }, { path: '/a?x=1', authority: 'old:80', scheme: 'http' }), 'https://new.example:8443/moved?x=1');
  assert.equal(redirectLocation({}, { path: '/a', authority: 'h', scheme: 'http' }), 'http://h/a');
  assert.equal(shadowAuthority('web.shop:80'), 'web.shop-shadow:80');
  assert.equal(shadowAuthority('web'), 'web-shadow');
});

test('header ops: remove, set, add (add keeps the existing value); framing headers are protected', () => {
  const h: Record<string, string | string[] | undefined> = { a: '1', b: '2', 'content-length': '3' };
  applyHeaderOps(h, { remove: ['B', 'content-length'], set: { A: 'x', c: 'y' }, add: { a: 'z' } });
  assert.deepEqual(h, { a: ['x', 'z'], c: 'y', 'content-length': '3' });
});

test('CORS: preflight from an allowed origin is answered; other origins pass', () => {
  const policy = { allowOrigins: [{ exact: 'https://a.example' }, { regex: 'https://.*\\.b\\.example' }], allowMethods: ['GET', 'POST'], allowHeaders: ['x-a'], exposeHeaders: ['x-e'], maxAge: '24h', allowCredentials: true };
  const pre = corsFor(policy, 'OPTIONS', { origin: 'https://x.b.example', 'access-control-request-method': 'POST' });
  assert.deepEqual(pre.preflight, { 'access-control-allow-origin': 'https://x.b.example', 'access-control-allow-credentials': 'true', 'access-control-allow-methods': 'GET,POST', 'access-control-allow-headers': 'x-a', 'access-control-max-age': '86400' });
  assert.deepEqual(corsFor(policy, 'GET', { origin: 'https://a.example' }).response, { 'access-control-allow-origin': 'https://a.example', 'access-control-allow-credentials': 'true', 'access-control-expose-headers': 'x-e' });
  assert.deepEqual(corsFor(policy, 'OPTIONS', { origin: 'https://evil.example', 'access-control-request-method': 'GET' }), {});
});

test('retry policy: retryOn classes, retriable status codes, gRPC statuses, 25 ms exponential backoff with jitter', () => {
  const p = new RetryPolicy({ attempts: 3, retryOn: ['5xx', 'retriable-4xx'], retriableStatusCodes: [], backoffBaseMs: 25 });
  assert.ok(p.retriesResponse(500, undefined) && p.retriesResponse(503, undefined) && p.retriesResponse(409, undefined));
  assert.ok(!p.retriesResponse(404, undefined));
  assert.ok(p.retriesFailure('connect') && p.retriesFailure('reset') && p.retriesFailure('per-try-timeout') && p.retriesFailure('refused-stream'));
  const gw = new RetryPolicy({ attempts: 1, retryOn: ['gateway-error'], retriableStatusCodes: [], backoffBaseMs: 25 });
  assert.ok(gw.retriesResponse(502, undefined) && !gw.retriesResponse(500, undefined));
  const d = new RetryPolicy(defaultRetry(2));
  assert.ok(d.retriesResponse(503, undefined) && !d.retriesResponse(500, undefined) && d.retriesResponse(200, '14') && !d.retriesResponse(200, '13'));
  assert.ok(d.retriesFailure('connect') && !d.retriesFailure('reset'));
  const b1 = Array.from({ length: 200 }, () => d.backoffMs(1));
  const b3 = Array.from({ length: 200 }, () => d.backoffMs(3));
  assert.ok(Math.max(...b1) <= 25 && Math.max(...b3) <= 100 && Math.max(...b3) > 50, 'exponential ceiling 25, 50, 100 ms');
  assert.ok(new Set(b1.map((x) => Math.round(x))).size > 10, 'jittered');
  assert.ok(Math.max(...Array.from({ length: 200 }, () => d.backoffMs(10))) <= 250, 'capped at 10 × base');
});

test('static config validation names the field; defaults fill what translators always set', () => {
  const good = { clusters: [{ name: 'c', host: 'web.shop.svc.cluster.local', port: 80, service: 'shop/web' }], routes: [{ port: 80, virtualHosts: [{ name: 'web', domains: ['web'], routes: [{ action: { route: [{ cluster: 'c' }] } }] }] }] };
  const v = validateCompiledConfig(good);
  assert.equal(v.config.clusters[0].connectionPool.connectTimeoutMs, 10_000);
  assert.equal(v.config.clusters[0].loadBalancer.simple, 'LEAST_REQUEST');
  assert.deepEqual(v.config.routes[0].virtualHosts[0].routes[0].action, { route: [{ cluster: 'c', weight: 100 }] });
  const bad = (mut: (o: any) => void, field: RegExp) => { const o = structuredClone(good) as any; mut(o); assert.throws(() => validateCompiledConfig(o), (e: Error) => field.test(e.message), String(field)); };
  bad((o) => { o.routes[0].virtualHosts[0].routes[0].action.route[0].cluster = ''; }, /^routes\[0\]\.virtualHosts\[0\]\.routes\[0\]\.action\.route\[0\]\.cluster: must be a non-empty string/);
  bad((o) => { o.clusters.push({ ...o.clusters[0] }); }, /^clusters\[1\]\.name: is a duplicate/);
  bad((o) => { o.routes[0].virtualHosts[0].routes[0].match = [{ uri: { regex: '(a+)+' } }]; }, /^routes\[0\]\.virtualHosts\[0\]\.routes\[0\]\.match\[0\]\.uri\.regex: invalid regex/);
  bad((o) => { o.routes[0].virtualHosts[0].routes[0].match = [{ headers: { x: { regex: '(' } } }]; }, /match\[0\]\.headers\.x\.regex: invalid regex/);
  bad((o) => { o.routes[0].virtualHosts[0].routes[0].match = [{ uri: { regex: 5 } }]; }, /match\[0\]\.uri\.regex: must be a string/);
  bad((o) => { o.routes[0].virtualHosts[0].routes[0].match = [{ headers: { x: { exact: 'a', prefix: 'b' } } }]; }, /match\[0\]\.headers\.x: must have exactly one of exact, prefix, regex/);
  bad((o) => { o.routes[0].virtualHosts[0].routes[0].match = [{ sourceLabels: { app: 1 } }]; }, /match\[0\]\.sourceLabels\.app: must be a string/);
  bad((o) => { o.clusters[0].loadBalancer = { simple: 'FASTEST' }; }, /^clusters\[0\]\.loadBalancer\.simple: must be one of/);
  bad((o) => { o.clusters[0].port = 0; }, /^clusters\[0\]\.port: must be a number/);
  bad((o) => { o.outboundTrafficPolicy = { mode: 'DENY' }; }, /^outboundTrafficPolicy\.mode/);
  bad((o) => { o.routes[0].virtualHosts[0].routes[0].action = {}; }, /action: must have exactly one/);
  // Every golden compiled config is accepted as it is.
  for (const f of ['bookinfo-reviews-90-10', 'bookinfo-ratings-test-abort', 'bookinfo-ratings-test-delay', 'precedence-from-shop', 'precedence-from-web']) {
    assert.doesNotThrow(() => validateCompiledConfig(JSON.parse(readFileSync(`test/golden/istio/${f}.json`, 'utf8'))), f);
  }
});

test('tcp/tls routes: by address or SNI; destinationSubnets, sourceLabels, sniHosts', () => {
  const svc = { host: 'db.shop.svc.cluster.local', port: 5432, protocol: 'tcp' as const, addresses: ['10.96.1.1'], routes: [
    { source: 'a', match: [{ destinationSubnets: ['10.96.0.0/16'], sourceLabels: { app: 'web' } }], route: [{ cluster: 'sub', weight: 100 }] },
    { source: 'default', match: [], route: [{ cluster: 'all', weight: 100 }] },
  ] };
  const tls = { host: 'api.example.com', port: 443, protocol: 'tls' as const, addresses: [], routes: [{ source: 't', match: [{ sniHosts: ['*.example.com'] }], route: [{ cluster: 'ext', weight: 100 }] }] };
  const req = { ip: '10.96.1.1', port: 5432, sourceLabels: { app: 'web' }, sourceNamespace: 'shop' };
  assert.equal(l4ServiceFor([svc], req), svc);
  assert.equal(l4RouteFor(svc, req)!.cluster.cluster, 'sub');
  assert.equal(l4RouteFor(svc, { ...req, sourceLabels: {} })!.cluster.cluster, 'all');
  assert.equal(l4ServiceFor([svc, tls], { ...req, ip: '1.2.3.4', port: 443, sni: 'api.example.com' }), tls);
  assert.equal(l4RouteFor(tls, { ...req, ip: '1.2.3.4', port: 443, sni: 'x.example.com' })!.cluster.cluster, 'ext');
  assert.equal(l4RouteFor(tls, { ...req, ip: '1.2.3.4', port: 443, sni: 'example.org' }), undefined);
  assert.ok(sniMatches('*.a.b', 'x.a.b') && !sniMatches('*.a.b', 'a.b') && sniMatches('A.B', 'a.b'));
});
