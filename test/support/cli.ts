// `weir` as an operator runs it, for CLI tests: the current sources bundled
// once per test process with esbuild (the same settings as dist/weir.mjs),
// then one plain `node` per invocation. Spawning through tsx costs seconds
// per call on a loaded machine; the bundle costs ~0.3 s and is never stale.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { build } from 'esbuild';

const REPO = path.resolve(import.meta.dirname, '../..');
let bundled: Promise<string> | undefined;
let bundleDir: string | undefined;

export function cliBundle(): Promise<string> {
  bundled ??= (async () => {
    bundleDir = mkdtempSync(path.join(tmpdir(), 'weir-cli-bundle-'));
    const out = path.join(bundleDir, 'weir.mjs');
    await build({
      entryPoints: [path.join(REPO, 'src/cli/main.ts')], outfile: out, bundle: true, platform: 'node', target: 'node20', format: 'esm',
      external: ['*.node'], logLevel: 'warning',
      banner: { js: "import { createRequire as __weirCreateRequire } from 'node:module'; const require = __weirCreateRequire(import.meta.url);" },
    });
    process.on('exit', () => { if (bundleDir) rmSync(bundleDir, { recursive: true, force: true }); });
    return out;
  })();
  return bundled;
}

/** The bundle lives outside the repo: point it at the repo's addon. */
function env(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return { ...process.env, WEIR_NATIVE_ADDON: process.env.WEIR_NATIVE_ADDON ?? path.join(REPO, 'native/build/Release/weir_native.node'), ...extra };
}

export interface CliResult { code: number; stdout: string; stderr: string }

export async function weirCli(args: string[], opts: { input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<CliResult> {
  const bundle = await cliBundle();
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [bundle, ...args], { cwd: REPO, encoding: 'utf8', timeout: opts.timeoutMs ?? 30_000, env: env(opts.env) }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
    child.stdin?.end(opts.input ?? '');
  });
}

export async function weirSpawn(args: string[]): Promise<ChildProcess> {
  return spawn(process.execPath, [await cliBundle(), ...args], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'], env: env() });
}
