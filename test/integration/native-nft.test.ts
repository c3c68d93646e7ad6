// libnftables in-process through the addon, on the real kernel: errors are
// libnftables' own text, and a script is one transaction.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { Netns, skipUnlessRoot, suiteNetns } from '../support/netns.js';
import { nftRun, type NativeError } from '../../src/native/addon.js';

const skip = skipUnlessRoot();
const suite = suiteNetns('wn');

const netns = (): Netns => suite.create();

/** stderr of the nft CLI for the same script in the same netns. */
function nftCliError(ns: Netns, script: string): string {
  try {
    execFileSync('ip', ['netns', 'exec', ns.name, 'nft', script], { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
  } catch (e) {
    return (e as { stderr: string }).stderr;
  }
  throw new Error('nft CLI accepted a script expected to fail');
}

test('a syntax error is returned verbatim, exactly as the nft CLI prints it', { skip }, async () => {
  const ns = netns();
  const script = 'add table inet wn_syntax; add chain inet wn_syntax c { bogus }';
  const err = await nftRun(ns.path, script).then(() => undefined, (e: NativeError) => e);
  assert.ok(err, 'nftRun must reject a syntax error');
  assert.equal(err.code, 'ENFT');
  assert.equal(err.message, nftCliError(ns, script));
  assert.match(err.message, /^Error: syntax error, unexpected '}'/);
  assert.equal(ns.exec('nft', ['list', 'tables']), '', 'nothing is created by a script that does not parse');
});

test('a script whose last command fails in the kernel leaves no change at all', { skip }, async () => {
  const ns = netns();
  await nftRun(ns.path, 'add table inet wn_keep\nadd chain inet wn_keep c\nadd rule inet wn_keep c tcp dport 4242 accept\n');
  const before = ns.exec('nft', ['list', 'ruleset']);
  assert.match(before, /tcp dport 4242 accept/);

  // Flush the existing table, create another, then delete a table that does
  // not exist: only the kernel can reject the last step, after it has seen
  // the first two in the same batch.
  const script = 'flush table inet wn_keep\nadd table inet wn_new\nadd chain inet wn_new c\ndelete table inet wn_missing\n';
  const err = await nftRun(ns.path, script).then(() => undefined, (e: NativeError) => e);
  assert.ok(err, 'the batch must be rejected');
  assert.match(err.message, /No such file or directory/);
  assert.match(err.message, /^Error: Could not process rule: No such file or directory/);
  assert.equal(ns.exec('nft', ['list', 'ruleset']), before, 'the flush and the new table were rolled back');
});

test('check mode validates without committing; json output is JSON', { skip }, async () => {
  const ns = netns();
  await nftRun(ns.path, 'add table inet wn_dry', { check: true });
  assert.equal(ns.exec('nft', ['list', 'tables']), '');
  await nftRun(ns.path, 'add table inet wn_json { comment "weir plan=abc"; }');
  const json = JSON.parse(await nftRun(ns.path, 'list table inet wn_json', { json: true })) as { nftables: Array<Record<string, { family?: string; name?: string }>> };
  const tables = json.nftables.filter((o) => o.table).map((o) => o.table);
  assert.deepEqual(tables.map((t) => [t.family, t.name]), [['inet', 'wn_json']]);
  // nft 1.0.6 leaves table comments out of JSON; the text listing has them
  // (which is why the backend reads the plan hash from text).
  assert.match(await nftRun(ns.path, 'list table inet wn_json'), /comment "weir plan=abc"/);
});

test('null netns runs in the agent netns; a list there does not see a pod netns table', { skip }, async () => {
  const ns = netns();
  await nftRun(ns.path, `add table inet wn_only_${ns.name.replace(/-/g, '_')}`);
  const own = await nftRun(null, 'list tables');
  assert.doesNotMatch(own, new RegExp(`wn_only_${ns.name.replace(/-/g, '_')}`));
});
