// CNI specification facts the plugin depends on: versions, well-known error
// codes, the error type, and the result shapes weir reads (never rewrites).
// Kept small: it is part of the plugin's import graph (the CIDR parser is
// the one the redirect plan uses, so a prevResult address weir accepts is
// one every renderer accepts too).
import { parseCidr } from '../redirect/addr.js';

/** Versions weir-cni accepts in a conf and answers in. 0.1.0/0.2.0 results have no `ips` list; weir does not speak them. */
export const SUPPORTED_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;
export type CniVersion = (typeof SUPPORTED_VERSIONS)[number];
export const LATEST_VERSION: CniVersion = '1.1.0';

/**
 * The one size limit for CNI input (the network configuration on stdin),
 * end to end: the C relay (cni/relay/weir-cni.c, MAX_STDIN), the Node
 * plugin and the agent's /v1/cni/exec all refuse more than this with code
 * 4 naming the limit. Large conflists (many plugins, big prevResults) stay
 * far below it; it bounds what one runtime call can make the agent buffer.
 */
export const MAX_CNI_INPUT_BYTES = 8 * 1024 * 1024;

/** The error every path returns for input over MAX_CNI_INPUT_BYTES (same text as the relay's). */
export function inputTooLarge(bytes: number | string): CniError {
  return new CniError(CniCode.invalidEnv, `stdin: network configuration larger than the CNI input limit of ${MAX_CNI_INPUT_BYTES} bytes (8 MiB)`, `received ${bytes} bytes`);
}

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
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
      throw new CniError(CniCode.invalidEnv, `${field}.ips[${i}]: must be an object with an address`, JSON.stringify(entry));
    }
    const address = (entry as { address?: unknown }).address;
    // Strict: the plan's own parser, with a prefix required (the spec's CIDR
    // notation). What passes is an address every renderer accepts, so a bad
    // value never reaches the kernel or the sandbox record.
    if (typeof address !== 'string' || !address.includes('/') || !parseCidr(address)) {
      throw new CniError(CniCode.invalidEnv, `${field}.ips[${i}].address: expected an IPv4 or IPv6 address in CIDR notation (a.b.c.d/n or x:y::z/n)`, JSON.stringify(address));
    }
    return address.slice(0, address.indexOf('/'));
  });
}
