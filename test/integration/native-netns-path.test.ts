// resolveNetnsPath: paths, PIDs and `ip netns` names, and what it refuses.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Netns, skipUnlessRoot, suiteNetns } from '../support/netns.js';
import { netnsExists, resolveNetnsPath } from '../../src/netns/netns-path.js';
import { netnsInode, nftRun } from '../../src/native/addon.js';

const suite = suiteNetns('wn');

test('paths, PIDs and names resolve; junk is a FieldError naming the field', () => {
  assert.equal(resolveNetnsPath('/var/run/netns/cni-1234'), '/var/run/netns/cni-1234');
  assert.equal(resolveNetnsPath('/run//netns/./x'), '/run/netns/x');
  assert.equal(resolveNetnsPath('4242'), '/proc/4242/ns/net');
  assert.equal(resolveNetnsPath(' wn-pod '), '/run/netns/wn-pod');
  assert.throws(() => resolveNetnsPath('', '--netns'), /^FieldError: --netns: empty; expected a netns path, a PID or an `ip netns` name$/);
  assert.throws(() => resolveNetnsPath('../etc', '--netns'), /^FieldError: --netns: expected an absolute netns path, a PID or an `ip netns` name \(bad value: "\.\.\/etc"\)$/);
  assert.throws(() => resolveNetnsPath('0'), /netns: not a valid PID \(bad value: "0"\)/);
});

test('a name and the PID of a process inside resolve to the same netns', { skip: skipUnlessRoot() }, async () => {
  const ns = suite.create();
  const child = ns.spawn('sleep', ['30']);
  await new Promise((r) => setTimeout(r, 200));
  const byName = resolveNetnsPath(ns.name);
  const byPid = resolveNetnsPath(String(child.pid));
  assert.equal(netnsInode(byName), netnsInode(byPid));
  await nftRun(byPid, 'add table inet wn_pid');
  assert.match(await nftRun(byName, 'list tables'), /table inet wn_pid/);
  assert.equal(netnsExists(byName), true);
  assert.equal(netnsExists(resolveNetnsPath('wn-not-there')), false);
});
