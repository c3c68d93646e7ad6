// One logger factory for every component. The CNI plugin must never write
// logs to stdout (stdout is the CNI result channel), so callers pick the fd.
//
// The line format (every weir process, one shape):
//   {"level":"info","time":"2026-12-01T21:00:00.000Z","name":"weir-proxy","component":"dns",...,"msg":"..."}
// - level as its name, time as ISO 8601 UTC: what people and log pipelines
//   (Loki, Cloud Logging, kubectl logs) read without a lookup table;
// - `name` is the process (weir-agent, weir-proxy), `component` is set only
//   by child loggers (`logger.child({ component })`), never at the root, so
//   no line carries the same key twice (pino appends child bindings as they
//   are; it does not replace keys of the parent).
import { pino, type LoggerOptions as PinoOptions } from 'pino';

export type Logger = import('pino').Logger;

export interface LoggerOptions {
  name: string;
  /** 1 = stdout (agent, proxy), 2 = stderr (CNI plugin, CLI diagnostics). */
  fd?: 1 | 2;
  level?: string;
}

/** pino options for weir's line format; `base` adds process-wide fields (e.g. the node), never `component`. */
export function weirLogOptions(name: string, level: string, base: Record<string, unknown> = {}): PinoOptions {
  if ('component' in base || 'name' in base) throw new Error('weirLogOptions: base must not set name or component (children set component)');
  return {
    name,
    level,
    base,
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  };
}

export function createLogger(opts: LoggerOptions): Logger {
  const level = opts.level ?? process.env.WEIR_LOG_LEVEL ?? 'info';
  return pino(weirLogOptions(opts.name, level), pino.destination({ fd: opts.fd ?? 1, sync: true }));
}
