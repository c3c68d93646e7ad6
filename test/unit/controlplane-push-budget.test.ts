// The agent-wide budget for whole-kind pushes (v2/pusher.ts): above the
// limit a push waits until others' bytes reach the kernel; bytes a proxy
// never reads stop counting after the expiry, so nobody waits forever.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PushBudget } from '../../src/controlplane/v2/pusher.js';

test('whole pushes wait while the budget is spent, resume in order as bytes drain', () => {
  const b = new PushBudget(100, 10_000);
  const ran: string[] = [];
  const r1 = b.take(60);
  const r2 = b.take(60);
  assert.ok(b.full());
  b.wait(() => { ran.push('a'); });
  b.wait(() => { ran.push('b'); });
  r1();
  assert.deepEqual(ran, ['a', 'b']);
  r1();
  r2();
  assert.equal(b.full(), false, 'each release counts once');
});

test('bytes a proxy never reads expire, and the waiters run', async () => {
  const b = new PushBudget(100, 30);
  b.take(500); // a proxy that never reads
  assert.ok(b.full());
  await new Promise<void>((resolve) => b.wait(resolve));
  assert.equal(b.full(), false);
});

test('a forgotten waiter (its socket closed) never runs', async () => {
  const b = new PushBudget(100, 20);
  const release = b.take(500);
  let ran = false;
  const w = () => { ran = true; };
  b.wait(w);
  b.forget(w);
  release();
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(ran, false);
});
