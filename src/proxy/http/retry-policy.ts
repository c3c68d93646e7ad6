// When a failed attempt is tried again, as Envoy reads Istio's retryOn:
// connect-failure, refused-stream, reset, 5xx (which includes connect
// failures, refused streams, resets and per-try timeouts), gateway-error
// (502/503/504 and the same local failures), retriable-4xx (409),
// retriable-status-codes (the route's list), and the gRPC statuses
// cancelled, deadline-exceeded, internal, resource-exhausted, unavailable.
// Between tries: Envoy's backoff, exponential from a 25 ms base with full
// jitter, capped at 10 × the base.
import type { CompiledRetry } from '../../controlplane/resources.js';
import type { FailureKind } from './upstream.js';

export type AttemptFailure = FailureKind | 'per-try-timeout';

const GRPC_CODES: Record<string, string> = { cancelled: '1', 'deadline-exceeded': '4', 'resource-exhausted': '8', internal: '13', unavailable: '14' };

/** Istio's default for every route (and the HTTP path without compiled config). */
export function defaultRetry(attempts: number): CompiledRetry {
  return { attempts, retryOn: ['connect-failure', 'refused-stream', 'unavailable', 'cancelled', 'retriable-status-codes'], retriableStatusCodes: [503], backoffBaseMs: 25 };
}

export class RetryPolicy {
  private readonly on: Set<string>;
  private readonly codes: Set<number>;
  private readonly grpc: Set<string>;
  readonly maxRetries: number;
  readonly perTryTimeoutMs?: number;
  readonly backoffBaseMs: number;

  constructor(r: CompiledRetry | undefined) {
    this.maxRetries = r?.attempts ?? 0;
    this.on = new Set(r?.retryOn ?? []);
    this.codes = new Set(r?.retriableStatusCodes ?? []);
    this.grpc = new Set([...this.on].map((x) => GRPC_CODES[x]).filter((x): x is string => x !== undefined));
    this.perTryTimeoutMs = r?.perTryTimeoutMs || undefined;
    this.backoffBaseMs = r?.backoffBaseMs ?? 25;
  }

  /** A failure before any response. */
  retriesFailure(kind: AttemptFailure): boolean {
    const on = this.on;
    switch (kind) {
      case 'connect': return on.has('connect-failure') || on.has('5xx') || on.has('gateway-error') || on.has('reset');
      case 'refused-stream': return on.has('refused-stream') || on.has('5xx') || on.has('reset');
      case 'reset': return on.has('reset') || on.has('5xx');
      case 'per-try-timeout': return on.has('5xx') || on.has('gateway-error') || on.has('reset');
      default: return false;
    }
  }

  /** A response (its status, and the gRPC status in its headers). */
  retriesResponse(status: number, grpcStatus: string | undefined): boolean {
    const on = this.on;
    if (on.has('5xx') && status >= 500) return true;
    if (on.has('gateway-error') && (status === 502 || status === 503 || status === 504)) return true;
    if (on.has('retriable-4xx') && status === 409) return true;
    if (on.has('retriable-status-codes') && this.codes.has(status)) return true;
    return grpcStatus !== undefined && this.grpc.has(grpcStatus);
  }

  /** Wait before retry number n (1-based): full jitter over base × 2^(n-1), at most 10 × base. */
  backoffMs(n: number): number {
    const ceiling = Math.min(this.backoffBaseMs * 2 ** Math.max(0, n - 1), this.backoffBaseMs * 10);
    return Math.random() * ceiling;
  }
}
