// Standalone entry for the proxy image: `node weir-proxy.mjs [flags]` is
// `weir proxy [flags]` without loading the agent, CNI and Kubernetes client
// code the full CLI bundles (the proxy runs in every pod: its idle memory
// matters more than anything else's).
import { Command } from 'commander';
import { registerProxyCommand } from './command.js';

const program = new Command('weir').showHelpAfterError();
registerProxyCommand(program);
program.parseAsync([process.argv[0], process.argv[1], 'proxy', ...process.argv.slice(2)]).catch((err: unknown) => {
  process.stderr.write(`weir proxy: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
