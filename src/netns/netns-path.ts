// What people and runtimes call a network namespace, turned into the path
// the addon opens. CNI runtimes pass paths (/var/run/netns/cni-…), people
// at a shell think in `ip netns` names or PIDs; all three are accepted, and
// anything else is an error naming the field instead of an ENOENT later.
import { statSync } from 'node:fs';
import path from 'node:path';
import { FieldError } from '../common/errors.js';

const NETNS_DIR = '/run/netns';

/**
 * `/abs/path` → itself (normalised); `1234` → `/proc/1234/ns/net`;
 * `name` → `/run/netns/name` (as `ip netns add name` creates it).
 */
export function resolveNetnsPath(spec: string, field = 'netns'): string {
  const value = spec.trim();
  if (value === '') throw new FieldError(field, 'empty; expected a netns path, a PID or an `ip netns` name');
  if (value.startsWith('/')) return path.normalize(value);
  if (/^[0-9]+$/.test(value)) {
    // All digits means a PID (an `ip netns` name that is a number would be ambiguous).
    if (!/^[1-9][0-9]*$/.test(value)) throw new FieldError(field, 'not a valid PID', spec);
    return `/proc/${value}/ns/net`;
  }
  if (/^[A-Za-z0-9_][A-Za-z0-9_.-]*$/.test(value)) return path.join(NETNS_DIR, value);
  throw new FieldError(field, 'expected an absolute netns path, a PID or an `ip netns` name', spec);
}

/**
 * Whether the resolved path exists now. (Whether it is a *network*
 * namespace only the kernel can say: the addon checks that when it enters,
 * with an ENOTNETNS error naming the path.)
 */
export function netnsExists(netnsPath: string): boolean {
  try {
    statSync(netnsPath);
    return true;
  } catch {
    return false;
  }
}
