// What the weir image would contain, without Docker: the build context as
// .dockerignore filters it (on this worktree, host node_modules/dist/build
// included), the files the Dockerfile's build stage COPYs, what the runtime
// stage ships, and that the shipped bundles hold production dependencies
// only (esbuild's metafile against package-lock.json's dev flags).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { builtinModules } from 'node:module';
import { build } from 'esbuild';
import { buildContext, excluded, parseDockerignore } from '../support/docker-context.js';

const REPO = path.resolve(import.meta.dirname, '../..');
const DOCKERFILE = readFileSync(path.join(REPO, 'daemonset/Dockerfile'), 'utf8');

/** The stages of the Dockerfile, each with its instructions (continuation lines joined). */
function stages(): { from: string; lines: string[] }[] {
  const out: { from: string; lines: string[] }[] = [];
  const text = DOCKERFILE.replace(/\\\n/g, ' ');
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    if (/^FROM /i.test(line)) out.push({ from: line, lines: [] });
    else out.at(-1)!.lines.push(line);
  }
  return out;
}

test('.dockerignore semantics: last match wins, ** crosses directories, a directory takes its files', () => {
  const p = parseDockerignore('**/node_modules\ndist\n*.log\n!keep.log\nnative/build\n');
  assert.equal(excluded(p, 'node_modules/yaml/index.js'), true);
  assert.equal(excluded(p, 'cni/node_modules/x'), true);
  assert.equal(excluded(p, 'dist/weir.mjs'), true);
  assert.equal(excluded(p, 'src/dist.ts'), false);
  assert.equal(excluded(p, 'a.log'), true);
  assert.equal(excluded(p, 'keep.log'), false);
  assert.equal(excluded(p, 'sub/a.log'), false, '*.log matches at the root only, as in Docker');
  assert.equal(excluded(p, 'native/build/Release/weir_native.node'), true);
  assert.equal(excluded(p, 'native/src/addon.cc'), false);
});

test('the build context has the sources the build needs and none of the host\'s builds, deps or VCS data', () => {
  const { kept, dropped } = buildContext(REPO);
  // (.git is a file in a git worktree, a directory in a clone.)
  assert.ok(dropped.includes('.git') || dropped.includes('.git/'), `.git is not sent (dropped: ${dropped.join(' ')})`);
  for (const gone of ['node_modules/', 'test/']) assert.ok(dropped.includes(gone), `${gone} is not sent (dropped: ${dropped.join(' ')})`);
  // This worktree has host builds on disk: they must not reach the image.
  if (existsSync(path.join(REPO, 'dist'))) assert.ok(dropped.includes('dist/'));
  if (existsSync(path.join(REPO, 'native/build'))) assert.ok(dropped.includes('native/build/'));
  assert.ok(!kept.some((f) => /(^|\/)node_modules\//.test(f) || f.startsWith('dist/') || f.startsWith('native/build/')), 'no build output in the context');

  // Every COPY source of the build stage is in the context.
  const buildStage = stages()[0];
  const sources = buildStage.lines.filter((l) => /^COPY /i.test(l) && !/--from=/.test(l)).flatMap((l) => l.split(/\s+/).slice(1, -1));
  assert.deepEqual(sources, ['package.json', 'package-lock.json', 'tsconfig.json', 'native', 'cni', 'src']);
  for (const s of sources) assert.ok(kept.some((f) => f === s || f.startsWith(`${s}/`)), `${s} is in the context`);
  assert.ok(kept.includes('native/CMakeLists.txt') && kept.includes('cni/relay/weir-cni.c') && kept.includes('src/cli/main.ts'));
  assert.doesNotMatch(DOCKERFILE, /^COPY \. /m, 'no COPY . . (it would take whatever the context holds)');
  assert.match(buildStage.lines.join('\n'), /RUN npm ci --ignore-scripts[\s\S]*RUN npm run build/);
});

test('the runtime stage ships the agent and the proxy bundles, weir-cni and the addon, and no node_modules', () => {
  const runtime = stages().at(-1)!;
  assert.match(runtime.from, /^FROM node:20-bookworm-slim$/);
  const copies = runtime.lines.filter((l) => /^COPY --from=build /.test(l)).map((l) => l.split(/\s+/).slice(2));
  const shipped = Object.fromEntries(copies.map((c) => [c[0], c[1]]));
  assert.deepEqual(Object.keys(shipped).sort(), ['/src/dist/weir-cni', '/src/dist/weir-proxy.mjs', '/src/dist/weir.mjs', '/src/native/build/Release/weir_native.node', '/src/package.json']);
  assert.ok(!runtime.lines.some((l) => /node_modules/.test(l) && /^COPY/.test(l)), 'no node_modules in the image');
  // What the build stage produces is what the project's build writes.
  const buildScript = readFileSync(path.join(REPO, 'cni/build.mjs'), 'utf8');
  assert.match(buildScript, /dist\/weir\.mjs/);
  assert.match(buildScript, /dist\/weir-proxy\.mjs/);
  const env = runtime.lines.filter((l) => /^ENV /.test(l)).join(' ');
  assert.match(env, /WEIR_NATIVE_ADDON=\/usr\/local\/lib\/weir\/native\/weir_native\.node/);
  assert.match(env, /WEIR_CNI_PLUGIN_BINARY=\/usr\/local\/lib\/weir\/weir-cni/);
  assert.ok(runtime.lines.includes('ENTRYPOINT ["node", "/usr/local/lib/weir/weir.mjs"]'));
});

test('the bundles contain production dependencies only, and import nothing at run time but node builtins and the addon', async () => {
  const lock = JSON.parse(readFileSync(path.join(REPO, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean }> };
  const dir = mkdtempSync(path.join(tmpdir(), 'weir-image-'));
  try {
    for (const entry of ['src/cli/main.ts', 'src/proxy/main.ts']) {
      const r = await build({
        entryPoints: [path.join(REPO, entry)], outfile: path.join(dir, 'out.mjs'), bundle: true, platform: 'node', target: 'node20', format: 'esm',
        external: ['*.node'], metafile: true, write: false, logLevel: 'silent',
      });
      const pkgs = new Set<string>();
      for (const input of Object.keys(r.metafile.inputs)) {
        const m = /(?:^|\/)node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(input);
        if (m) pkgs.add(`node_modules/${m[1]}`);
      }
      assert.ok(pkgs.has('node_modules/pino') || entry.includes('proxy'), `${entry}: bundles its dependencies (found ${[...pkgs].join(' ')})`);
      const dev = [...pkgs].filter((p) => lock.packages[p]?.dev === true);
      assert.deepEqual(dev, [], `${entry} bundles devDependencies`);
      // Left for run time: builtins and the addon only (so no node_modules in the image).
      const runtimeImports = Object.values(r.metafile.outputs).flatMap((o) => o.imports.filter((i) => i.external).map((i) => i.path));
      const left = runtimeImports.filter((i) => !i.startsWith('node:') && !builtinModules.includes(i) && !i.endsWith('.node'));
      // Optional peers their users require inside try/catch (debug → supports-color, ws → utf-8-validate/bufferutil, node-fetch → encoding):
      // not installed, so esbuild leaves the require; at run time it throws and the library carries on without.
      const OPTIONAL = ['supports-color', 'utf-8-validate', 'bufferutil', 'encoding'];
      for (const o of left) assert.ok(OPTIONAL.includes(o) && !existsSync(path.join(REPO, 'node_modules', o)), `${entry} needs ${o} at run time (not in the image)`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
