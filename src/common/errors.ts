// Errors that name the input field a person has to fix.
export class FieldError extends Error {
  /** e.g. "traffic.sidecar.istio.io/excludeOutboundIPRanges" or "stdin.prevResult.ips[0]" */
  readonly field: string;
  /** the offending token, if one can be isolated */
  readonly token?: string;
  /** what is wrong, without the field (for callers that name the field their own way) */
  readonly reason: string;
  constructor(field: string, message: string, token?: string) {
    super(token !== undefined ? `${field}: ${message} (bad value: ${JSON.stringify(token)})` : `${field}: ${message}`);
    this.name = 'FieldError';
    this.field = field;
    this.token = token;
    this.reason = message;
  }
}
