// A RegistryView over a fixed snapshot, and the JSON form of a snapshot
// (services as an array). Used by the standalone runner, tests and benchmarks.
import { EventEmitter } from 'node:events';
import type { Registry, RegistryService, RegistryView } from '../controlplane/types.js';
import { FieldError } from '../common/errors.js';
import { isIP } from 'node:net';

const KINDS: RegistryService['kind'][] = ['ClusterIP', 'Headless', 'ExternalName', 'NodePort', 'LoadBalancer'];

export function registryFromJson(text: string, source: string): Registry {
  let raw: { version?: unknown; clusterDomain?: unknown; services?: unknown };
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new FieldError(source, `not JSON: ${(err as Error).message}`);
  }
  if (typeof raw.clusterDomain !== 'string' || raw.clusterDomain === '') throw new FieldError(`${source}.clusterDomain`, 'expected a domain such as cluster.local');
  if (!Array.isArray(raw.services)) throw new FieldError(`${source}.services`, 'expected an array of services');
  const services = new Map<string, RegistryService>();
  raw.services.forEach((s: RegistryService, i: number) => {
    const at = `${source}.services[${i}]`;
    if (typeof s?.namespace !== 'string' || typeof s?.name !== 'string') throw new FieldError(at, 'namespace and name are required');
    if (!KINDS.includes(s.kind)) throw new FieldError(`${at}.kind`, `expected one of ${KINDS.join(', ')}`, String(s.kind));
    if (s.clusterIPs !== undefined && (!Array.isArray(s.clusterIPs) || s.clusterIPs.some((ip) => isIP(ip) === 0))) {
      throw new FieldError(`${at}.clusterIPs`, 'expected an array of IP addresses', JSON.stringify(s.clusterIPs));
    }
    (s.endpoints ?? []).forEach((ep, j) => {
      if (isIP(ep?.ip) === 0) throw new FieldError(`${at}.endpoints[${j}].ip`, 'expected an IP address', String(ep?.ip));
    });
    if (s.kind === 'ExternalName' && typeof s.externalName !== 'string') throw new FieldError(`${at}.externalName`, 'required for kind ExternalName');
    services.set(`${s.namespace}/${s.name}`, {
      ...s,
      clusterIPs: s.clusterIPs ?? [],
      ports: s.ports ?? [],
      endpoints: s.endpoints ?? [],
    });
  });
  return { version: typeof raw.version === 'number' ? raw.version : 1, clusterDomain: raw.clusterDomain, services };
}

export function staticRegistryView(registry: Registry | undefined): RegistryView {
  const events = new EventEmitter();
  return { current: () => registry, on: (event, listener) => events.on(event, listener) };
}

