// The decision rule bench result files state (bench/lib/paired-rounds.ts):
// per-round comparison, wins, sign test, verdict.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { paired, signTestP, verdict } from '../../bench/lib/paired-rounds.js';

test('sign test: one-sided binomial tail at p = 1/2', () => {
  assert.equal(signTestP(7, 7), 1 / 128);
  assert.equal(signTestP(6, 7), 8 / 128);
  assert.equal(signTestP(9, 11), (55 + 11 + 1) / 2048);
  assert.equal(signTestP(0, 5), 1);
  assert.equal(signTestP(0, 0), 1, 'no decided round proves nothing');
});

test('lower is better, by difference: wins, losses, ties and the median per round', () => {
  const p = paired([1, 2, 3, 5], [2, 3, 3, 4], 'lower', 'diff');
  assert.deepEqual(p.perRound, [-1, -1, 0, 1]);
  assert.deepEqual([p.wins, p.losses, p.ties], [2, 1, 1]);
  assert.equal(p.median, -0.5);
  assert.equal(p.medianFavoursA, true);
  assert.equal(verdict(p), 'met', 'more wins than losses and the median on a\'s side, but p = 0.5');
});

test('higher is better, by ratio; shown only when the sign test says so', () => {
  const all = paired([11, 12, 13, 14, 15, 16, 17], [10, 10, 10, 10, 10, 10, 10], 'higher', 'ratio');
  assert.equal(all.wins, 7);
  assert.equal(verdict(all), 'shown');
  const six = paired([11, 12, 13, 14, 15, 16, 9], [10, 10, 10, 10, 10, 10, 10], 'higher', 'ratio');
  assert.equal(verdict(six), 'met', '6 of 7: p = 0.0625');
});

test('not met: as many losses as wins, or more wins but a median of no difference', () => {
  assert.equal(verdict(paired([1, 3], [2, 2], 'lower', 'diff')), 'not met');
  const mostlyTies = paired([1, 1, 1, 1, 1], [1, 1, 1, 2, 2], 'lower', 'diff');
  assert.deepEqual([mostlyTies.wins, mostlyTies.losses, mostlyTies.ties, mostlyTies.median], [2, 0, 3, 0]);
  assert.equal(verdict(mostlyTies), 'not met');
});

test('rounds must pair up', () => {
  assert.throws(() => paired([1, 2], [1], 'lower', 'diff'), /2 vs 1 rounds/);
  assert.throws(() => paired([], [], 'lower', 'diff'), /0 vs 0 rounds/);
});
