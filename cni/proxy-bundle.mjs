// The standalone proxy bundle (src/proxy/main.ts → one file, plain node):
// what runs in every pod, so built for idle memory. Used by cni/build.mjs
// (dist/weir-proxy.mjs) and by bench/proxy-l4.ts, so the bench measures
// exactly this build.
//  - minified: V8 keeps the whole script source in the heap for the life of
//    the process (and lazily compiled functions are re-parsed from it);
//    measured 0.4 MB less RssAnon than the unminified bundle.
//  - Latin-1 only: a single character above U+00FF anywhere in the file
//    (a regex literal in a dependency, a comment esbuild keeps) makes V8
//    hold the entire source as a two-byte string; escaping them halved the
//    source's heap footprint (0.6 MB less RssAnon).
import { build } from 'esbuild';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/**
 * minify: false keeps function names (profiles: bench/profile-accept.ts).
 * srcRoot: build another checkout's src/ (bench/profile-http.ts profiles an
 * older commit's proxy extracted under this repo, so npm deps resolve here).
 */
export async function buildProxyBundle(outfile, { sourcemap = 'linked', minify = true, srcRoot = root } = {}) {
  await build({
    entryPoints: [path.join(srcRoot, 'src/proxy/main.ts')],
    outfile,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    minify,
    charset: 'ascii',
    sourcemap,
    external: ['*.node'],
    banner: { js: "import { createRequire as __weirCreateRequire } from 'node:module'; const require = __weirCreateRequire(import.meta.url);" },
    logLevel: 'warning',
  });
  const text = readFileSync(outfile, 'utf8');
  // \uXXXX is the same character wherever esbuild leaves one unescaped
  // (regex literals, kept comments, strings). Source-map columns after one
  // on the same line shift by 5; there are a handful in the whole bundle.
  const latin1 = text.replace(/[^\x00-\xff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  if (latin1 !== text) writeFileSync(outfile, latin1);
  return outfile;
}
