// SPIFFE identities on TLS connections: parse, compare, and verify what a
// peer certificate says. Mesh peers are verified against the mesh roots by
// node:tls; this module then checks WHO the verified peer is (its URI SAN),
// which node:tls's hostname check cannot do.
import type { PeerCertificate } from 'node:tls';

export interface SpiffeId { trustDomain: string; namespace: string; serviceAccount: string; uri: string }

const SPIFFE = /^spiffe:\/\/([a-z0-9._-]+)\/ns\/([a-z0-9]([-a-z0-9]*[a-z0-9])?)\/sa\/([a-z0-9]([-a-z0-9.]*[a-z0-9])?)$/;

export function parseSpiffeId(uri: string): SpiffeId | undefined {
  const m = SPIFFE.exec(uri);
  return m ? { trustDomain: m[1], namespace: m[2], serviceAccount: m[4], uri } : undefined;
}

/** Istio's principal form (no scheme): cluster.local/ns/default/sa/sleep. */
export function principalOf(id: SpiffeId): string {
  return id.uri.slice('spiffe://'.length);
}

/** URI SANs of a peer certificate as node:tls reports them ("URI:spiffe://…, DNS:…"). */
export function uriSans(cert: PeerCertificate | undefined): string[] {
  const alt = cert?.subjectaltname ?? '';
  return alt.split(/,\s*/).filter((s) => s.startsWith('URI:')).map((s) => s.slice(4));
}

/**
 * The peer's SPIFFE identity, or why it has none. A workload certificate
 * carries exactly one SPIFFE URI (the SPIFFE X.509-SVID rule); two would make
 * "who is this" ambiguous, so that is refused too.
 */
export function peerSpiffeId(cert: PeerCertificate | undefined): SpiffeId | Error {
  if (!cert || Object.keys(cert).length === 0) return new Error('peer presented no certificate');
  return spiffeIdFromUris(uriSans(cert));
}

/** The same rule from a certificate's URI SANs (as the native TLS relay reports them). */
export function spiffeIdFromUris(uris: string[]): SpiffeId | Error {
  const ids = uris.filter((u) => u.startsWith('spiffe://'));
  if (ids.length !== 1) return new Error(`peer certificate has ${ids.length} SPIFFE IDs (need exactly one)`);
  return parseSpiffeId(ids[0]) ?? new Error(`peer SPIFFE ID ${JSON.stringify(ids[0])} is not spiffe://<td>/ns/<ns>/sa/<sa>`);
}

/** A node:tls checkServerIdentity that accepts a server only if it is one of `expected` (SPIFFE URIs). */
export function expectSpiffe(expected: string[]): (host: string, cert: PeerCertificate) => Error | undefined {
  return (_host, cert) => {
    const id = peerSpiffeId(cert);
    if (id instanceof Error) return id;
    return expected.includes(id.uri) ? undefined : new Error(`server is ${id.uri}, expected ${expected.join(' or ')}`);
  };
}
