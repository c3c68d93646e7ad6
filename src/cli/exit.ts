// One exit-code table for every `weir` command (README "Exit codes"):
//   0 ok · 1 failure · 2 usage or bad input (nothing touched) · 3 drift · 4 agent unreachable
// Commands throw CliExit (or FieldError for bad input) and `runAction` maps
// whatever escapes to the table, so no command invents its own codes.
import type { Command } from 'commander';
import { FieldError } from '../common/errors.js';

import { EXIT, type ExitCode } from '../common/exit-codes.js';

export { EXIT, type ExitCode };

export const EXIT_CODE_TABLE: readonly [ExitCode, string][] = [
  [EXIT.ok, 'ok'],
  [EXIT.failure, 'the operation failed (runtime error, pod not captured when it should be, proxy not ready)'],
  [EXIT.usage, 'usage error or bad input (unknown flag, bad manifest, bad annotation); nothing was changed'],
  [EXIT.drift, 'drift: the kernel state differs from the plan'],
  [EXIT.unreachable, 'the weir agent (or the pod\'s proxy through it) could not be reached'],
];

export class CliExit extends Error {
  constructor(readonly code: ExitCode, message: string) { super(message); }
}

export function usage(message: string): CliExit {
  return new CliExit(EXIT.usage, message);
}

/** Wraps a command body: its return value is the exit code; errors are printed once and mapped to the table. */
export function runAction<A extends unknown[]>(prefix: string, fn: (...args: A) => Promise<number | void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      process.exitCode = (await fn(...args)) ?? EXIT.ok;
    } catch (e) {
      const bad = e instanceof FieldError;
      const code = e instanceof CliExit ? e.code : bad ? EXIT.usage : EXIT.failure;
      process.stderr.write(`${prefix}: ${bad ? 'bad input: ' : ''}${(e as Error).message}\n`);
      process.exitCode = code;
    }
  };
}

/**
 * Commander exits 1 on usage errors; the table says 2. Applied to the root
 * and inherited by every subcommand created after it (copyInheritedSettings).
 */
export function usageErrorsExit2(program: Command): void {
  program.exitOverride((err) => {
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') process.exit(EXIT.ok);
    process.exit(EXIT.usage);
  });
}
