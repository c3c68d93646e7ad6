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
import type { NativeMeshTls } from './native-tls.js';
import { asSocket, nativeTlsOf } from './native-socket.js';

export type MeshProtocol = 'tcp' | 'h1' | 'h2';

export interface OutboundDeps { identity: MeshIdentity; trustDomain: string; required: boolean; handshakeTimeoutMs: number; native?: NativeMeshTls }

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

/** `native`: the caller can relay a native TLS side (opaque TCP whose upstream need not be read first). */
export async function upgradeOutbound(o: OutboundDeps, up: Socket, ep: RegistryEndpoint | undefined, proto: MeshProtocol, native = false): Promise<Socket> {
  const opts = meshTlsOptions(o, ep, proto);
  if (!opts || !ep) {
    if (!wantsMtls(ep) || !o.required) return up;
    up.destroy();
    throw new ConnectError('ENOCERT', 'mesh destination but no workload certificate yet (--mtls required)');
  }
  const wi = o.identity.current();
  if (native && o.native && proto === 'tcp' && wi) {
    const t = await o.native.connect(wi, up, expectedServer(o.trustDomain, ep)).catch((e: Error) => e);
    if (t instanceof Error) { if (!up.destroyed) up.destroy(); throw new ConnectError('ETLS', `mTLS to ${ep.ip}: ${t.message}`); }
    return asSocket(t);
  }
  const sock: TLSSocket = tlsConnect({ ...opts, socket: up });
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => { sock.destroy(); reject(new ConnectError('ETLSTIMEOUT', `mTLS handshake with ${ep.ip} timed out`)); }, o.handshakeTimeoutMs);
    sock.once('secureConnect', () => { clearTimeout(t); resolve(); });
    sock.once('error', (e: NodeJS.ErrnoException) => { clearTimeout(t); sock.destroy(); reject(new ConnectError('ETLS', `mTLS to ${ep.ip}: ${e.message}`)); });
  });
  sock.removeAllListeners('error');
  return sock as unknown as Socket;
}

/** The server's SPIFFE URI on an upgraded socket, for destination_principal. */
export function serverPrincipal(s: Socket): string | undefined {
  const n = nativeTlsOf(s);
  if (n) return n.peer;
  const t = s as Partial<TLSSocket>;
  if (typeof t.getPeerCertificate !== 'function' || !t.encrypted) return undefined;
  const id = peerSpiffeId(t.getPeerCertificate());
  return id instanceof Error ? undefined : id.uri;
}
