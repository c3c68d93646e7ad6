// `weir proxy --static-config FILE`: a bad file stops the proxy before it
// listens, with exit code 2 and the JSON path of the field to fix.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

function runProxy(args: string[]): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'proxy', '--no-dns', '--admin-port', '25000', ...args], { timeout: 60_000 }, (err, _out, stderr) => {
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stderr });
    });
  });
}

test('a bad static config is refused with exit 2 naming the field; a missing file names the flag', { timeout: 120_000 }, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'wx-static-'));
  try {
    const bad = path.join(dir, 'bad.json');
    writeFileSync(bad, JSON.stringify({ clusters: [{ name: 'c', host: 'h', port: 80, loadBalancer: { simple: 'FASTEST' } }] }));
    const r = await runProxy(['--static-config', bad]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /--static-config .*bad\.json: clusters\[0\]\.loadBalancer\.simple: must be one of/);
    const missing = await runProxy(['--static-config', path.join(dir, 'nope.json')]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /--static-config: cannot read/);
    const notJson = path.join(dir, 'x.json');
    writeFileSync(notJson, '{');
    assert.match((await runProxy(['--static-config', notJson])).stderr, /is not JSON/);
  } finally { rmSync(dir, { recursive: true, force: true }); }
});
