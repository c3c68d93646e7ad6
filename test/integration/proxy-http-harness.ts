// Helpers for the HTTP proxy suites on top of proxy-harness: pods running
// the HTTP/h2c/gRPC test app, real clients (curl, nghttp, h2load, python3-h2,
// grpc-js) run inside a pod's netns so capture applies, and proxy output
// parsing (access log lines).
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { Cluster, REPO, waitForLine, type Pod } from './proxy-harness.js';
import { until } from '../support/poll.js';

export const REPO_DIR = REPO;

export const APP = path.join(REPO, 'test/fixtures/http/app.cjs');
export const RAPID_RESET = path.join(REPO, 'test/fixtures/http/rapid-reset.py');
export const GRPC_CLIENT = path.join(REPO, 'test/fixtures/http/grpc-client.cjs');

export async function startHttpApp(pod: Pod): Promise<void> {
  pod.app = pod.ns.spawn(process.execPath, [APP, REPO, pod.name]);
  const keep = (d: Buffer) => { for (const l of d.toString().split('\n')) if (l) pod.proxyLog.push(`app: ${l}`); };
  pod.app.stdout!.on('data', keep);
  pod.app.stderr!.on('data', keep);
  await waitForLine(pod.app, /app ready/, 10000);
}

/** Runs a client inside the pod's netns as root (so capture applies); resolves with its exit code and output. */
export function run(pod: Pod, cmd: string, args: string[], timeoutMs = 30000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('ip', ['netns', 'exec', pod.ns.name, cmd, ...args], { timeout: timeoutMs, maxBuffer: 64 << 20, encoding: 'utf8' }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0, stdout, stderr });
    });
  });
}

export async function curl(pod: Pod, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return run(pod, 'curl', ['-sS', '--max-time', '10', ...args]);
}

/** A pod-labels file as the downward API writes it. */
export function labelsFile(c: Cluster, pod: Pod, labels: Record<string, string>): string {
  const f = path.join(c.sockDir, `${pod.name}.labels`);
  writeFileSync(f, Object.entries(labels).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join('\n') + '\n', { mode: 0o644 });
  return f;
}

/** Access log lines (text format start with "[<ISO time>]"; JSON ones are objects with start_time). */
export function accessLines(pod: Pod): string[] {
  return pod.proxyLog.filter((l) => /^\[\d{4}-\d\d-\d\dT/.test(l));
}

export function jsonAccessLines(pod: Pod): Record<string, unknown>[] {
  return pod.proxyLog.filter((l) => l.startsWith('{"start_time"')).map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** The harness's argument order, over test/support/poll.ts. */
export async function waitFor(cond: () => Promise<boolean> | boolean, timeoutMs: number, what: string): Promise<void> {
  await until(what, cond, { ms: timeoutMs, everyMs: 50 });
}
