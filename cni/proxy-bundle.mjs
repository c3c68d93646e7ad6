// The standalone proxy bundle (src/proxy/main.ts → one file, plain node):
// what runs in every pod, so built for idle memory. Used by cni/build.mjs
// (dist/weir-proxy.mjs) and by bench/proxy-l4.ts, so the bench measures
// exactly this build. Also the full CLI's bundle (dist/weir.mjs, the agent),
// built the same way but keeping identifiers (buildCliBundle).
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
  return buildLatin1Bundle(path.join(srcRoot, 'src/proxy/main.ts'), outfile, { sourcemap, minify });
}

/**
 * The full CLI (dist/weir.mjs: `weir agent` is what the DaemonSet runs) and
 * bench/controlplane-scale.ts's agent: Latin-1, whitespace and syntax
 * minified, identifiers kept (the agent's stack traces and profiles stay
 * readable). Unminified with 67 characters above U+00FF, the 8.5 MB bundle
 * sat in the agent's heap as a 16.9 MB two-byte string; this is 4.6 MB of
 * one-byte text.
 */
export async function buildCliBundle(outfile, { sourcemap = 'linked', entry = path.join(root, 'src/cli/main.ts') } = {}) {
  return buildLatin1Bundle(entry, outfile, { sourcemap, minify: 'keep-names' });
}

/** One ESM bundle for plain node, held by V8 as a one-byte string. minify: true | false | 'keep-names' (whitespace and syntax only). */
async function buildLatin1Bundle(entry, outfile, { sourcemap, minify }) {
  await build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    ...(minify === 'keep-names' ? { minifyWhitespace: true, minifySyntax: true } : { minify }),
    charset: 'ascii',
    sourcemap,
    // The native addon is loaded at run time from native/build; never bundled.
    external: ['*.node'],
    // ESM bundles of CJS dependencies need require().
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
