// `weir agent` as a process (the DaemonSet's entry point) against the
// TestApiServer: starts from flags, answers `weir status`, and on SIGTERM
// stops cleanly (exit 0, sockets removed).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { skipUnlessRoot } from '../support/netns.js';
import { TestApiServer } from '../support/apiserver.js';

const REPO = path.resolve(import.meta.dirname, '../..');
const MAIN = path.join(REPO, 'src/cli/main.ts');

test('weir agent runs from flags, reports status, and exits 0 on SIGTERM', { skip: skipUnlessRoot(), timeout: 60_000 }, async (t) => {
  const api = await TestApiServer.start();
  const dir = mkdtempSync(path.join(tmpdir(), 'wk-proc-'));
  mkdirSync(path.join(dir, 'proc'));
  const runDir = path.join(dir, 'run');
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN, 'agent',
    '--node-name', 'wk-proc-node', '--kubeconfig', api.writeKubeconfig(dir), '--no-install', '--no-control-plane',
    '--run-dir', runDir, '--host-proc', path.join(dir, 'proc'), '--metrics-addr', '127.0.0.1:0', '--repair-interval', '30s'],
  { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (c: Buffer) => { out += c.toString(); });
  child.stderr.on('data', (c: Buffer) => { out += c.toString(); });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  t.after(async () => {
    if (child.exitCode === null) child.kill('SIGKILL');
    await api.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const adminSock = path.join(runDir, 'admin.sock');
  const deadline = Date.now() + 30_000;
  while (!/"msg":"agent started"/.test(out)) {
    if (Date.now() > deadline || child.exitCode !== null) assert.fail(`agent did not start:\n${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const logLine = JSON.parse(out.split('\n').find((l) => l.includes('"agent started"'))!) as { metrics: string; node: string };
  assert.equal(logLine.node, 'wk-proc-node');
  const ready = await fetch(`${logLine.metrics}/readyz`);
  assert.equal(ready.status, 200, await ready.text());

  const status = await new Promise<{ code: number; stdout: string }>((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', MAIN, 'status', '--socket', adminSock, '-o', 'json'], { cwd: REPO, encoding: 'utf8' }, (err, stdout) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout });
    });
  });
  assert.equal(status.code, 0, status.stdout);
  const s = JSON.parse(status.stdout) as { node: string; ready: boolean; backend: string; informers: { pods: { synced: boolean } } };
  assert.deepEqual([s.node, s.ready, s.backend, s.informers.pods.synced], ['wk-proc-node', true, 'nftables', true]);

  child.kill('SIGTERM');
  assert.equal(await exited, 0, out);
  assert.match(out, /"msg":"agent stopped"/);
  assert.equal(existsSync(adminSock), false);
  assert.equal(existsSync(path.join(runDir, 'cni.sock')), false);
});
