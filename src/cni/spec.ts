// CNI specification facts the plugin depends on: versions, well-known error
// codes, the error type, and the result shapes weir reads (never rewrites).
// Kept dependency-free: it is part of the plugin's tiny import graph.

/** Versions weir-cni accepts in a conf and answers in. 0.1.0/0.2.0 results have no `ips` list; weir does not speak them. */
export const SUPPORTED_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;
export type CniVersion = (typeof SUPPORTED_VERSIONS)[number];
export const LATEST_VERSION: CniVersion = '1.1.0';

/** Well-known error codes (CNI spec, "Error" section). 100+ are plugin-specific. */
export const CniCode = {
  incompatibleVersion: 1,
  unsupportedField: 2,
  containerUnknown: 3,
  invalidEnv: 4,
  ioFailure: 5,
  decodeFailure: 6,
  invalidConfig: 7,
  tryAgainLater: 11,
  /** STATUS: the plugin cannot serve ADD now. */
  notAvailable: 50,
  /** STATUS: not available, and existing sandboxes may be degraded. */
  notAvailableDegraded: 51,
  /** weir: CHECK found the netns rules differ from what was programmed. */
  captureDrift: 100,
} as const;

export class CniError extends Error {
  readonly code: number;
  readonly details?: string;
  constructor(code: number, msg: string, details?: string) {
    super(msg);
    this.name = 'CniError';
    this.code = code;
    this.details = details;
  }
}

export function isSupportedVersion(v: unknown): v is CniVersion {
  return typeof v === 'string' && (SUPPORTED_VERSIONS as readonly string[]).includes(v);
}

/** Versions whose commands include CHECK (0.4.0+) and STATUS/GC (1.1.0). */
export function versionAtLeast(v: string, min: string): boolean {
  const a = v.split('.').map(Number);
  const b = min.split('.').map(Number);
  for (let i = 0; i < 3; i++) {
    if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) > (b[i] ?? 0);
  }
  return true;
}

/** The spec's error object, printed on stdout with a non-zero exit. */
export function errorJson(version: string, err: CniError): string {
  const body: Record<string, unknown> = { cniVersion: version, code: err.code, msg: err.message };
  if (err.details) body.details = err.details;
  return JSON.stringify(body);
}

/**
 * Pod addresses from a 0.3.0+ result (`ips[].address` is CIDR notation).
 * Other plugins' results are only read here, never re-serialised.
 */
export function resultIps(prevResult: unknown, field = 'prevResult'): string[] {
  if (prevResult === undefined || prevResult === null) return [];
  if (typeof prevResult !== 'object' || Array.isArray(prevResult)) {
    throw new CniError(CniCode.invalidConfig, `${field}: must be an object`);
  }
  const ips = (prevResult as { ips?: unknown }).ips;
  if (ips === undefined) return [];
  if (!Array.isArray(ips)) throw new CniError(CniCode.invalidConfig, `${field}.ips: must be a list`);
  return ips.map((entry, i) => {
    const address = (entry as { address?: unknown } | null)?.address;
    if (typeof address !== 'string' || !/^[0-9a-fA-F:.]+\/\d{1,3}$/.test(address)) {
      throw new CniError(CniCode.invalidConfig, `${field}.ips[${i}].address: expected an address in CIDR notation`, JSON.stringify(address));
    }
    return address.slice(0, address.indexOf('/'));
  });
}
