// The one duration syntax of every weir flag, environment variable and
// config field that takes a time: a number with a unit, "250ms", "10s",
// "1.5m", "1h". A bare number is refused: the agent once read "30" as
// seconds and the proxy as milliseconds, and whichever guess a person makes
// the other half of their config means something else. An error naming the
// field is cheaper than a timeout off by a factor of a thousand.
import { FieldError } from './errors.js';

const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;
/** Longest accepted duration: longer is a typo, and setTimeout overflows past ~24.8 days. */
export const MAX_DURATION_MS = 7 * 86_400_000;

/**
 * "250ms" | "10s" | "5m" | "1h" (decimals allowed) → whole milliseconds,
 * from 1 ms to `maxMs` (default 7 days; a certificate lifetime may allow
 * more); FieldError naming `field` otherwise.
 */
export function parseDuration(field: string, value: string, maxMs = MAX_DURATION_MS): number {
  const t = value.trim();
  if (/^\d+(?:\.\d+)?$/.test(t)) throw new FieldError(field, 'needs a unit: ms, s, m or h (e.g. 500ms, 30s)', value);
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(t);
  if (!m) throw new FieldError(field, 'must be a duration like 500ms, 30s, 5m, 1h', value);
  const n = Math.round(Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS]);
  if (!(n >= 1) || n > maxMs) throw new FieldError(field, `must be between 1ms and ${maxMs % 86_400_000 === 0 ? `${maxMs / 86_400_000} days` : `${maxMs}ms`}`, value);
  return n;
}
