// Golden installer output: for each primary CNI shape in
// test/fixtures/cni-conf/<shape>/ (the conf directory as the primary left
// it), the real Installer runs against a copy of it and the whole directory
// afterwards must equal test/golden/cni/<shape>/ byte for byte (file names,
// so a promoted .conf shows as a new .conflist, and contents). Then stop()
// must leave the primary's files as they were. UPDATE_GOLDEN=1 rewrites the
// goldens (review the diff, test/golden/README.md).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Installer } from '../../src/agent/installer.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const fixtures = path.join(root, 'fixtures', 'cni-conf');
const golden = path.join(root, 'golden', 'cni');
const update = process.env.UPDATE_GOLDEN === '1';
/** What the agent puts in its entry (src/agent/agent.ts) with default settings. */
const PLUGIN_CONF = { agentSocket: '/var/run/weir/cni.sock', excludeNamespaces: ['kube-system'] };

const shapes = readdirSync(fixtures).sort();

function snapshot(dir: string): Map<string, string> {
  return new Map(readdirSync(dir).sort().map((f) => [f, readFileSync(path.join(dir, f), 'utf8')]));
}

test('there is an installer golden for every primary shape', () => {
  assert.deepEqual(shapes, ['already-weir', 'already-weir-current', 'bridge-conf', 'calico', 'cilium', 'existing-chain']);
});

for (const shape of shapes) {
  test(`installer golden: ${shape}`, async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'wc-golden-'));
    const confDir = path.join(dir, 'net.d');
    const binDir = path.join(dir, 'bin');
    const pluginBinary = path.join(dir, 'weir-cni.src');
    cpSync(path.join(fixtures, shape), confDir, { recursive: true });
    writeFileSync(pluginBinary, '#!/bin/sh\n');
    const before = snapshot(confDir);
    const inst = new Installer({ confDir, binDir, pluginBinary, pluginConf: PLUGIN_CONF, periodicCheckMs: 60_000 });
    try {
      await inst.start();
      assert.equal(inst.ready().ready, true, inst.ready().reason);
      const after = snapshot(confDir);
      const want = path.join(golden, shape);
      if (update) {
        rmSync(want, { recursive: true, force: true });
        mkdirSync(want, { recursive: true });
        for (const [f, text] of after) writeFileSync(path.join(want, f), text);
      }
      assert.deepEqual([...after.keys()], [...snapshot(want).keys()], 'file names in the conf dir');
      for (const [f, text] of snapshot(want)) assert.equal(after.get(f), text, `${shape}/${f}`);
    } finally {
      await inst.stop();
    }
    // Removing exactly what weir added: the primary's own files come back
    // (a promoted .conf as the .conf it was, byte for byte; a list as the
    // same JSON, re-serialised), minus any weir entry that was there before.
    const restored = snapshot(confDir);
    assert.deepEqual([...restored.keys()], [...before.keys()], `stop() leaves the file names of ${shape}`);
    for (const [f, text] of before) {
      if (!/\.conflist$/.test(f)) { assert.equal(restored.get(f), text, `stop() restores ${shape}/${f}`); continue; }
      const was = JSON.parse(text) as { plugins: { type: string }[] };
      was.plugins = was.plugins.filter((p) => p.type !== 'weir-cni');
      assert.deepEqual(JSON.parse(restored.get(f)!), was, `stop() restores ${shape}/${f}`);
    }
    rmSync(dir, { recursive: true, force: true });
  });
}
