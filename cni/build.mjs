// Bundles the TypeScript sources: dist/weir.mjs (CLI, agent, proxy) and
// dist/weir-proxy.mjs (the proxy alone, built for idle memory).
// The CNI plugin's single executable is built by cni/build-plugin.mjs.
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { existsSync } from 'node:fs';
import { buildCliBundle, buildProxyBundle } from './proxy-bundle.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

// The CLI (and so the agent the DaemonSet runs): Latin-1 and minified but for names (proxy-bundle.mjs says why).
await buildCliBundle(path.join(root, 'dist/weir.mjs'));

// The proxy alone (what a pod runs): `node dist/weir-proxy.mjs [flags]` = `weir proxy [flags]`.
await buildProxyBundle(path.join(root, 'dist/weir-proxy.mjs'));

const plugin = path.join(root, 'cni/build-plugin.mjs');
if (existsSync(plugin)) await import(plugin);
