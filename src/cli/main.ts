#!/usr/bin/env node
// `weir`: the node-local CLI, and the entry of the long-running processes
// (`weir agent`, `weir proxy`). The command tree is in program.ts.
import { buildProgram } from './program.js';
import { EXIT } from './exit.js';

buildProgram().parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`weir: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(EXIT.failure);
});
