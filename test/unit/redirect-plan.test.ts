// buildPlan: every annotation's effect, the proxy identity rules, and every
// malformed-value case (the error must name the annotation and the token).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FieldError } from '../../src/common/errors.js';
import type { Container, Pod } from '../../src/kube/pod-types.js';
import { buildPlan, planHash } from '../../src/redirect/plan.js';
import { renderIptables } from '../../src/redirect/render-iptables.js';
import { renderNftables } from '../../src/redirect/render-nftables.js';
import { normaliseCidrs, parseCidr } from '../../src/redirect/addr.js';

function pod(annotations: Record<string, string> = {}, containers: Container[] = [{ name: 'app' }, { name: 'weir-proxy' }], initContainers?: Container[]): Pod {
  return { metadata: { name: 'p', annotations }, spec: { containers, initContainers } };
}
const T = 'traffic.sidecar.istio.io/';
const p = (from: number, to = from) => ({ from, to });

test('defaults: REDIRECT, uid/gid 1337, ports 15006/15001/15053, all inbound and outbound, DNS on', () => {
  const plan = buildPlan(pod());
  assert.deepEqual(plan, {
    version: 1, mode: 'REDIRECT', proxyUid: 1337, proxyGid: 1337, inboundPort: 15006, outboundPort: 15001,
    dns: { enabled: true, port: 15053 },
    inbound: { capture: 'all', includePorts: [], excludePorts: [p(15008), p(15020, 15021), p(15090)] },
    outbound: { includeCidrs: 'all', excludeCidrs: [], includePorts: [], excludePorts: [] },
    excludeInterfaces: [],
  });
});

test('inbound ports: include list, * and empty; excludes merge with the always-excluded ports', () => {
  assert.deepEqual(buildPlan(pod({ [`${T}includeInboundPorts`]: '80, 8080,9000-9002' })).inbound.includePorts, [p(80), p(8080), p(9000, 9002)]);
  assert.equal(buildPlan(pod({ [`${T}includeInboundPorts`]: '80' })).inbound.capture, 'list');
  assert.equal(buildPlan(pod({ [`${T}includeInboundPorts`]: '*' })).inbound.capture, 'all');
  assert.equal(buildPlan(pod({ [`${T}includeInboundPorts`]: '' })).inbound.capture, 'none');
  assert.deepEqual(buildPlan(pod({ [`${T}excludeInboundPorts`]: '15007,22' })).inbound.excludePorts, [p(22), p(15007, 15008), p(15020, 15021), p(15090)]);
  assert.deepEqual(buildPlan(pod({ 'config.linkerd.io/skip-inbound-ports': '4190,4191,25-30' })).inbound.excludePorts,
    [p(25, 30), p(4190, 4191), p(15008), p(15020, 15021), p(15090)]);
});

test('outbound ports, CIDRs and Linkerd skips', () => {
  const o = buildPlan(pod({
    [`${T}includeOutboundPorts`]: '6379',
    [`${T}excludeOutboundPorts`]: '5432',
    'config.linkerd.io/skip-outbound-ports': '443,5430-5433',
    [`${T}includeOutboundIPRanges`]: '10.96.0.0/12, fd00::/8',
    [`${T}excludeOutboundIPRanges`]: '10.96.0.1',
    'config.linkerd.io/skip-subnets': '10.96.0.0/24,2001:db8::1/64',
  })).outbound;
  assert.deepEqual(o.includePorts, [p(6379)]);
  assert.deepEqual(o.excludePorts, [p(443), p(5430, 5433)]);
  assert.deepEqual(o.includeCidrs, [{ family: 4, address: '10.96.0.0', prefix: 12 }, { family: 6, address: 'fd00::', prefix: 8 }]);
  // 10.96.0.1/32 is inside 10.96.0.0/24: kept once, as the wider prefix.
  assert.deepEqual(o.excludeCidrs, [{ family: 4, address: '10.96.0.0', prefix: 24 }, { family: 6, address: '2001:db8::', prefix: 64 }]);
  assert.deepEqual(buildPlan(pod({ [`${T}includeOutboundIPRanges`]: '' })).outbound.includeCidrs, []);
  assert.equal(buildPlan(pod({ [`${T}includeOutboundIPRanges`]: '*' })).outbound.includeCidrs, 'all');
});

