// Golden eBPF map entries: every good pod fixture rendered into weir_pods's
// value (bpf/weir_maps.h), decoded back from those bytes and compared with
// test/golden/<name>.ebpf. The golden pins both the meaning (the decoded
// listing) and the byte layout (the value's sha256). UPDATE_GOLDEN=1
// rewrites them (review the diff). TPROXY fixtures must be refused by name.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FieldError } from '../../src/common/errors.js';
import { buildPlan } from '../../src/redirect/plan.js';
import { readPodFile } from '../../src/redirect/pod-file.js';
import {
  decodeEbpfEntry, EBPF_MAX_CIDRS, EBPF_POD_PLAN_SIZE, encodeEbpfEntry, formatEbpfEntry, inboundOnlyPlan, renderEbpfEntry, type NetnsAddress,
} from '../../src/redirect/render-ebpf.js';
import { renderIptablesRules } from '../../src/redirect/render-iptables.js';
import { renderNftables } from '../../src/redirect/render-nftables.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const fixtures = path.join(root, 'fixtures', 'pods');
const golden = path.join(root, 'golden');
const update = process.env.UPDATE_GOLDEN === '1';

/** A pod netns as getifaddrs reports it: lo, eth0 dual-stack, a Multus-style net1. */
const NETNS: NetnsAddress[] = [
  { ifname: 'lo', family: 4, address: '127.0.0.1', prefix: 8 },
  { ifname: 'lo', family: 6, address: '::1', prefix: 128 },
  { ifname: 'eth0', family: 4, address: '10.244.1.7', prefix: 24 },
  { ifname: 'eth0', family: 6, address: 'fd00:10:244:1::7', prefix: 64 },
  { ifname: 'eth0', family: 6, address: 'fe80::cc0e:4fff:fe12:3456', prefix: 64 },
  { ifname: 'net1', family: 4, address: '192.168.77.2', prefix: 24 },
];

const pods = readdirSync(fixtures).filter((f) => f.endsWith('.yaml') && !f.startsWith('bad-')).sort();

for (const file of pods) {
  const name = file.replace(/\.yaml$/, '');
  const plan = buildPlan(readPodFile(path.join(fixtures, file)));
  if (plan.mode === 'TPROXY') {
    test(`ebpf: ${name} (TPROXY) is refused, naming the annotation`, () => {
      assert.throws(() => renderEbpfEntry(plan, NETNS), (e: unknown) => e instanceof FieldError && e.field === 'sidecar.istio.io/interceptionMode');
    });
    continue;
  }
  test(`ebpf golden: ${name}`, () => {
    const bytes = encodeEbpfEntry(renderEbpfEntry(plan, NETNS));
    assert.equal(bytes.length, EBPF_POD_PLAN_SIZE);
    const decoded = decodeEbpfEntry(bytes);
    assert.deepEqual(decoded, renderEbpfEntry(plan, NETNS), 'encode/decode round trip');
    const text = `# weir_pods value: ${bytes.length} bytes, sha256 ${createHash('sha256').update(bytes).digest('hex')}\n${formatEbpfEntry(decoded)}` +
      `# nftables (inbound only)\n${renderNftables(inboundOnlyPlan(plan))}`;
    const target = path.join(golden, `${name}.ebpf`);
    if (update) writeFileSync(target, text);
    assert.ok(existsSync(target), `${target} missing: run with UPDATE_GOLDEN=1`);
    assert.equal(text, readFileSync(target, 'utf8'), `${name}.ebpf differs from the golden file`);
  });
}

test('ebpf: the inbound-only nft ruleset keeps no outbound or DNS redirect, and untracks loopback', () => {
  const nft = renderNftables(inboundOnlyPlan(buildPlan({ metadata: { name: 'p' }, spec: { containers: [{ name: 'app' }, { name: 'weir-proxy' }] } })));
  assert.doesNotMatch(nft, /:15001|:15053|ct zone/);
  assert.match(nft, /redirect to :15006/);
  // Only between localhost/passthrough addresses, both ways, on lo.
  const notrack = nft.split('\n').filter((l) => l.includes('notrack'));
  assert.deepEqual(notrack.map((l) => l.trim()), [
    'oifname "lo" ip saddr { 127.0.0.1, 127.0.0.6 } ip daddr { 127.0.0.1, 127.0.0.6 } notrack',
    'oifname "lo" ip6 saddr { ::1, ::6 } ip6 daddr { ::1, ::6 } notrack',
  ]);
});

test('untrackLoopback is refused where lo traffic needs NAT or conntrack marks, and by iptables, naming the field', () => {
  const plan = buildPlan({ metadata: { name: 'p' }, spec: { containers: [{ name: 'app' }, { name: 'weir-proxy' }] } });
  const isField = (e: unknown) => e instanceof FieldError && e.field === 'plan.untrackLoopback';
  assert.throws(() => renderNftables({ ...plan, untrackLoopback: true }), isField, 'DNS capture on');
  const tproxy = buildPlan({ metadata: { name: 'p', annotations: { 'sidecar.istio.io/interceptionMode': 'TPROXY' } }, spec: { containers: [{ name: 'app' }] } });
  assert.throws(() => renderNftables({ ...tproxy, dns: { ...tproxy.dns, enabled: false }, untrackLoopback: true }), isField, 'TPROXY');
  assert.throws(() => renderIptablesRules(inboundOnlyPlan(plan), 4), isField, 'iptables');
});

test('ebpf: more CIDRs than the map entry holds is an error naming the annotation', () => {
  const many = Array.from({ length: EBPF_MAX_CIDRS + 1 }, (_, i) => `10.${i}.0.0/16`).join(',');
  const plan = buildPlan({ metadata: { name: 'p', annotations: { 'traffic.sidecar.istio.io/excludeOutboundIPRanges': many } }, spec: { containers: [{ name: 'app' }] } });
  assert.throws(() => renderEbpfEntry(plan, NETNS), /traffic\.sidecar\.istio\.io\/excludeOutboundIPRanges: the ebpf backend holds at most 32/);
});

test('ebpf: weir.io/backend is parsed into the plan, a bad value names the annotation', () => {
  const pod = (v: string) => ({ metadata: { name: 'p', annotations: { 'weir.io/backend': v } }, spec: { containers: [{ name: 'app' }] } });
  assert.equal(buildPlan(pod('ebpf')).backend, 'ebpf');
  assert.equal(buildPlan(pod(' NFTables ')).backend, 'nftables');
  assert.throws(() => buildPlan(pod('bpf')), /weir\.io\/backend: must be one of nftables, iptables, ebpf \(bad value: "bpf"\)/);
  assert.equal(buildPlan({ metadata: { name: 'p' }, spec: { containers: [{ name: 'app' }] } }).backend, undefined);
});

test('ebpf: a value of another layout is refused on read', () => {
  const bytes = encodeEbpfEntry(renderEbpfEntry(buildPlan({ metadata: { name: 'p' }, spec: { containers: [{ name: 'app' }] } }), NETNS));
  bytes.writeUInt32LE(99, 0);
  assert.throws(() => decodeEbpfEntry(bytes), /layout 99/);
  assert.throws(() => decodeEbpfEntry(bytes.subarray(0, 100)), /100 bytes/);
});
