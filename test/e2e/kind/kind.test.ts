// Runs test/e2e/kind/run.sh; reports a skip (with the script's reason) where
// docker or kind are not available, which is the case on the CI VM.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';

const SCRIPT = path.join(import.meta.dirname, 'run.sh');

test('kind e2e: weir chained behind kindnet captures the meshed pod only', (t) => {
  const r = spawnSync('bash', [SCRIPT], { encoding: 'utf8', timeout: 20 * 60_000 });
  const out = `${r.stdout}${r.stderr}`;
  const skipped = /^skipped: (.*)$/m.exec(r.stdout);
  if (skipped) { t.skip(skipped[0]); return; }
  assert.equal(r.status, 0, out.slice(-4000));
  assert.match(r.stdout, /PASS: kind e2e/);
});
