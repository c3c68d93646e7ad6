// The floor a Node HTTP proxy cannot go below: the smallest proxy with
// weir's HTTP chain shape — node:http / node:http2 servers, keep-alive
// HTTP/1.1 agent and one multiplexed h2 session upstream, hop-by-hop
// headers dropped — and nothing else (no routing, retries, telemetry,
// tracing). bench/profile-http.ts runs it in both pods in place of weir
// (FLOOR=1), so what weir spends above it is weir's own.
// argv: role (out = 15001 | in = 15006), downstream protocol (h1|h2),
// upstream protocol (h1|h2), upstream host, port, local address ('' = any).
export const NODE_FLOOR_PROXY = `
const http = require('node:http');
const http2 = require('node:http2');
const [role, down, up, host, port, local] = process.argv.slice(1);
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'http2-settings', 'te', 'host']);
const forward = (h) => { const o = {}; for (const k in h) if (k.charCodeAt(0) !== 58 && !HOP.has(k)) o[k] = h[k]; return o; };
const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity, scheduling: 'lifo' });
let session;
const h2 = () => {
  if (!session) {
    session = http2.connect('http://' + host + ':' + port, { localAddress: local || undefined, settings: { initialWindowSize: 1 << 20 } });
    const s = session;
    s.on('error', () => {});
    s.on('close', () => { if (session === s) session = undefined; });
  }
  return session;
};
function handle(req, res) {
  const headers = forward(req.headers);
  const authority = req.headers[':authority'] || req.headers.host;
  if (up === 'h1') {
    const r = http.request({ host, port, method: req.method, path: req.url, headers: Object.assign(headers, { host: authority }), setHost: false, agent, localAddress: local || undefined });
    r.on('response', (u) => { res.writeHead(u.statusCode, forward(u.headers)); u.pipe(res); });
    r.on('error', () => res.destroy());
    req.pipe(r);
  } else {
    const s = h2().request(Object.assign(headers, { ':method': req.method, ':path': req.url, ':authority': authority }));
    s.on('response', (h) => { res.writeHead(h[':status'], forward(h)); s.pipe(res); });
    s.on('error', () => res.destroy());
    req.pipe(s);
  }
}
const server = down === 'h2' ? http2.createServer(handle) : http.createServer({ keepAliveTimeout: 60000 }, handle);
server.listen(role === 'out' ? 15001 : 15006, () => console.log('floor proxy ready'));
// A normal exit, so that --cpu-prof writes its profile.
process.on('SIGTERM', () => process.exit(0));
`;
