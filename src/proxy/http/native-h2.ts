// Which h2c connections the native HTTP path's HTTP/2 codec (native/src/h2)
// takes, on top of native-h1.ts's per-connection rules (mTLS, access log,
// span export, TPROXY, default-only routes): those whose upstream speaks
// h2 for every request they can carry, because the codec's upstream is an
// h2c session (what gRPC needs for its trailers). Inbound: the app's port
// declares http2/grpc. Outbound: the dialled service port declares
// http2/grpc — its endpoints are weir peers (h2c between proxies) or apps
// that speak h2. Sniffed h2c on an http or undeclared port could reach an
// HTTP/1.1-only app: it stays on the JS chain, which falls back to
// HTTP/1.1 for such an endpoint.
import type { Conn, ProxyDeps } from '../context.js';
import { declaredProtocol, upstreamIsH2 } from '../protocol/declared.js';

/**
 * Whether node's own nghttp2 (whose symbols the addon's HTTP/2 codec uses) is at least the version of the header
 * the addon was built with (Debian's libnghttp2-dev): an older one could lack what the codec calls.
 */
export function h2CodecUsable(header: string | undefined, runtime = process.versions.nghttp2): boolean {
  if (!header || !runtime) return false;
  const v = (s: string) => s.split('.').map((x) => Number.parseInt(x, 10) || 0);
  const [a, b] = [v(runtime), v(header)];
  for (let i = 0; i < 3; i++) if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) > (b[i] ?? 0);
  return true;
}

export function h2UpstreamDeclared(d: ProxyDeps, conn: Conn): boolean {
  const routes = d.routes();
  const port = conn.direction === 'inbound' ? routes.inboundPort(conn.dst.ip, conn.dst.port) : routes.lookup(conn.dst.ip, conn.dst.port)?.servicePort;
  return upstreamIsH2(declaredProtocol(port));
}
