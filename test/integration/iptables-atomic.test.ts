// The iptables backend commits IPv4 and IPv6 as two restores; it must still
// be both families or neither. A real ip6tables-restore failure (a failing
// ip6tables-nft-restore first on PATH) after IPv4 committed: IPv4 goes back
// to exactly what it was — nothing for a new pod, the previous plan for a
// pod being re-programmed. On the old code IPv4 capture stayed behind.
import { sandboxAt } from '../../src/netns/backend-types.js';
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Netns, skipUnlessRoot } from '../support/netns.js';
import { IptablesBackend } from '../../src/netns/iptables-backend.js';
import { buildPlan } from '../../src/redirect/plan.js';
import type { Pod } from '../../src/kube/pod-types.js';

const dir = mkdtempSync(path.join(tmpdir(), 'wk-ipt-atomic-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const pod = (annotations: Record<string, string> = {}): Pod => ({ metadata: { name: 'a', namespace: 'default', uid: 'u-a', annotations }, spec: { containers: [{ name: 'app' }, { name: 'weir-proxy' }] } });

/** Runs fn with an ip6tables-nft-restore that fails the way a kernel refusal does. */
async function withFailingIp6Restore<T>(fn: () => Promise<T>): Promise<T> {
  const bin = path.join(dir, 'bin');
  rmSync(bin, { recursive: true, force: true });
  (await import('node:fs')).mkdirSync(bin);
  writeFileSync(path.join(bin, 'ip6tables-nft-restore'), '#!/bin/sh\ncat >/dev/null\necho "ip6tables-restore: line 3 failed" >&2\nexit 1\n');
  chmodSync(path.join(bin, 'ip6tables-nft-restore'), 0o755);
  const saved = process.env.PATH;
  process.env.PATH = `${bin}:${saved}`;
  try { return await fn(); } finally { process.env.PATH = saved; }
}

test('IPv6 restore fails after IPv4 committed: a new pod is left with nothing', { skip: skipUnlessRoot() }, async () => {
  const ns = Netns.create('wkia');
  try {
    const backend = new IptablesBackend({ lockDir: path.join(dir, 'locks') });
    await withFailingIp6Restore(() => assert.rejects(backend.apply(sandboxAt(ns.path), buildPlan(pod())), /ip6tables-nft-restore exited 1/));
    const state = await backend.read(sandboxAt(ns.path));
    assert.equal(state.present, false, `IPv4 was not rolled back:\n${state.listing}`);
    // And with a working ip6tables the same apply is complete in both families.
    await backend.apply(sandboxAt(ns.path), buildPlan(pod()));
    const v = await backend.verify(sandboxAt(ns.path), buildPlan(pod()));
    assert.ok(v.ok, v.differences.join('\n'));
    assert.match((await backend.read(sandboxAt(ns.path))).listing, /^ipv6 nat/m);
  } finally { ns.destroy(); }
});

test('IPv6 restore fails while re-programming: IPv4 is back to the previous plan exactly', { skip: skipUnlessRoot() }, async () => {
  const ns = Netns.create('wkib');
  try {
    const backend = new IptablesBackend({ lockDir: path.join(dir, 'locks') });
    const first = buildPlan(pod());
    await backend.apply(sandboxAt(ns.path), first);
    const before = await backend.read(sandboxAt(ns.path));
    const changed = buildPlan(pod({ 'traffic.sidecar.istio.io/excludeOutboundPorts': '5432,6379', 'traffic.sidecar.istio.io/excludeOutboundIPRanges': '10.9.0.0/16' }));
    await withFailingIp6Restore(() => assert.rejects(backend.apply(sandboxAt(ns.path), changed)));
    const afterFail = await backend.read(sandboxAt(ns.path));
    assert.equal(afterFail.listing, before.listing, 'both families as before the failed apply');
    assert.ok((await backend.verify(sandboxAt(ns.path), first)).ok);
  } finally { ns.destroy(); }
});
