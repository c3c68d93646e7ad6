// What each mesh's proxy container means for the plan, as istio-cni and
// linkerd-cni program it: DNS capture only where something answers on
// 15053, Linkerd's ports/uid/ignored ports, TPROXY's mark and table.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Container, Pod } from '../../src/kube/pod-types.js';
import { findProxyContainer } from '../../src/kube/proxy-container.js';
import { buildPlan } from '../../src/redirect/plan.js';
import { renderIptables } from '../../src/redirect/render-iptables.js';
import { renderNftables } from '../../src/redirect/render-nftables.js';

const pod = (containers: Container[], annotations: Record<string, string> = {}): Pod => ({ metadata: { name: 'p', annotations }, spec: { containers } });
const istio = (env?: Record<string, string>): Container => ({ name: 'istio-proxy', env: env && Object.entries(env).map(([name, value]) => ({ name, value })) });
const p = (from: number, to = from) => ({ from, to });

test('DNS: istio-proxy only with ISTIO_META_DNS_CAPTURE=true; weir-proxy on by default; linkerd-proxy off', () => {
  assert.equal(buildPlan(pod([istio()])).dns.enabled, false, 'stock Envoy: nothing on 15053');
  assert.equal(buildPlan(pod([istio({ ISTIO_META_DNS_CAPTURE: 'false' })])).dns.enabled, false);
  assert.equal(buildPlan(pod([istio({ ISTIO_META_DNS_CAPTURE: 'true' })])).dns.enabled, true);
  assert.equal(buildPlan(pod([{ name: 'weir-proxy' }])).dns.enabled, true);
  assert.equal(buildPlan(pod([{ name: 'linkerd-proxy' }])).dns.enabled, false);
  // The explicit per-pod annotation still wins; the node-wide switch turns it off everywhere.
  assert.equal(buildPlan(pod([istio()], { 'weir.io/dns-capture': 'true' })).dns.enabled, true);
  assert.equal(buildPlan(pod([istio({ ISTIO_META_DNS_CAPTURE: 'true' })]), { captureDns: false }).dns.enabled, false);
  // The rendered rules follow: no jump to 15053 for a stock istio-proxy.
  assert.doesNotMatch(renderNftables(buildPlan(pod([istio()]))), /15053/);
  assert.doesNotMatch(renderIptables(buildPlan(pod([istio()]))).v4, /15053/);
});

test('linkerd-proxy: inbound 4143, outbound 4140, uid 2102, 4190/4191 never captured inbound, config.linkerd.io/* honoured', () => {
  const plan = buildPlan(pod([{ name: 'app' }, { name: 'linkerd-proxy' }], {
    'config.linkerd.io/skip-inbound-ports': '25', 'config.linkerd.io/skip-outbound-ports': '443', 'config.linkerd.io/skip-subnets': '10.0.0.0/8',
  }));
  assert.equal(plan.style, 'linkerd');
  assert.deepEqual([plan.inboundPort, plan.outboundPort, plan.proxyUid, plan.proxyGid], [4143, 4140, 2102, 2102]);
  assert.deepEqual(plan.inbound.excludePorts, [p(25), p(4190, 4191)]);
  assert.deepEqual(plan.outbound.excludePorts, [p(443)]);
  assert.deepEqual(plan.outbound.excludeCidrs, [{ family: 4, address: '10.0.0.0', prefix: 8 }]);
  assert.equal(buildPlan(pod([{ name: 'linkerd-proxy' }], { 'config.linkerd.io/proxy-uid': '2200' })).proxyUid, 2200);
  const nft = renderNftables(plan);
  assert.match(nft, /meta l4proto tcp redirect to :4143/);
  assert.match(nft, /meta skuid 2102 return\n\t\tmeta skgid 2102 return\n\t\toifname "lo" return/);
  // No Istio-only pieces: 127.0.0.6 passthrough, 15020, proxy-to-own-IP hand-off.
  assert.doesNotMatch(nft, /127\.0\.0\.6|15020|15006/);
  assert.doesNotMatch(renderIptables(plan).v4, /127\.0\.0\.6|15020|15006/);
});

test('TPROXY: mark 1337 and table 133 in the plan; inbound leaves nat; the marked hand-off is exempt from outbound capture', () => {
  const plan = buildPlan(pod([{ name: 'weir-proxy' }], { 'sidecar.istio.io/interceptionMode': 'TPROXY' }));
  assert.deepEqual(plan.tproxy, { mark: 1337, routeTable: 133 });
  assert.equal(buildPlan(pod([{ name: 'weir-proxy' }])).tproxy, undefined, 'REDIRECT plans are unchanged (and so are their hashes)');
  const nft = renderNftables(plan);
  assert.doesNotMatch(nft, /meta l4proto tcp redirect to :15006/, 'no inbound NAT');
  assert.match(nft, /chain outbound {\n\t\tmeta mark 1337 return/);
  assert.match(nft, /type route hook output priority mangle; policy accept;\n\t\tct mark 1337 meta mark set ct mark/);
  const v4 = renderIptables(plan).v4;
  assert.doesNotMatch(v4, /WEIR_INBOUND/);
  assert.match(v4, /-A WEIR_OUTBOUND -m mark --mark 1337 -j RETURN/);
  assert.match(v4, /-A WEIR_TPROXY_OUTPUT -m connmark --mark 1337 -j CONNMARK --restore-mark/);
});

test('findProxyContainer: one finder, with the mesh kind and where it is', () => {
  const found = findProxyContainer({ metadata: {}, spec: { containers: [{ name: 'app' }], initContainers: [{ name: 'linkerd-proxy', restartPolicy: 'Always' }] } });
  assert.deepEqual(found && { where: found.where, kind: found.kind }, { where: 'spec.initContainers[0]', kind: 'linkerd' });
  assert.equal(findProxyContainer({ metadata: {}, spec: { containers: [{ name: 'app' }] } }), undefined);
  assert.equal(findProxyContainer({ metadata: {}, spec: { containers: [{ name: 'my-proxy' }] } }, ['my-proxy'])?.kind, 'weir', 'custom names behave as weir');
});
