// Standalone entry for the proxy image: `node weir-proxy.mjs [flags]` is
// `weir proxy [flags]` without loading the agent, CNI and Kubernetes client
// code the full CLI bundles (the proxy runs in every pod: its idle memory
// matters more than anything else's).
// The injector runs it as `node weir-proxy.mjs proxy [flags]` (and `... proxy-wait` for the postStart
// hook), the same arguments as the full CLI's; bare flags (`node weir-proxy.mjs [flags]`) still mean
// `proxy [flags]`.
import { Command } from 'commander';
import { registerProxyCommand, registerProxyWaitCommand } from './command.js';

const program = new Command('weir').showHelpAfterError();
registerProxyCommand(program);
registerProxyWaitCommand(program);
const args = process.argv.slice(2);
const sub = args[0] === 'proxy' || args[0] === 'proxy-wait' ? [] : ['proxy'];
program.parseAsync([process.argv[0], process.argv[1], ...sub, ...args]).catch((err: unknown) => {
  process.stderr.write(`weir proxy: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
