// One logger factory for every component. The CNI plugin must never write
// logs to stdout (stdout is the CNI result channel), so callers pick the fd.
import { pino } from 'pino';

export type Logger = import('pino').Logger;

export interface LoggerOptions {
  name: string;
  /** 1 = stdout (agent, proxy), 2 = stderr (CNI plugin, CLI diagnostics). */
  fd?: 1 | 2;
  level?: string;
}

export function createLogger(opts: LoggerOptions): Logger {
  const level = opts.level ?? process.env.WEIR_LOG_LEVEL ?? 'info';
  return pino({ name: opts.name, level, base: { component: opts.name } }, pino.destination({ fd: opts.fd ?? 1, sync: true }));
}
