#!/usr/bin/env node
// `weir`: the node-local CLI, and the entry of the long-running processes
// (`weir agent`, `weir proxy`). Each concern registers its own subcommands.
import { Command } from 'commander';
import { registerRulesCommands } from './commands/rules.js';
import { registerNodeCommands } from './commands/node.js';
import { registerAgentCommand } from './commands/agent.js';
import { registerProxyCommand } from '../proxy/command.js';
import { registerCaCommand } from './commands/ca.js';
import { registerAnalyzeCommand } from './commands/analyze.js';
import { registerInjectCommands } from './commands/inject.js';

export function buildProgram(): Command {
  const program = new Command('weir')
    .description('weir: node-level traffic capture for a service mesh')
    .version('0.1.0')
    .showHelpAfterError();
  registerRulesCommands(program);
  registerNodeCommands(program);
  registerAgentCommand(program);
  registerProxyCommand(program);
  registerCaCommand(program);
  registerAnalyzeCommand(program);
  registerInjectCommands(program);
  return program;
}

buildProgram().parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`weir: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
