// The agent's last-resort policy for errors no handler caught (written down
// in docs/architecture.md, "Hostile input and crashes"; tested by
// test/integration/agent-last-resort.test.ts):
//   - unhandled promise rejection: logged at error with its stack, counted in
//     weir_agent_unexpected_errors_total{kind="unhandled-rejection"}, and the
//     agent keeps serving. A rejection ends one async task; nothing
//     synchronous was torn, and every kernel change is guarded by its own
//     intent record.
//   - uncaught exception: logged at fatal with its stack, then the process
//     exits with code 70 at once — no graceful shutdown, which would run on
//     state of unknown shape. The CNI chain is left in place, so new pods fail
//     closed (code 11, retried) until the kubelet has restarted the agent;
//     the restarted agent finishes or removes every half-done ADD
//     (recoverPending) and verifies every pod (first repair pass) before it
//     reports ready.
import { Counter, type Registry } from 'prom-client';

interface FatalLogger {
  error(obj: object, msg: string): void;
  fatal(obj: object, msg: string): void;
}

export const UNCAUGHT_EXIT_CODE = 70;

const STDERR_LOGGER: FatalLogger = {
  error: (obj, msg) => process.stderr.write(`${JSON.stringify({ level: 'error', msg, ...obj })}\n`),
  fatal: (obj, msg) => process.stderr.write(`${JSON.stringify({ level: 'fatal', msg, ...obj })}\n`),
};

/** Installs the policy (logging to stderr until use() hands it the agent's logger and metrics). */
export function installLastResort(): { use(logger: FatalLogger, registry: Registry): void } {
  let logger = STDERR_LOGGER;
  let counter: Counter<'kind'> | undefined;
  const stack = (e: unknown): string => (e instanceof Error ? e.stack ?? e.message : String(e));
  process.on('unhandledRejection', (reason) => {
    counter?.inc({ kind: 'unhandled-rejection' });
    try { logger.error({ err: stack(reason) }, 'unhandled promise rejection (agent keeps running)'); } catch { /* logging must not throw here */ }
  });
  process.on('uncaughtException', (err) => {
    try { logger.fatal({ err: stack(err), exitCode: UNCAUGHT_EXIT_CODE }, 'uncaught exception: exiting for a clean restart'); } catch { process.stderr.write(`weir agent: uncaught exception: ${stack(err)}\n`); }
    process.exit(UNCAUGHT_EXIT_CODE);
  });
  return {
    use(l, registry) {
      logger = l;
      counter = new Counter({ name: 'weir_agent_unexpected_errors_total', help: 'Errors no handler caught, by kind (an uncaught exception also restarts the agent)', labelNames: ['kind'], registers: [registry] });
    },
  };
}
