// Bundles the TypeScript sources: dist/weir.mjs (CLI, agent, proxy) and
// dist/weir-proxy.mjs (the proxy alone, built for idle memory).
// The CNI plugin's single executable is built by cni/build-plugin.mjs.
import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { existsSync } from 'node:fs';
import { buildProxyBundle } from './proxy-bundle.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  sourcemap: 'linked',
  // The native addon is loaded at run time from native/build; never bundled.
  external: ['*.node'],
  banner: {
    // ESM bundles of CJS dependencies need require().
    js: "import { createRequire as __weirCreateRequire } from 'node:module'; const require = __weirCreateRequire(import.meta.url);",
  },
  logLevel: 'warning',
};

await build({ ...common, entryPoints: [path.join(root, 'src/cli/main.ts')], outfile: path.join(root, 'dist/weir.mjs') });

// The proxy alone (what a pod runs): `node dist/weir-proxy.mjs [flags]` = `weir proxy [flags]`.
await buildProxyBundle(path.join(root, 'dist/weir-proxy.mjs'));

const plugin = path.join(root, 'cni/build-plugin.mjs');
if (existsSync(plugin)) await import(plugin);
