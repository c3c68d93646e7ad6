// NftablesBackend with weir's own renderer (src/redirect/render-nftables.ts)
// on the real kernel, for representative plans: both apply paths, verify
// against the scratch-netns canonical form, re-apply, plan change, removal.
// (The rendered text itself is covered by the renderer's golden files.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Netns, skipUnlessRoot, suiteNetns } from '../support/netns.js';
import { NftablesBackend, WEIR_NFT_RENDERER } from '../../src/netns/nft-backend.js';
import { buildPlan } from '../../src/redirect/plan.js';
import { planHash } from '../../src/redirect/plan.js';
import type { Pod } from '../../src/kube/pod-types.js';
import { sandboxAt } from '../../src/netns/backend-types.js';

const skip = skipUnlessRoot();
const suite = suiteNetns('wn');

function pod(annotations: Record<string, string> = {}): Pod {
  return {
    metadata: { name: 'app', namespace: 'default', uid: 'u-1', annotations },
    spec: { containers: [{ name: 'app' }, { name: 'istio-proxy', env: [{ name: 'ISTIO_META_DNS_CAPTURE', value: 'true' }] }] },
  };
}

const PODS: Record<string, Pod> = {
  defaults: pod(),
  everyAnnotation: pod({
    'traffic.sidecar.istio.io/includeOutboundIPRanges': '10.0.0.0/8,fd00::/8',
    'traffic.sidecar.istio.io/excludeOutboundIPRanges': '10.96.0.1/32,fd00:1::/64',
    'traffic.sidecar.istio.io/includeInboundPorts': '8080,9000-9100',
    'traffic.sidecar.istio.io/excludeOutboundPorts': '5432',
    'traffic.sidecar.istio.io/excludeInterfaces': 'eth1',
  }),
  tproxy: pod({ 'sidecar.istio.io/interceptionMode': 'TPROXY', 'traffic.sidecar.istio.io/excludeInterfaces': 'eth1' }),
};

for (const [name, p] of Object.entries(PODS)) {
  test(`weir renderer, ${name}: apply (fast path and replace) verifies clean, re-apply is identical, remove leaves nothing`, { skip }, async () => {
    const ns = suite.create();
    const backend = new NftablesBackend();
    const plan = buildPlan(p);

    await backend.apply(sandboxAt(ns.path), plan);
    const first = await backend.read(sandboxAt(ns.path));
    assert.equal(first.planHash, planHash(plan));
    // weir_tproxy only exists for a TPROXY plan.
    for (const t of WEIR_NFT_RENDERER.tables.filter((x) => x !== 'weir_tproxy' || plan.tproxy)) assert.match(first.listing, new RegExp(`^table inet ${t} \\{`, 'm'));
    assert.equal(/^table inet weir_tproxy \{/m.test(first.listing), plan.tproxy !== undefined);
    assert.deepEqual(await backend.verify(sandboxAt(ns.path), plan), { ok: true, differences: [] });
    if (name === 'everyAnnotation') {
      for (const s of ['10.96.0.1 return', 'fd00:1::/64 return', 'oifname "eth1" return', 'dport 5432 return', '9000-9100']) assert.ok(first.listing.includes(s), s);
    }

    await backend.apply(sandboxAt(ns.path), plan); // weir tables exist now: full replace
    assert.equal((await backend.read(sandboxAt(ns.path))).listing, first.listing);
    assert.deepEqual(await backend.verify(sandboxAt(ns.path), plan), { ok: true, differences: [] });

    ns.exec('nft', ['flush chain inet weir_nat outbound']);
    const v = await backend.verify(sandboxAt(ns.path), plan);
    assert.equal(v.ok, false);
    assert.match(v.differences[0], /^empty: chain inet weir_nat outbound has no rules, expected \d+$/);
    assert.ok(v.differences.slice(1).every((d) => d.startsWith('missing: rule in chain inet weir_nat outbound: ')), v.differences.join('\n'));

    await backend.remove(sandboxAt(ns.path));
    assert.deepEqual(await backend.read(sandboxAt(ns.path)), { backend: 'nftables', present: false, listing: '' });
    assert.equal(ns.exec('nft', ['list', 'ruleset']), '');
  });
}

test('weir renderer: switching a netns from the defaults to DNS off drops weir_raw', { skip }, async () => {
  const ns = suite.create();
  const backend = new NftablesBackend();
  await backend.apply(sandboxAt(ns.path), buildPlan(pod()));
  assert.match(ns.exec('nft', ['list', 'tables']), /weir_raw/);
  const noDns = buildPlan(pod(), { captureDns: false });
  await backend.apply(sandboxAt(ns.path), noDns);
  assert.doesNotMatch(ns.exec('nft', ['list', 'tables']), /weir_raw/);
  assert.deepEqual(await backend.verify(sandboxAt(ns.path), noDns), { ok: true, differences: [] });
});
