// The one duration parser every flag and setting uses: a unit is required.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseDuration } from '../../src/common/duration.js';
import { FieldError } from '../../src/common/errors.js';

test('durations: each unit, decimals, rounding to whole ms', () => {
  assert.equal(parseDuration('f', '250ms'), 250);
  assert.equal(parseDuration('f', '10s'), 10_000);
  assert.equal(parseDuration('f', '1.5m'), 90_000);
  assert.equal(parseDuration('f', '1h'), 3_600_000);
  assert.equal(parseDuration('f', ' 2s '), 2000);
  assert.equal(parseDuration('f', '0.0015s'), 2);
});

test('durations: a bare number, garbage, zero and too long are FieldErrors naming the field', () => {
  const cases: [string, RegExp][] = [
    ['30', /^--x: needs a unit: ms, s, m or h .*\(bad value: "30"\)$/],
    ['1.5', /needs a unit/],
    ['10 s', /must be a duration like/],
    ['-1s', /must be a duration like/],
    ['5d', /must be a duration like/],
    ['', /must be a duration like/],
    ['0s', /between 1ms and 7 days/],
    ['0.4ms', /between 1ms and 7 days/],
    ['169h', /between 1ms and 7 days/],
  ];
  assert.equal(parseDuration('--cert-ttl', '2160h', 365 * 86_400_000), 2160 * 3_600_000, 'a caller may allow longer');
  assert.throws(() => parseDuration('--x', '2s', 1000), /--x: must be between 1ms and 1000ms/);
  for (const [v, re] of cases) {
    assert.throws(() => parseDuration('--x', v), (e: unknown) => e instanceof FieldError && e.field === '--x' && re.test(e.message), v);
  }
});
