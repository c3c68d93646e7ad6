// NftablesBackend on a real netns: apply / read / verify / remove. The
// renderer here is a small local one in weir's shape (nat + raw tables, plan
// hash comment, "declare empty; delete; define" replace idiom) so this suite
// tests the backend, not the real renderer's golden output.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import net from 'node:net';
import { once } from 'node:events';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Netns, createPodPair, podPairAddresses, skipUnlessRoot, suiteNetns } from '../support/netns.js';
import { originalDst, socketFd, socketInNetns } from '../../src/native/addon.js';
import { NftablesBackend, type NftRenderer } from '../../src/netns/nft-backend.js';
import type { RedirectPlan } from '../../src/redirect/types.js';
import { sandboxAt } from '../../src/netns/backend-types.js';

const skip = skipUnlessRoot();
const suite = suiteNetns('wn');

const netns = (): Netns => suite.create();

const TABLES = ['wn_nat', 'wn_raw'] as const;

function plan(overrides: Partial<RedirectPlan> = {}): RedirectPlan {
  return {
    version: 1, mode: 'REDIRECT', proxyUid: 1337, proxyGid: 1337, inboundPort: 15006, outboundPort: 15001,
    dns: { enabled: true, port: 15053 },
    inbound: { capture: 'all', includePorts: [], excludePorts: [15008, 15020, 15021, 15090].map((p) => ({ from: p, to: p })) },
    outbound: { includeCidrs: 'all', excludeCidrs: [], includePorts: [], excludePorts: [] },
    excludeInterfaces: [],
    ...overrides,
  };
}

function definition(p: RedirectPlan): string {
  const hash = createHash('sha256').update(JSON.stringify(p)).digest('hex').slice(0, 16);
  const excluded = p.inbound.excludePorts.map((r) => (r.from === r.to ? `${r.from}` : `${r.from}-${r.to}`)).join(', ');
  const nat = [
    `table inet wn_nat {`,
    `  comment "weir plan=${hash}"`,
    `  chain prerouting { type nat hook prerouting priority dstnat; policy accept; meta l4proto tcp jump inbound; }`,
    `  chain inbound { tcp dport { ${excluded} } return; meta l4proto tcp redirect to :${p.inboundPort}; }`,
    `  chain output { type nat hook output priority -100; policy accept; jump outbound; }`,
    `  chain outbound {`,
    `    oifname "lo" ip saddr 127.0.0.6 return`,
    `    meta skuid ${p.proxyUid} return`,
    `    meta skgid ${p.proxyGid} return`,
    `    ip daddr 127.0.0.1 return`,
    ...(p.dns.enabled ? [`    meta l4proto { tcp, udp } th dport 53 redirect to :${p.dns.port}`] : []),
    `    meta l4proto tcp counter redirect to :${p.outboundPort}`,
    `  }`,
    `}`,
  ];
  const raw = p.dns.enabled
    ? [`table inet wn_raw {`, `  comment "weir plan=${hash}"`,
       `  chain output { type filter hook output priority raw; policy accept; meta skuid ${p.proxyUid} udp dport 53 ct zone set 1; }`, `}`]
    : [];
  return `${nat.join('\n')}\n${raw.join('\n')}\n`;
}

/** Full replace script only: every apply deletes and redefines weir's tables. */
const replaceOnly: NftRenderer = {
  tables: TABLES,
  render(p: RedirectPlan): string {
    // Declaring an empty table makes the delete valid whether or not it
    // exists; all of it is one transaction.
    return TABLES.map((t) => `table inet ${t} {}\ndelete table inet ${t}\n`).join('') + definition(p);
  },
};

/** The same plus renderDefinition: fresh netns take the create-only fast path. */
const withFastPath: NftRenderer = { ...replaceOnly, renderDefinition: definition };

const testRenderer = withFastPath;

