// The HTTP proxies bench/proxy-http.ts compares with weir, configured as a
// sidecar pair would be: the client pod's proxy takes what capture sends to
// 15001 and forwards it to the server pod, whose proxy takes it on 15006 and
// hands it to the app on loopback from 127.0.0.6 (the address the capture
// rules let through). Static configs: one per protocol, since a capture port
// receives every protocol and neither proxy can serve HTTP/1.1 and h2c on one
// port the way weir's protocol detection does (HAProxy detects the h2
// preface but its upstream protocol is per server line; nginx 1.22 serves a
// cleartext port as either HTTP/1.1 or h2, never both).
export type Protocol = 'h1' | 'h2' | 'grpc';

/** App ports in the server pod: one per protocol (nginx serves h1 and h2c, grpc-js serves gRPC). */
export const APP_PORT: Record<Protocol, number> = { h1: 9000, h2: 9001, grpc: 9002 };

/** HAProxy 2.6, mode http, one thread; both hops speak the client's protocol. */
export function haproxyHttp(protocol: Protocol, upstream: string, inbound: boolean): string {
  const port = APP_PORT[protocol];
  const h2 = protocol === 'h1' ? '' : ' proto h2';
  const server = inbound ? `server app 127.0.0.1:${port} source 127.0.0.6${h2}` : `server s1 ${upstream}:${port}${h2}`;
  return `global
  maxconn 9000
  nbthread 1
defaults
  mode http
  timeout connect 5s
  timeout client 1h
  timeout server 1h
  http-reuse always
frontend in
  bind :::${inbound ? 15006 : 15001} v4v6
  default_backend out
backend out
  ${server}
`;
}

/**
 * nginx 1.22 (Debian), one worker; keepalive_requests raised on every
 * listener (its default, 1000, closes a client's connection — h2 included —
 * after 1000 requests, which h2load counts as failures). HTTP/1.1: keep-alive upstream pool.
 * HTTP/2: h2 from the client, but HTTP/1.1 between the hops and to the app
 * (nginx's proxy_pass cannot speak h2 upstream; its grpc_pass can, but only
 * for gRPC). gRPC: grpc_pass (h2) on every hop.
 */
export function nginxHttp(protocol: Protocol, upstream: string, inbound: boolean): string {
  const listen = inbound ? 15006 : 15001;
  const target = inbound ? '127.0.0.1' : upstream;
  const bind = inbound ? 'proxy_bind 127.0.0.6;' : '';
  if (protocol === 'grpc') {
    return `  upstream up { server ${target}:${APP_PORT.grpc}; keepalive 64; }
  server {
    listen ${listen} http2;
    keepalive_requests 1000000;
    location / { grpc_pass grpc://up; ${inbound ? 'grpc_bind 127.0.0.6;' : ''} }
  }`;
  }
  // h2 downstream only on the client's hop; the hop into the server pod is HTTP/1.1 either way.
  const h2 = protocol === 'h2' && !inbound ? ' http2' : '';
  return `  upstream up { server ${target}:${APP_PORT.h1}; keepalive 64; }
  server {
    listen ${listen}${h2};
    keepalive_requests 1000000;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; ${bind} }
  }`;
}

/** The app's nginx (as root, in the server pod): a tiny fixed answer on the h1 and h2c ports. */
export const APP_NGINX = `  server {
    listen ${APP_PORT.h1};
    listen ${APP_PORT.h2} http2;
    keepalive_requests 1000000;
    location / { return 200 "ok\\n"; }
  }`;

/**
 * The gRPC app: unary echo on node:http2 (gRPC's wire format: length-prefixed
 * messages, content-type application/grpc, grpc-status in trailers). Not
 * grpc-js: on this 2-vCPU VM a grpc-js server saturated below 1000 calls/s by
 * itself, so the app, not the proxies, would have been measured.
 */
export const APP_GRPC = `
const http2 = require('node:http2');
const server = http2.createServer();
server.on('stream', (stream, headers) => {
  if (headers['content-type'] !== 'application/grpc' || headers[':path'] !== '/bench.Echo/Echo') {
    stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '12' }, { endStream: true });
    return;
  }
  const chunks = [];
  stream.on('data', (c) => chunks.push(c));
  stream.on('end', () => {
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
    stream.end(Buffer.concat(chunks));
  });
  stream.on('error', () => {});
});
server.listen(${APP_PORT.grpc}, () => console.log('grpc app ready'));
`;

/** One gRPC request body: a 64-byte message behind gRPC's 5-byte prefix (uncompressed, length). */
export function grpcRequestBody(): Buffer {
  const b = Buffer.alloc(69, 1);
  b[0] = 0;
  b.writeUInt32BE(64, 1);
  return b;
}
