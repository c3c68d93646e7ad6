// The addon's promise: netns work happens on throw-away threads, so after any
// number of concurrent calls every thread of this process is still in the
// netns it started in; bad paths give errors that name the path.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, statSync, mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Netns, skipUnlessRoot, suiteNetns } from '../support/netns.js';
import { nftRun, netnsInode, socketInNetns, type NativeError } from '../../src/native/addon.js';

const skip = skipUnlessRoot();
const suite = suiteNetns('wn');
const spaces = suite.all;

function threadNetnsInodes(): Map<string, number> {
  const out = new Map<string, number>();
  for (const tid of readdirSync('/proc/self/task')) {
    try { out.set(tid, statSync(`/proc/self/task/${tid}/ns/net`).ino); } catch { /* thread exited meanwhile */ }
  }
  return out;
}

test('many concurrent nftRun calls into several netns leave every thread in the original netns', { skip }, async () => {
  const initial = netnsInode('/proc/self/ns/net');
  for (let i = 0; i < 4; i++) suite.create();
  const tableOf = (ns: Netns) => `wn_${ns.name.replace(/-/g, '_')}`;

  const calls: Promise<string>[] = [];
  for (let round = 0; round < 25; round++) {
    for (const ns of spaces) {
      calls.push(nftRun(ns.path, `add table inet ${tableOf(ns)}\nadd chain inet ${tableOf(ns)} c${round}\n`));
      calls.push(nftRun(ns.path, 'list tables'));
    }
  }
  await Promise.all(calls);

  const threads = threadNetnsInodes();
  assert.ok(threads.size > 1, 'expected libuv worker threads to exist');
  for (const [tid, ino] of threads) assert.equal(ino, initial, `thread ${tid} is in netns inode ${ino}, not the original ${initial}`);

  // The work really happened in each target netns, and only there.
  for (const ns of spaces) {
    const listing = ns.exec('nft', ['list', 'table', 'inet', tableOf(ns)]);
    assert.equal((listing.match(/chain c\d+ \{/g) ?? []).length, 25, `all 25 chains landed in ${ns.name}`);
    for (const other of spaces) if (other !== ns) assert.doesNotMatch(ns.exec('nft', ['list', 'tables']), new RegExp(tableOf(other)));
  }
  assert.doesNotMatch(await nftRun(null, 'list tables'), /wn_wn_/);
});

test('a netns path that is missing, a regular file or another namespace type is a clear error', { skip }, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'wn-'));
  try {
    const file = path.join(dir, 'not-a-netns');
    writeFileSync(file, '');
    const cases: Array<[string, string, RegExp]> = [
      ['/run/netns/wn-does-not-exist', 'ENOENT', /^cannot open netns \/run\/netns\/wn-does-not-exist: No such file or directory$/],
      [file, 'ENOTNETNS', new RegExp(`^${file} is not a namespace file`)],
      ['/proc/self/ns/mnt', 'ENOTNETNS', /^\/proc\/self\/ns\/mnt is a namespace but not a network namespace$/],
    ];
    for (const [p, code, message] of cases) {
      const err = await nftRun(p, 'list tables').then(() => undefined, (e: NativeError) => e);
      assert.ok(err, `${p} must be rejected`);
      assert.equal(err.code, code, p);
      assert.match(err.message, message);
    }
    await assert.rejects(() => nftRun('', 'list tables'), /netns must not be an empty string/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const initial = netnsInode('/proc/self/ns/net');
  for (const [tid, ino] of threadNetnsInodes()) assert.equal(ino, initial, `thread ${tid} moved`);
});

test('a /proc/PID/ns/net path works like a /run/netns path', { skip }, async () => {
  const ns = suite.create();
  const sleeper = ns.spawn('sleep', ['30']);
  // `ip netns exec` execs sleep in place, so the child pid is inside the netns.
  await new Promise((r) => setTimeout(r, 200));
  const procPath = `/proc/${sleeper.pid}/ns/net`;
  assert.equal(netnsInode(procPath), netnsInode(ns.path));
  await nftRun(procPath, 'add table inet wn_proc');
  assert.match(ns.exec('nft', ['list', 'tables']), /table inet wn_proc/);
});

test('no file descriptor leaks: nft contexts, netns fds and failed sockets are all closed', { skip }, async () => {
  const ns = suite.create();
  ns.ip('link', 'add', 'wnl0', 'type', 'veth', 'peer', 'name', 'wnl1');
  ns.ip('addr', 'add', '10.78.0.1/24', 'dev', 'wnl0');
  ns.ip('link', 'set', 'wnl0', 'up');
  ns.ip('link', 'set', 'wnl1', 'up');
  const fdCount = () => readdirSync('/proc/self/fd').length;
  // Warm up lazily opened things (addon, libnftables symbol tables).
  await nftRun(ns.path, 'list ruleset');
  const before = fdCount();
  for (let i = 0; i < 100; i++) await nftRun(ns.path, i % 2 ? 'add table inet wn_leak' : 'list ruleset');
  for (let i = 0; i < 20; i++) await nftRun(ns.path, 'add chain inet wn_leak bad {').catch(() => undefined);
  for (let i = 0; i < 20; i++) await nftRun('/run/netns/wn-missing', 'list ruleset').catch(() => undefined);
  for (let i = 0; i < 20; i++) {
    await socketInNetns(ns.path, { kind: 'tcp-connect', family: 4, address: '10.78.0.1', port: 1 }).catch(() => undefined);
  }
  assert.equal(fdCount(), before);
});
