// A small schema reader for Istio resources: walks an untrusted object
// (from YAML or the API), returns typed values, and records every problem
// with the exact field path (`spec.http[0].route[1].weight`). Fields weir
// does not implement are recorded as "unsupported" instead of being
// silently dropped, so `weir analyze` and the proxy's config_dump can say so.
import { FieldError } from '../common/errors.js';
import { parseDuration } from '../common/duration.js';

export type Severity = 'error' | 'unsupported' | 'warning';

export interface Problem {
  severity: Severity;
  /** Field path inside the resource, e.g. spec.http[0].timeout */
  field: string;
  message: string;
}

export class Reader {
  readonly problems: Problem[] = [];

  error(field: string, message: string): undefined {
    this.problems.push({ severity: 'error', field, message });
    return undefined;
  }

  unsupported(field: string, message = 'not supported by weir yet; ignored'): void {
    this.problems.push({ severity: 'unsupported', field, message });
  }

  warning(field: string, message: string): void {
    this.problems.push({ severity: 'warning', field, message });
  }

  get ok(): boolean { return !this.problems.some((p) => p.severity === 'error'); }

  /**
   * An object whose keys are all in `known` (unknown keys are reported as
   * errors: a typo must not silently change routing) or `unsupported`.
   */
  object(field: string, v: unknown, known: readonly string[], unsupported: readonly string[] = []): Record<string, unknown> | undefined {
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'object' || Array.isArray(v)) return this.error(field, 'must be an object');
    const o = v as Record<string, unknown>;
    for (const k of Object.keys(o)) {
      if (unsupported.includes(k)) this.unsupported(`${field}.${k}`);
      else if (!known.includes(k)) this.error(`${field}.${k}`, 'unknown field');
    }
    return o;
  }

  array<T>(field: string, v: unknown, each: (item: unknown, field: string) => T | undefined): T[] {
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v)) { this.error(field, 'must be a list'); return []; }
    const out: T[] = [];
    v.forEach((item, i) => {
      const r = each(item, `${field}[${i}]`);
      if (r !== undefined) out.push(r);
    });
    return out;
  }

  string(field: string, v: unknown, opts: { required?: boolean; pattern?: RegExp; what?: string } = {}): string | undefined {
    if (v === undefined || v === null || v === '') return opts.required ? this.error(field, 'is required') : undefined;
    if (typeof v !== 'string') return this.error(field, 'must be a string');
    if (opts.pattern && !opts.pattern.test(v)) return this.error(field, `must be ${opts.what ?? `like ${opts.pattern}`} (got ${JSON.stringify(v)})`);
    return v;
  }

  strings(field: string, v: unknown): string[] {
    return this.array(field, v, (x, f) => this.string(f, x, { required: true }));
  }

  int(field: string, v: unknown, opts: { min?: number; max?: number; required?: boolean } = {}): number | undefined {
    if (v === undefined || v === null) return opts.required ? this.error(field, 'is required') : undefined;
    if (typeof v !== 'number' || !Number.isInteger(v)) return this.error(field, 'must be an integer');
    if (opts.min !== undefined && v < opts.min) return this.error(field, `must be ≥ ${opts.min} (got ${v})`);
    if (opts.max !== undefined && v > opts.max) return this.error(field, `must be ≤ ${opts.max} (got ${v})`);
    return v;
  }

  bool(field: string, v: unknown): boolean | undefined {
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'boolean') return this.error(field, 'must be true or false');
    return v;
  }

  /** Protobuf Duration as Istio's YAML writes it ("1.5s", "250ms", "1m", "1h"): weir's one duration syntax. → milliseconds */
  duration(field: string, v: unknown): number | undefined {
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'string') return this.error(field, 'must be a duration string like "5s" or "250ms"');
    try {
      return parseDuration(field, v, 365 * 86_400_000);
    } catch (e) {
      return this.error(field, e instanceof FieldError ? `${e.reason}${e.token !== undefined ? ` (got ${JSON.stringify(e.token)})` : ''}` : String(e));
    }
  }

  /** Istio's Percent {value: 0..100} (double). */
  percent(field: string, v: unknown): number | undefined {
    const o = this.object(field, v, ['value']);
    if (!o) return undefined;
    if (typeof o.value !== 'number' || o.value < 0 || o.value > 100) return this.error(`${field}.value`, 'must be a number between 0 and 100');
    return o.value;
  }

  labels(field: string, v: unknown): Record<string, string> | undefined {
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'object' || Array.isArray(v)) return this.error(field, 'must be a map of strings');
    const out: Record<string, string> = {};
    for (const [k, val] of Object.entries(v as Record<string, unknown>)) {
      if (typeof val !== 'string') this.error(`${field}.${k}`, 'must be a string');
      else out[k] = val;
    }
    return out;
  }

  oneOf<T extends string>(field: string, v: unknown, values: readonly T[], dflt?: T): T | undefined {
    if (v === undefined || v === null) return dflt;
    if (typeof v !== 'string' || !values.includes(v as T)) return this.error(field, `must be one of ${values.join(', ')} (got ${JSON.stringify(v)})`);
    return v as T;
  }
}
