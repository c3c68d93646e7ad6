// The proxy-only bundle is what injected pods run (the injector's default
// command): it must take the full CLI's arguments — `proxy [flags]` and
// `proxy-wait` for the postStart hook — and still bare flags as before.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
// @ts-expect-error plain .mjs build helper, no types
import { buildProxyBundle } from '../../cni/proxy-bundle.mjs';
import { DEFAULT_INJECTOR_CONFIG } from '../../src/injector/config.js';

function run(bundle: string, args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [bundle, ...args], { timeout: 30_000, encoding: 'utf8' }, (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: unknown }).code ?? 1) : 0, out: stdout + stderr });
    });
  });
}

test('weir-proxy.mjs: `proxy`, bare flags and `proxy-wait` as the injector calls them', { timeout: 120_000 }, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'wx-bundle-'));
  try {
    const bundle = await buildProxyBundle(path.join(dir, 'weir-proxy.mjs'), { sourcemap: false }) as string;
    assert.equal(path.basename(DEFAULT_INJECTOR_CONFIG.proxyCommand.at(-1)!), 'weir-proxy.mjs');
    for (const args of [['proxy', '--help'], ['--help']]) {
      const r = await run(bundle, args);
      assert.equal(r.code, 0, r.out);
      assert.match(r.out, /--control-plane-socket/);
    }
    // Nothing listens on port 1: proxy-wait gives up after its timeout, naming the URL.
    const w = await run(bundle, ['proxy-wait', '--url', 'http://127.0.0.1:1/healthz/ready', '--timeout', '300ms']);
    assert.equal(w.code, 1, w.out);
    assert.match(w.out, /weir proxy-wait: .*127\.0\.0\.1:1/);
    const bad = await run(bundle, ['proxy-wait', '--timeout', 'soon']);
    assert.equal(bad.code, 2, bad.out);
    assert.match(bad.out, /--timeout/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
