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
 * nginx 1.22 (Debian), one worker. HTTP/1.1: keep-alive upstream pool.
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

/** The gRPC app: grpc-js, one unary method that answers its request bytes. */
export const APP_GRPC = `
const grpc = require('@grpc/grpc-js');
const id = (b) => b;
const def = { echo: { path: '/bench.Echo/Echo', requestStream: false, responseStream: false, requestSerialize: id, requestDeserialize: id, responseSerialize: id, responseDeserialize: id } };
const server = new grpc.Server();
server.addService(def, { echo: (call, cb) => cb(null, call.request) });
server.bindAsync('0.0.0.0:${APP_PORT.grpc}', grpc.ServerCredentials.createInsecure(), (err) => { if (err) throw err; server.start?.(); console.log('grpc app ready'); });
`;

/**
 * The gRPC load generator (grpc-js, one channel = one HTTP/2 connection, as a
 * gRPC client uses it). 'sat': 16 calls in flight for `seconds`; 'fixed':
 * `rate` calls/s paced from a 1 ms timer, each call's latency in µs.
 */
export const GRPC_CLIENT = `
const grpc = require('@grpc/grpc-js');
const [mode, target, seconds, rate] = process.argv.slice(1);
const id = (b) => b;
const Client = grpc.makeGenericClientConstructor({ echo: { path: '/bench.Echo/Echo', requestStream: false, responseStream: false, requestSerialize: id, requestDeserialize: id, responseSerialize: id, responseDeserialize: id } }, 'Echo');
const c = new Client(target, grpc.credentials.createInsecure());
const msg = Buffer.alloc(64, 1);
const now = () => Number(process.hrtime.bigint()) / 1e3;
let ok = 0, failed = 0; const us = [];
c.waitForReady(Date.now() + 10000, (err) => {
  if (err) { console.log(JSON.stringify({ error: String(err) })); process.exit(1); }
  const end = now() + Number(seconds) * 1e6;
  const finish = () => { console.log(JSON.stringify({ ok, failed, rps: ok / Number(seconds), us })); process.exit(0); };
  if (mode === 'sat') {
    let active = 0;
    const one = () => {
      if (now() > end) { if (--active === 0) finish(); return; }
      c.echo(msg, (e) => { if (e) failed++; else ok++; one(); });
    };
    for (let i = 0; i < 16; i++) { active++; one(); }
    return;
  }
  const gap = 1e6 / Number(rate), t0 = now(); let j = 0, inflight = 0, done = false;
  const timer = setInterval(() => {
    const t = now();
    if (t > end) { clearInterval(timer); done = true; if (inflight === 0) finish(); return; }
    while (t0 + j * gap <= t) {
      j++; inflight++; const s = now();
      c.echo(msg, (e) => { inflight--; if (e) failed++; else { ok++; us.push(Math.round(now() - s)); } if (done && inflight === 0) finish(); });
    }
  }, 1);
});
`;
