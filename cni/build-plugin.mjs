// Builds dist/weir-cni: a single executable that needs no Node.js on the host.
//
// Default (shipped): the C relay cni/relay/*.c (weir-cni.c + json-scan.c + excluded.c), statically linked. It
// forwards the invocation to the agent (POST /v1/cni/exec), where the plugin
// logic of src/cni/plugin.ts runs; a Node process per sandbox cost ~25 ms of
// boot alone (bench/results/cni-add.md), the relay ~1 ms.
//
// WEIR_CNI_IMPL=node: the same plugin logic as a Node single executable
// application: cni/main.ts bundled to one CommonJS file (the SEA main must be
// CJS), turned into a SEA blob with V8 code cache, injected into a copy of
// this node binary. Kept for comparison (bench/cni-add.ts).
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { copyFileSync, chmodSync, renameSync, writeFileSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = path.join(root, 'dist');
// WEIR_CNI_OUT: build a variant elsewhere (bench/cni-add.ts compares start-up options).
const out = process.env.WEIR_CNI_OUT ? path.resolve(process.env.WEIR_CNI_OUT) : path.join(dist, 'weir-cni');
const work = `${out}.build`;
mkdirSync(work, { recursive: true });

if (process.env.WEIR_CNI_IMPL !== 'node') {
  // Static: no dependency on the host's libc version (the binary is copied to
  // every node's /opt/cni/bin). Built beside the target, then renamed, so a
  // build never leaves a half-written binary at dist/weir-cni.
  const tmp = path.join(work, 'weir-cni.tmp');
  const cc = process.env.CC ?? 'cc';
  execFileSync(cc, ['-O2', '-static', '-Wall', '-Wextra', '-Werror', '-o', tmp, ...['weir-cni.c', 'json-scan.c', 'excluded.c'].map((f) => path.join(root, 'cni/relay', f))], { stdio: ['ignore', 'inherit', 'inherit'] });
  renameSync(tmp, out);
} else {
  await buildNodeSea();
}

async function buildNodeSea() {

const bundle = path.join(work, 'main.cjs');
await build({
  entryPoints: [path.join(root, 'cni/main.ts')],
  outfile: bundle,
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  minify: true,
  legalComments: 'none',
  logLevel: 'warning',
});

const blob = path.join(work, 'sea.blob');
const seaConfig = path.join(work, 'sea-config.json');
writeFileSync(seaConfig, JSON.stringify({
  main: bundle,
  output: blob,
  disableExperimentalSEAWarning: true,
  // Code cache: V8 skips compiling the bundle at every start.
  useCodeCache: process.env.WEIR_CNI_CODE_CACHE !== '0',
}));
execFileSync(process.execPath, ['--experimental-sea-config', seaConfig], { stdio: ['ignore', 'ignore', 'inherit'] });

// Inject into a copy, then rename: a build never leaves a half-made binary at dist/weir-cni.
const tmp = path.join(work, 'weir-cni.tmp');
copyFileSync(process.execPath, tmp);
chmodSync(tmp, 0o755);
const postject = path.join(root, 'node_modules/postject/dist/cli.js');
execFileSync(process.execPath, [postject, tmp, 'NODE_SEA_BLOB', blob, '--sentinel-fuse', 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2'], { stdio: ['ignore', 'ignore', 'inherit'] });
renameSync(tmp, out);
}
