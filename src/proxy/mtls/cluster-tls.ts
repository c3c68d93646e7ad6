// A cluster's DestinationRule `tls` → what an outbound connection to one
// of its endpoints gets (docs/security.md, "DestinationRule tls"):
//   AUTO (no tls set)  auto mTLS: mesh mTLS when the endpoint runs a mesh proxy
//   DISABLE            plaintext, even to a mesh endpoint
//   ISTIO_MUTUAL       mesh mTLS even to an endpoint without the mesh marker
//                      (subjectAltNames, when set, replace the expected SPIFFE IDs)
//   SIMPLE / MUTUAL    TLS originated to the destination: server verified
//                      against caCertificates (else the system roots) and
//                      sni / subjectAltNames unless insecureSkipVerify; MUTUAL
//                      presents clientCertificate / privateKey. Files are read
//                      in this pod and re-read when they change.
// A cluster that cannot be served (no workload certificate for
// ISTIO_MUTUAL, an unreadable file, MUTUAL without files) fails its
// connections with a reason that names the field, like a connect failure.
import { readFileSync, statSync } from 'node:fs';
import { isIP } from 'node:net';
import { checkServerIdentity, type ConnectionOptions, type PeerCertificate } from 'node:tls';
import type { CompiledCluster } from '../../controlplane/resources.js';
import type { RegistryEndpoint } from '../../controlplane/types.js';
import { meshTlsOptions, wantsMtls, type MeshProtocol, type OutboundDeps } from './outbound.js';

export type ClusterTls = CompiledCluster['tls'];

/** What the chains pass for the cluster they dial (undefined: no compiled cluster, auto mTLS). */
export interface ClusterTlsRef { tls?: ClusterTls; host?: string }

export type TlsPlan =
  | { kind: 'plain' }
  | { kind: 'tls'; options: ConnectionOptions; what: 'mTLS' | 'TLS' }
  | { kind: 'fail'; reason: string; code: 'ENOCERT' | 'ETLSCONFIG' };

const PLAIN: TlsPlan = { kind: 'plain' };
const files = new Map<string, { mtimeMs: number; size: number; data: Buffer }>();

/** A PEM file of the pod, cached until its mtime or size changes (rotated certificates are picked up on the next connection). */
function pem(path: string): Buffer {
  const st = statSync(path);
  const have = files.get(path);
  if (have && have.mtimeMs === st.mtimeMs && have.size === st.size) return have.data;
  const data = readFileSync(path);
  files.set(path, { mtimeMs: st.mtimeMs, size: st.size, data });
  return data;
}

/** The SANs of a certificate (DNS, URI, IP) as Node lists them. */
function sans(cert: PeerCertificate): string[] {
  return (cert.subjectaltname ?? '').split(/,\s*/).map((s) => s.replace(/^(DNS|URI|IP Address):/, '')).filter(Boolean);
}

function sanCheck(allowed: string[]): (host: string, cert: PeerCertificate) => Error | undefined {
  return (_host, cert) => {
    const have = sans(cert);
    return have.some((s) => allowed.includes(s)) ? undefined : new Error(`server certificate SANs [${have.join(', ')}] match none of subjectAltNames [${allowed.join(', ')}]`);
  };
}

function originate(tls: ClusterTls, host: string | undefined, proto: MeshProtocol): TlsPlan {
  const servername = tls.sni ?? (host && !isIP(host) ? host : undefined);
  const o: ConnectionOptions = { servername, minVersion: 'TLSv1.2' };
  if (proto !== 'tcp') o.ALPNProtocols = [proto === 'h2' ? 'h2' : 'http/1.1'];
  const field = (k: 'caCertificates' | 'clientCertificate' | 'privateKey') => {
    try { return pem(tls[k]!); } catch (e) { throw new Error(`DestinationRule tls.${k} ${tls[k]}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`); }
  };
  try {
    if (tls.caCertificates) o.ca = field('caCertificates');
    if (tls.mode === 'MUTUAL') {
      if (!tls.clientCertificate || !tls.privateKey) return { kind: 'fail', code: 'ETLSCONFIG', reason: 'DestinationRule tls mode MUTUAL without clientCertificate/privateKey (credentialName is not supported)' };
      o.cert = field('clientCertificate');
      o.key = field('privateKey');
    }
  } catch (e) {
    return { kind: 'fail', code: 'ETLSCONFIG', reason: (e as Error).message };
  }
  if (tls.insecureSkipVerify) {
    o.rejectUnauthorized = false;
    o.checkServerIdentity = () => undefined;
  } else {
    o.rejectUnauthorized = true;
    const name = servername;
    o.checkServerIdentity = tls.subjectAltNames?.length ? sanCheck(tls.subjectAltNames)
      : (h, cert) => (name ? checkServerIdentity(name, cert) : new Error('no sni and no subjectAltNames to verify the server against (set one, or insecureSkipVerify)'));
  }
  return { kind: 'tls', options: o, what: 'TLS' };
}

export function tlsPlan(o: OutboundDeps, cluster: ClusterTlsRef | undefined, ep: RegistryEndpoint | undefined, proto: MeshProtocol): TlsPlan {
  const tls = cluster?.tls;
  switch (tls?.mode ?? 'AUTO') {
    case 'DISABLE': return PLAIN;
    case 'SIMPLE':
    case 'MUTUAL': return originate(tls!, cluster?.host, proto);
    case 'ISTIO_MUTUAL': {
      const opts = meshTlsOptions(o, { ...(ep ?? { ip: '', ready: true, serving: true, terminating: false, ports: [] }), tlsMode: 'istio' } as RegistryEndpoint, proto);
      if (!opts) return { kind: 'fail', code: 'ENOCERT', reason: 'DestinationRule tls mode ISTIO_MUTUAL but no workload certificate yet' };
      if (tls!.subjectAltNames?.length) opts.checkServerIdentity = sanCheck(tls!.subjectAltNames);
      if (tls!.sni) opts.servername = tls!.sni;
      return { kind: 'tls', options: opts, what: 'mTLS' };
    }
    default: {
      const opts = meshTlsOptions(o, ep, proto);
      if (opts) return { kind: 'tls', options: opts, what: 'mTLS' };
      if (wantsMtls(ep) && o.required) return { kind: 'fail', code: 'ENOCERT', reason: 'mesh destination but no workload certificate yet (--mtls required)' };
      return PLAIN;
    }
  }
}

/**
 * For the HTTP pools, whose sockets are made synchronously: options, or
 * undefined for plaintext. A plan that must fail gets options whose
 * handshake fails with the reason (the request then fails as a connect
 * failure, never silently in plaintext).
 */
export function poolTlsOptions(plan: TlsPlan): ConnectionOptions | undefined {
  if (plan.kind === 'plain') return undefined;
  if (plan.kind === 'tls') return plan.options;
  return { rejectUnauthorized: true, checkServerIdentity: () => new Error(plan.reason) };
}
