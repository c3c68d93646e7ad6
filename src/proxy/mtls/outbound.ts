// Outbound auto mTLS: the endpoint-dial step of the TCP chain and the HTTP
// pools is wrapped, not rewritten. When the chosen endpoint runs a mesh
// proxy (RegistryEndpoint.tlsMode === 'istio') and this proxy holds a
// workload certificate, the connected socket is upgraded to TLS 1.3 with
// Istio's ALPN for the protocol; the server must chain to the mesh root and
// be the endpoint's service account (its SPIFFE ID), else the connection
// fails like a connect failure. Without a certificate: plaintext (the peer
// is PERMISSIVE by default), unless --mtls required.
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import type { Socket } from 'node:net';
import type { RegistryEndpoint } from '../../controlplane/types.js';
import { peerSpiffeId } from '../../mtls/spiffe.js';
import { ConnectError } from '../relay.js';
import { MESH_ALPN_H1, MESH_ALPN_H2, MESH_ALPN_TCP } from './client-hello.js';
import type { MeshIdentity } from './mesh-identity.js';
import { tlsPlan, type ClusterTlsRef } from './cluster-tls.js';

export type MeshProtocol = 'tcp' | 'h1' | 'h2';

export interface OutboundDeps { identity: MeshIdentity; trustDomain: string; required: boolean; handshakeTimeoutMs: number }

export function wantsMtls(ep: Pick<RegistryEndpoint, 'tlsMode'> | undefined): boolean {
  return ep?.tlsMode === 'istio';
}

/** The SPIFFE IDs the server may present: the endpoint's service account (any mesh identity when the registry does not say). */
export function expectedServer(td: string, ep: Pick<RegistryEndpoint, 'serviceAccount' | 'podNamespace'>): string[] | undefined {
  return ep.serviceAccount && ep.podNamespace ? [`spiffe://${td}/ns/${ep.podNamespace}/sa/${ep.serviceAccount}`] : undefined;
}

/** TLS client options for a mesh endpoint, or undefined when it gets plaintext (not a mesh pod, or no certificate yet). */
export function meshTlsOptions(o: OutboundDeps, ep: RegistryEndpoint | undefined, proto: MeshProtocol): ConnectionOptions | undefined {
  if (!ep || !wantsMtls(ep)) return undefined;
  const wi = o.identity.current();
  if (!wi) return undefined;
  const expected = expectedServer(o.trustDomain, ep);
  const alpn = proto === 'h2' ? MESH_ALPN_H2 : proto === 'h1' ? MESH_ALPN_H1 : MESH_ALPN_TCP;
  const base = wi.clientOptions(expected ?? [], alpn);
  return {
    ...base,
    checkServerIdentity: expected ? base.checkServerIdentity : (_h, cert) => {
      const id = peerSpiffeId(cert);
      if (id instanceof Error) return id;
      return id.trustDomain === o.trustDomain ? undefined : new Error(`server trust domain ${id.trustDomain} is not ${o.trustDomain}`);
    },
  };
}

/** The dialled socket, upgraded as the cluster's DestinationRule tls (cluster-tls.ts) or auto mTLS says. */
export async function upgradeOutbound(o: OutboundDeps, up: Socket, ep: RegistryEndpoint | undefined, proto: MeshProtocol, cluster?: ClusterTlsRef): Promise<Socket> {
  const plan = tlsPlan(o, cluster, ep, proto);
  if (plan.kind === 'plain') return up;
  if (plan.kind === 'fail') {
    up.destroy();
    throw new ConnectError(plan.code, plan.reason);
  }
  const peer = ep?.ip ?? up.remoteAddress ?? '?';
  const sock: TLSSocket = tlsConnect({ ...plan.options, socket: up });
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => { sock.destroy(); reject(new ConnectError('ETLSTIMEOUT', `${plan.what} handshake with ${peer} timed out`)); }, o.handshakeTimeoutMs);
    sock.once('secureConnect', () => { clearTimeout(t); resolve(); });
    sock.once('error', (e: NodeJS.ErrnoException) => { clearTimeout(t); sock.destroy(); reject(new ConnectError('ETLS', `${plan.what} to ${peer}: ${e.message}`)); });
  });
  sock.removeAllListeners('error');
  return sock as unknown as Socket;
}

/** The server's SPIFFE URI on an upgraded socket, for destination_principal. */
export function serverPrincipal(s: Socket): string | undefined {
  const t = s as Partial<TLSSocket>;
  if (typeof t.getPeerCertificate !== 'function' || !t.encrypted) return undefined;
  const id = peerSpiffeId(t.getPeerCertificate());
  return id instanceof Error ? undefined : id.uri;
}