test('excludeInterfaces, interception mode and weir.io/dns-capture', () => {
  assert.deepEqual(buildPlan(pod({ [`${T}excludeInterfaces`]: 'net1, eth1,net1' })).excludeInterfaces, ['eth1', 'net1']);
  assert.equal(buildPlan(pod({ 'sidecar.istio.io/interceptionMode': 'TPROXY' })).mode, 'TPROXY');
  assert.equal(buildPlan(pod({ 'weir.io/dns-capture': 'false' })).dns.enabled, false);
  assert.equal(buildPlan(pod({ 'weir.io/dns-capture': 'TRUE' })).dns.enabled, true);
  assert.equal(buildPlan(pod(), { captureDns: false }).dns.enabled, false);
});

test('proxy identity: container securityContext, native sidecar, Linkerd annotation, defaults', () => {
  const withSc = (name: string, runAsUser?: number, runAsGroup?: number): Container => ({ name, securityContext: { runAsUser, runAsGroup } });
  let plan = buildPlan(pod({}, [{ name: 'app' }, withSc('weir-proxy', 2000, 3000)]));
  assert.deepEqual([plan.proxyUid, plan.proxyGid], [2000, 3000]);
  plan = buildPlan(pod({}, [{ name: 'app' }], [{ ...withSc('istio-proxy', 4242), restartPolicy: 'Always' }]));
  assert.deepEqual([plan.proxyUid, plan.proxyGid], [4242, 4242], 'native sidecar; gid follows a known uid');
  plan = buildPlan(pod({}, [{ name: 'app' }], [withSc('istio-proxy', 4242)]));
  assert.deepEqual([plan.proxyUid, plan.proxyGid], [1337, 1337], 'a plain init container is not the proxy');
  plan = buildPlan(pod({ 'config.linkerd.io/proxy-uid': '2102' }, [{ name: 'app' }]));
  assert.deepEqual([plan.proxyUid, plan.proxyGid], [2102, 2102]);
  plan = buildPlan(pod({ 'config.linkerd.io/proxy-uid': '2102' }, [withSc('istio-proxy', 1337)]));
  assert.equal(plan.proxyUid, 1337, 'what the container really runs as wins');
  plan = buildPlan(pod({}, [withSc('app', 1000)]), { defaultProxyUid: 7, defaultProxyGid: 8 });
  assert.deepEqual([plan.proxyUid, plan.proxyGid], [7, 8]);
});

const malformed: Array<[string, string, string]> = [
  [`${T}excludeOutboundIPRanges`, '10.0.0.0/8,10.0.0.0/33', '10.0.0.0/33'],
  [`${T}excludeOutboundIPRanges`, '10.0.0.256', '10.0.0.256'],
  [`${T}excludeOutboundIPRanges`, '010.0.0.1', '010.0.0.1'],
  [`${T}includeOutboundIPRanges`, 'fd00::/129', 'fd00::/129'],
  [`${T}includeOutboundIPRanges`, 'fd00:::1', 'fd00:::1'],
  [`${T}includeOutboundIPRanges`, 'example.com', 'example.com'],
  [`${T}includeOutboundIPRanges`, '10.0.0.0/8,,10.1.0.0/16', '10.0.0.0/8,,10.1.0.0/16'],
  [`${T}includeInboundPorts`, '80,0', '0'],
  [`${T}excludeInboundPorts`, '65536', '65536'],
  [`${T}includeOutboundPorts`, '30-25', '30-25'],
  [`${T}excludeOutboundPorts`, 'http', 'http'],
  [`${T}excludeOutboundPorts`, '-1', '-1'],
  [`${T}excludeInterfaces`, 'eth0,this-name-is-too-long', 'this-name-is-too-long'],
  [`${T}excludeInterfaces`, 'eth"0', 'eth"0'],
  ['sidecar.istio.io/interceptionMode', 'redirect', 'redirect'],
  ['sidecar.istio.io/interceptionMode', 'NONE', 'NONE'],
  ['config.linkerd.io/proxy-uid', 'proxy', 'proxy'],
  ['config.linkerd.io/proxy-uid', '0', '0'],
  ['config.linkerd.io/skip-inbound-ports', '4190,4191-', '4191-'],
  ['config.linkerd.io/skip-outbound-ports', '25-30-35', '25-30-35'],
  ['config.linkerd.io/skip-subnets', '10.0.0.0/8/8', '10.0.0.0/8/8'],
  ['weir.io/dns-capture', 'no', 'no'],
];

for (const [annotation, value, token] of malformed) {
  test(`malformed ${annotation}=${JSON.stringify(value)} names the annotation and ${JSON.stringify(token)}`, () => {
    assert.throws(() => buildPlan(pod({ [annotation]: value })), (e: unknown) => {
      assert.ok(e instanceof FieldError, String(e));
      assert.equal(e.field, annotation);
      assert.equal(e.token, token);
      assert.ok(e.message.includes(annotation) && e.message.includes(JSON.stringify(token)), e.message);
      return true;
    });
  });
}

