// When the proxy gives memory back: once after load, when it goes quiet; never while idle or busy.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ReliefTrigger } from '../../src/common/memory-relief.js';

test('an idle process is never relieved (no load seen)', () => {
  const t = new ReliefTrigger(0.05, 0.01);
  for (let i = 0; i < 100; i++) assert.equal(t.sample(0.001), 'wait');
});

test('load, then quiet: exactly one relief; more quiet intervals do nothing', () => {
  const t = new ReliefTrigger(0.05, 0.01);
  assert.equal(t.sample(0.8), 'wait');
  assert.equal(t.sample(0.6), 'wait', 'still busy: no relief under load');
  assert.equal(t.sample(0.002), 'relieve');
  assert.equal(t.sample(0.002), 'wait');
  assert.equal(t.sample(0), 'wait');
});

test('winding down (between quiet and busy) waits until really quiet; each burst gets its own relief', () => {
  const t = new ReliefTrigger(0.05, 0.01);
  t.sample(0.5);
  assert.equal(t.sample(0.03), 'wait', 'light traffic is neither load nor quiet');
  assert.equal(t.sample(0.005), 'relieve');
  t.sample(0.2);
  assert.equal(t.sample(0.0), 'relieve');
});
