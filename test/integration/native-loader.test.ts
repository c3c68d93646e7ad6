// Finding and loading the addon: from the sources (tsx) or the bundle, and a
// clear, actionable error when it was never built.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ADDON_NOT_BUILT, locateAddon } from '../../src/native/addon.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const expected = path.join(root, 'native/build/Release/weir_native.node');

test('locateAddon walks up to the weir package from src/netns and from dist', { skip: existsSync(expected) ? false : 'addon not built' }, () => {
  const saved = process.env.WEIR_NATIVE_ADDON;
  delete process.env.WEIR_NATIVE_ADDON;
  try {
    assert.equal(locateAddon(path.join(root, 'src/netns')), expected);
    assert.equal(locateAddon(path.join(root, 'dist')), expected);
    assert.equal(locateAddon('/'), undefined);
  } finally {
    if (saved !== undefined) process.env.WEIR_NATIVE_ADDON = saved;
  }
});

test('an addon that is not there gives the build instruction, not a module-not-found trace', () => {
  const script = `import('${path.join(root, 'src/native/addon.ts')}').then((m) => m.nftRun(null, 'list tables')).then(
    () => { console.log('resolved'); }, (e) => { console.log(e.message); })`;
  const out = execFileSync(process.execPath, ['--import', 'tsx', '-e', script], {
    cwd: root, encoding: 'utf8', env: { ...process.env, WEIR_NATIVE_ADDON: '/nonexistent/wn_native.node' },
  });
  assert.equal(out.trim(), `${ADDON_NOT_BUILT} (WEIR_NATIVE_ADDON=/nonexistent/wn_native.node does not exist)`);
  assert.match(ADDON_NOT_BUILT, /npm run build:native/);
});
