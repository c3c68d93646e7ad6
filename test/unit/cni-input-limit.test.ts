// The CNI input limit is one number end to end: the TypeScript constant, the
// relay's #define, and the agent's /v1/cni/exec body bound derived from it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { MAX_CNI_INPUT_BYTES } from '../../src/cni/spec.js';
import { MAX_EXEC_BODY_BYTES } from '../../src/agent/cni-requests.js';

test('relay MAX_STDIN equals MAX_CNI_INPUT_BYTES (8 MiB), and the exec body bound covers it after JSON escaping', () => {
  const c = readFileSync(path.resolve(import.meta.dirname, '../../cni/relay/weir-cni.c'), 'utf8');
  const m = /#define MAX_STDIN (\d+)u/.exec(c);
  assert.ok(m, 'MAX_STDIN is a plain number in weir-cni.c');
  assert.equal(Number(m[1]), MAX_CNI_INPUT_BYTES);
  assert.equal(MAX_CNI_INPUT_BYTES, 8 * 1024 * 1024);
  assert.ok(MAX_EXEC_BODY_BYTES >= 6 * MAX_CNI_INPUT_BYTES, 'every byte may become a 6-byte \\u escape');
  assert.match(c, /CNI input limit of 8388608 bytes \(8 MiB\)/);
});