test('malformed proxy securityContext names the container field', () => {
  assert.throws(() => buildPlan(pod({}, [{ name: 'istio-proxy', securityContext: { runAsUser: 0 } }])),
    (e: unknown) => e instanceof FieldError && e.field === 'spec.containers[0].securityContext.runAsUser');
});

test('TPROXY renders for both backends; a plan whose mode and tproxy disagree is refused by both', () => {
  const plan = buildPlan(pod({ 'sidecar.istio.io/interceptionMode': 'TPROXY' }));
  assert.deepEqual(plan.tproxy, { mark: 1337, routeTable: 133 });
  assert.match(renderNftables(plan), /meta l4proto tcp tproxy to :15006 meta mark set 1337 accept/);
  assert.match(renderIptables(plan).v6, /-j TPROXY --on-port 15006 --on-ip :: --tproxy-mark 1337\/0xffffffff/);
  const { tproxy: _, ...noTproxy } = plan;
  const redirectWithTproxy = { ...buildPlan(pod()), tproxy: { mark: 1337, routeTable: 133 } };
  const badTable = { ...plan, tproxy: { mark: 1337, routeTable: 254 } };
  for (const render of [renderNftables, renderIptables]) {
    assert.throws(() => render(noTproxy), (e: unknown) => e instanceof FieldError && e.field === 'plan.tproxy');
    assert.throws(() => render(redirectWithTproxy), (e: unknown) => e instanceof FieldError && e.field === 'plan.tproxy');
    assert.throws(() => render(badTable), (e: unknown) => e instanceof FieldError && e.field === 'plan.tproxy.routeTable');
  }
});

test('planHash is stable under key order and changes with any field', () => {
  const a = buildPlan(pod({ [`${T}excludeOutboundPorts`]: '81,80' }));
  const b = buildPlan(pod({ [`${T}excludeOutboundPorts`]: '80, 81' }));
  assert.equal(planHash(a), planHash(b));
  assert.match(planHash(a), /^[0-9a-f]{12}$/);
  const reverseKeys = (v: unknown): unknown => Array.isArray(v) ? v.map(reverseKeys)
    : v && typeof v === 'object' ? Object.fromEntries(Object.entries(v).reverse().map(([k, x]) => [k, reverseKeys(x)])) : v;
  const reordered = reverseKeys(a) as typeof a;
  assert.notEqual(JSON.stringify(reordered), JSON.stringify(a));
  assert.equal(planHash(reordered), planHash(a));
  assert.notEqual(planHash({ ...a, proxyUid: 1338 }), planHash(a));
  assert.match(renderNftables(a), new RegExp(`comment "weir plan=${planHash(a)}"`));
});

test('CIDR parsing normalises IPv6 text and clears host bits', () => {
  assert.deepEqual(parseCidr('2001:DB8:0:0:0:0:0:1/32'), { family: 6, address: '2001:db8::', prefix: 32 });
  assert.deepEqual(parseCidr('::ffff:10.1.2.3'), { family: 6, address: '::ffff:a01:203', prefix: 128 });
  assert.deepEqual(parseCidr('10.1.2.3/8'), { family: 4, address: '10.0.0.0', prefix: 8 });
  assert.deepEqual(parseCidr('0.0.0.0/0'), { family: 4, address: '0.0.0.0', prefix: 0 });
  assert.deepEqual(parseCidr('1:0:0:1:0:0:0:1'), { family: 6, address: '1:0:0:1::1', prefix: 128 });
  assert.deepEqual(normaliseCidrs([parseCidr('10.0.0.0/16')!, parseCidr('10.0.0.0/8')!, parseCidr('10.0.0.0/8')!, parseCidr('11.0.0.0/8')!]).map((c) => `${c.address}/${c.prefix}`),
    ['10.0.0.0/8', '11.0.0.0/8']);
});

test('a pod without metadata, or with a non-string annotation, is a FieldError', () => {
  assert.throws(() => buildPlan({ spec: { containers: [] } } as unknown as Pod), FieldError);
  assert.throws(() => buildPlan({ metadata: { annotations: { 'weir.io/dns-capture': false } }, spec: { containers: [] } } as unknown as Pod),
    (e: unknown) => e instanceof FieldError && e.field === 'metadata.annotations.weir.io/dns-capture');
});