for (const [label, renderer] of [['replace script', replaceOnly], ['fresh fast path', withFastPath]] as const) {
test(`apply then read (${label}): weir tables present with the plan hash; apply twice gives an identical listing`, { skip }, async () => {
  const ns = netns();
  const backend = new NftablesBackend(renderer);
  // Someone else's table must survive everything weir does.
  ns.exec('nft', ['add table inet other; add chain inet other c; add rule inet other c tcp dport 1 accept']);

  await backend.apply(sandboxAt(ns.path), plan());
  const first = await backend.read(sandboxAt(ns.path));
  assert.equal(first.present, true);
  assert.match(first.planHash ?? '', /^[0-9a-f]{16}$/);
  assert.match(first.listing, /^table inet wn_nat \{/);
  assert.match(first.listing, /table inet wn_raw \{/);
  assert.doesNotMatch(first.listing, /table inet other/);

  await backend.apply(sandboxAt(ns.path), plan());
  const second = await backend.read(sandboxAt(ns.path));
  assert.equal(second.listing, first.listing, 're-apply replaces, never duplicates');
  assert.equal((second.listing.match(/redirect to :15001/g) ?? []).length, 1);
  assert.deepEqual(await backend.verify(sandboxAt(ns.path), plan()), { ok: true, differences: [] });

  // A different plan replaces the first one (raw table gone with DNS off).
  const noDns = plan({ dns: { enabled: false, port: 15053 } });
  await backend.apply(sandboxAt(ns.path), noDns);
  const third = await backend.read(sandboxAt(ns.path));
  assert.notEqual(third.planHash, first.planHash);
  assert.doesNotMatch(third.listing, /wn_raw/);
  assert.deepEqual(await backend.verify(sandboxAt(ns.path), noDns), { ok: true, differences: [] });
  assert.match(ns.exec('nft', ['list', 'table', 'inet', 'other']), /tcp dport 1 accept/);

  // Back to the DNS plan, then remove and re-apply into the now weir-free
  // netns: same listing as the first apply.
  await backend.remove(sandboxAt(ns.path));
  await backend.apply(sandboxAt(ns.path), plan());
  assert.equal((await backend.read(sandboxAt(ns.path))).listing, first.listing);
});
}

test('both apply paths program the identical ruleset', { skip }, async () => {
  const a = netns();
  const b = netns();
  await new NftablesBackend(replaceOnly).apply(sandboxAt(a.path), plan());
  await new NftablesBackend(withFastPath).apply(sandboxAt(b.path), plan());
  assert.equal(b.exec('nft', ['list', 'ruleset']), a.exec('nft', ['list', 'ruleset']));
});

test('fast path: a weir table created between the check and the apply makes it fall back to the full replace', { skip }, async () => {
  const ns = netns();
  let raced = false;
  const racing: NftRenderer = {
    ...withFastPath,
    renderDefinition(p) {
      // Runs after the backend listed the netns empty: another writer wins
      // the race and creates weir's table with a stray rule.
      ns.exec('nft', ['add table inet wn_nat; add chain inet wn_nat stray; add rule inet wn_nat stray tcp dport 7 drop']);
      raced = true;
      return definition(p);
    },
  };
  await new NftablesBackend(racing).apply(sandboxAt(ns.path), plan());
  assert.ok(raced);
  assert.doesNotMatch(ns.exec('nft', ['list', 'ruleset']), /stray|dport 7/);
  assert.deepEqual(await new NftablesBackend(withFastPath).verify(sandboxAt(ns.path), plan()), { ok: true, differences: [] });
});

test('verify names a flushed chain, a deleted table, an extra rule and a stale plan precisely', { skip }, async () => {
  const ns = netns();
  const backend = new NftablesBackend(testRenderer);
  const p = plan();
  await backend.apply(sandboxAt(ns.path), p);
  const hash = (await backend.read(sandboxAt(ns.path))).planHash;

  ns.exec('nft', ['flush chain inet wn_nat outbound']);
  let v = await backend.verify(sandboxAt(ns.path), p);
  assert.equal(v.ok, false);
  assert.deepEqual(v.differences, [
    'empty: chain inet wn_nat outbound has no rules, expected 6',
    'missing: rule in chain inet wn_nat outbound: oifname "lo" ip saddr 127.0.0.6 return',
    'missing: rule in chain inet wn_nat outbound: meta skuid 1337 return',
    'missing: rule in chain inet wn_nat outbound: meta skgid 1337 return',
    'missing: rule in chain inet wn_nat outbound: ip daddr 127.0.0.1 return',
    'missing: rule in chain inet wn_nat outbound: meta l4proto { tcp, udp } th dport 53 redirect to :15053',
    'missing: rule in chain inet wn_nat outbound: meta l4proto tcp counter redirect to :15001',
  ]);

  await backend.apply(sandboxAt(ns.path), p);
  ns.exec('nft', ['delete table inet wn_raw']);
  ns.exec('nft', ['insert rule inet wn_nat outbound tcp dport 22 return']);
  ns.exec('nft', ['delete chain inet wn_nat prerouting']);
  v = await backend.verify(sandboxAt(ns.path), p);
  assert.deepEqual(v.differences, [
    'missing: chain inet wn_nat prerouting',
    'unexpected: rule in chain inet wn_nat outbound: tcp dport 22 return',
    'missing: table inet wn_raw',
  ]);

  // Programmed for another plan: the recorded hash differs and is named.
  await backend.apply(sandboxAt(ns.path), p);
  const other = plan({ outboundPort: 15999 });
  v = await backend.verify(sandboxAt(ns.path), other);
  assert.equal(v.ok, false);
  assert.ok(v.differences.includes(`unexpected: table inet wn_nat attribute: comment "weir plan=${hash}"`), v.differences.join('\n'));
  assert.ok(v.differences.includes('missing: rule in chain inet wn_nat outbound: meta l4proto tcp counter redirect to :15999'), v.differences.join('\n'));
});

test('verify reports rules in the wrong order and ignores counter values', { skip }, async () => {
  const ns = netns();
  const backend = new NftablesBackend(testRenderer);
  const p = plan();
  await backend.apply(sandboxAt(ns.path), p);
  // Traffic through the counter rule must not make verify fail.
  // 127.0.0.2 is not exempt, so the SYN is counted and redirected to :15001
  // (nothing listens there: connection refused, as expected).
  assert.throws(() => ns.exec('bash', ['-c', 'exec 3<>/dev/tcp/127.0.0.2/80']));
  assert.match(ns.exec('nft', ['list', 'chain', 'inet', 'wn_nat', 'outbound']), /counter packets [1-9]\d* bytes [1-9]\d* redirect to :15001/);
  assert.deepEqual((await backend.verify(sandboxAt(ns.path), p)).differences, []);

  // Re-create the outbound chain with two rules swapped.
  const listing = ns.exec('nft', ['list', 'chain', 'inet', 'wn_nat', 'outbound']);
  assert.match(listing, /meta skuid 1337 return/);
  ns.exec('nft', ['flush chain inet wn_nat outbound']);
  for (const rule of ['oifname "lo" ip saddr 127.0.0.6 return', 'meta skgid 1337 return', 'meta skuid 1337 return',
    'ip daddr 127.0.0.1 return', 'meta l4proto { tcp, udp } th dport 53 redirect to :15053', 'meta l4proto tcp counter redirect to :15001']) {
    ns.exec('nft', [`add rule inet wn_nat outbound ${rule}`]);
  }
  assert.deepEqual((await backend.verify(sandboxAt(ns.path), p)).differences, [
    'order: chain inet wn_nat outbound rule 2 is `meta skgid 1337 return`, expected `meta skuid 1337 return`',
  ]);
});

test('remove deletes exactly weir tables, is idempotent, and a missing netns is fine', { skip }, async () => {
  const ns = netns();
  const backend = new NftablesBackend(testRenderer);
  ns.exec('nft', ['add table inet other; add table ip nat']);
  await backend.apply(sandboxAt(ns.path), plan());
  await backend.remove(sandboxAt(ns.path));
  const after1 = await backend.read(sandboxAt(ns.path));
  assert.deepEqual(after1, { backend: 'nftables', present: false, listing: '' });
  assert.equal(ns.exec('nft', ['list', 'tables']), 'table inet other\ntable ip nat\n');
  await backend.remove(sandboxAt(ns.path));
  assert.equal(ns.exec('nft', ['list', 'tables']), 'table inet other\ntable ip nat\n');

  await backend.remove(sandboxAt('/run/netns/wn-never-existed'));
  await assert.rejects(() => backend.read(sandboxAt('/run/netns/wn-never-existed')),
    /^NftBackendError: nftables read in \/run\/netns\/wn-never-existed failed: cannot open netns \/run\/netns\/wn-never-existed: No such file or directory$/);
  await assert.rejects(() => backend.remove(sandboxAt('/proc/self/ns/mnt')), /is a namespace but not a network namespace/);
});

test('an apply the kernel rejects leaves the previous rules in place and says why', { skip }, async () => {
  const ns = netns();
  const good = new NftablesBackend(testRenderer);
  await good.apply(sandboxAt(ns.path), plan());
  const before = ns.exec('nft', ['list', 'ruleset']);
  const broken = new NftablesBackend({
    tables: TABLES,
    render: (p) => `${testRenderer.render(p)}add rule inet wn_nat outbound jump no_such_chain\n`,
  });
  await assert.rejects(() => broken.apply(sandboxAt(ns.path), plan({ outboundPort: 15002 })),
    (e: Error & { code?: string }) => e.code === 'ENFT' && e.message.startsWith(`nftables apply in ${ns.path} failed: Error: Could not process rule: No such file or directory`));
  assert.equal(ns.exec('nft', ['list', 'ruleset']), before);
});

test('applied rules capture real traffic: the app lands on 15001 with its original destination, uid 1337 goes out directly', { skip }, async (t) => {
  const pair = createPodPair('wn');
  t.after(() => pair.destroy());
  const { peer4 } = podPairAddresses(pair);
  await new NftablesBackend(testRenderer).apply(sandboxAt(pair.pod.path), plan());

  // The "proxy" listener, created inside the pod netns.
  const proxy = net.createServer();
  proxy.listen({ fd: await socketInNetns(pair.pod.path, { kind: 'tcp-listen', family: 6, address: '::', port: 15001 }) });
  await once(proxy, 'listening');
  t.after(() => proxy.close());
  const accepted = new Promise<ReturnType<typeof originalDst>>((resolve) => proxy.once('connection', (s) => { resolve(originalDst(socketFd(s))); s.destroy(); }));
  const app = new net.Socket({ fd: await socketInNetns(pair.pod.path, { kind: 'tcp-connect', family: 4, address: peer4, port: 8080 }) });
  t.after(() => app.destroy());
  assert.deepEqual(await accepted, { family: 4, address: peer4, port: 8080 });

  // A process running as the proxy's uid reaches the peer itself.
  const port = 20000 + Math.floor(Math.random() * 20000);
  pair.peer.spawn('socat', [`TCP4-LISTEN:${port},bind=${peer4},reuseaddr`, 'SYSTEM:echo from-peer']);
  for (let i = 0; i < 100 && !pair.peer.exec('ss', ['-Htln']).includes(`:${port}`); i++) await new Promise((r) => setTimeout(r, 20));
  // Captured, this would land on the listener above and read nothing.
  const { stdout: out } = await promisify(execFile)('ip', ['netns', 'exec', pair.pod.name, 'setpriv', '--reuid=1337', '--regid=1337',
    '--clear-groups', 'socat', '-T', '2', '-u', `TCP:${peer4}:${port}`, '-']);
  assert.equal(out, 'from-peer\n');
});

test('fast path never leaves a stale weir table the plan does not define', { skip }, async () => {
  const ns = netns();
  const backend = new NftablesBackend(withFastPath);
  await backend.apply(sandboxAt(ns.path), plan());
  ns.exec('nft', ['delete table inet wn_nat']); // only the (DNS) raw table is left
  const noDns = plan({ dns: { enabled: false, port: 15053 } });
  await backend.apply(sandboxAt(ns.path), noDns);
  assert.equal(ns.exec('nft', ['list', 'tables']), 'table inet wn_nat\n');
  assert.deepEqual(await backend.verify(sandboxAt(ns.path), noDns), { ok: true, differences: [] });
});
