// The agent-wide budget for whole-kind pushes (v2/pusher.ts): above the
// limit a push waits until others' bytes reach the kernel, and never longer
// than the deadline (a proxy that stopped reading must not stall the rest).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PushBudget } from '../../src/controlplane/v2/pusher.js';

test('whole pushes wait while the budget is spent, resume in order as bytes drain', () => {
  const b = new PushBudget(100, 10_000);
  const ran: string[] = [];
  b.take(150);
  assert.ok(b.full());
  b.wait((forced) => ran.push(`a${forced}`));
  b.wait((forced) => ran.push(`b${forced}`));
  b.give(20);
  assert.deepEqual(ran, [], 'still above the limit');
  b.give(40);
  assert.deepEqual(ran, ['afalse', 'bfalse']);
});

test('a wait that outlasts the deadline runs forced', async () => {
  const b = new PushBudget(100, 30);
  b.take(500); // a proxy that never reads
  const forced = await new Promise<boolean>((resolve) => b.wait(resolve));
  assert.equal(forced, true);
});

test('a forgotten waiter (its socket closed) never runs', async () => {
  const b = new PushBudget(100, 20);
  b.take(500);
  let ran = false;
  const w = () => { ran = true; };
  b.wait(w);
  b.forget(w);
  b.give(500);
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(ran, false);
});
