// The `weir` command tree. Each concern registers its own subcommands;
// every command follows one exit-code table (src/cli/exit.ts, README).
import { Command } from 'commander';
import pkg from '../../package.json' with { type: 'json' };
import { registerRulesCommands } from './commands/rules.js';
import { registerNodeCommands } from './commands/node.js';
import { registerLogsCommand } from './commands/logs.js';
import { registerDescribeCommand } from './commands/describe.js';
import { registerProxyConfigCommand } from './commands/proxy-config.js';
import { registerPrecheckCommand } from './commands/precheck.js';
import { registerCompletionCommand } from './commands/completion.js';
import { registerAgentCommand } from './commands/agent.js';
import { registerProxyCommand } from '../proxy/command.js';
import { registerCaCommand } from './commands/ca.js';
import { registerAnalyzeCommand } from './commands/analyze.js';
import { registerInjectCommands } from './commands/inject.js';
import { registerUninstallCommand } from './commands/uninstall.js';
import { EXIT_CODE_TABLE, usageErrorsExit2 } from './exit.js';

export const VERSION: string = pkg.version;

export function buildProgram(): Command {
  const program = new Command('weir')
    .description('weir: node-level traffic capture for a service mesh')
    .version(VERSION, '-v, --version', 'print the version')
    .showHelpAfterError()
    .addHelpText('after', `\nExit codes:\n${EXIT_CODE_TABLE.map(([c, m]) => `  ${c}  ${m}`).join('\n')}\n`);
  usageErrorsExit2(program);
  program.command('version').description('print the version').option('-o, --output <format>', 'text or json', 'text')
    .action((opts: { output: string }) => {
      process.stdout.write(opts.output === 'json' ? `${JSON.stringify({ version: VERSION, node: process.version })}\n` : `weir ${VERSION}\n`);
    });
  registerRulesCommands(program);
  registerNodeCommands(program);
  registerLogsCommand(program);
  registerDescribeCommand(program);
  registerProxyConfigCommand(program);
  registerPrecheckCommand(program);
  registerCompletionCommand(program);
  registerAgentCommand(program);
  registerProxyCommand(program);
  registerCaCommand(program);
  registerAnalyzeCommand(program);
  registerInjectCommands(program);
  registerUninstallCommand(program);
  return program;
}

