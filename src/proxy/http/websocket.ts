// Upgrade (WebSocket and other HTTP/1.1 upgrades) passed through: the
// request is routed like any other, its head re-sent to the chosen endpoint
// over a plain connection, and from then on both sides are relayed as
// bytes; the 101 (or whatever the endpoint answers) travels back untouched.
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import type { Conn, ProxyDeps, Tracked } from '../context.js';
import { connectUpstream, relay } from '../relay.js';
import { encodePeer, PEER_HEADER } from '../telemetry/workload.js';
import { PROTOCOL_HEADER } from './headers.js';
import { RequestTelemetry } from './request-telemetry.js';
import { planCompiled } from './compiled-plan.js';
import { decideRoute } from './route.js';
import type { LeastRequest } from '../lb.js';

export async function passUpgrade(d: ProxyDeps, lb: LeastRequest, open: Set<Tracked>, conn: Conn, req: IncomingMessage, down: Duplex, head: Buffer): Promise<void> {
  const authority = req.headers.host;
  const tel = new RequestTelemetry(d, conn, { method: req.method ?? 'GET', path: req.url ?? '/', protocol: `HTTP/${req.httpVersion}`, authority, headers: req.headers, grpc: false });
  // Compiled VirtualService routes apply to upgrades too (the route's cluster, subset and balancer; its rewrite of the path).
  const compiled = conn.direction === 'outbound'
    ? planCompiled(d, d.clusters, conn, { method: req.method ?? 'GET', path: req.url ?? '/', authority, headers: req.headers, grpc: false }, () => true)
    : { kind: 'none' as const };
  if (compiled.kind === 'answer') {
    const a = compiled.answer;
    tel.code = a.status; tel.flags = a.flags; tel.routeName = a.routeName;
    const extra = Object.entries(a.headers ?? {}).map(([k, v]) => `${k}: ${v}\r\n`).join('');
    down.end(`HTTP/1.1 ${a.status} ${a.status < 400 ? 'OK' : 'Error'}\r\n${extra}content-length: ${Buffer.byteLength(a.text)}\r\nconnection: close\r\n\r\n${a.text}`);
    tel.finish();
    return;
  }
  const plan = compiled.kind === 'forward' ? compiled.plan : undefined;
  const route = plan?.decision ?? decideRoute(d, conn, authority, 'h1', false, undefined, () => true);
  tel.route(route);
  const rt = plan?.runtime;
  if (route.kind === 'passthrough' && !rt && d.compiled.outboundTrafficPolicy === 'REGISTRY_ONLY') {
    tel.flags = 'NR'; tel.code = 502; tel.cluster = 'BlackHoleCluster';
    down.end('HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
    tel.finish();
    return;
  }
  const t = rt && route.kind !== 'passthrough' ? rt.balancer.pick(rt.targets(d.routes()), new Set(), plan.hashKey) : lb.pick(route.targets, new Set());
  if (!t) { tel.flags = 'UH'; tel.code = 503; down.end('HTTP/1.1 503 Service Unavailable\r\ncontent-length: 19\r\nconnection: close\r\n\r\nno healthy upstream'); tel.finish(); return; }
  tel.target(t);
  let up: Socket;
  try {
    up = await connectUpstream({ ip: t.ip, port: t.port, timeoutMs: d.config.connectTimeoutMs, localAddress: route.localAddress });
  } catch (err) {
    tel.flags = 'UF'; tel.code = 503; tel.transportFailure = String(err);
    down.end('HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
    tel.finish();
    return;
  }
  const lines = [`${req.method} ${plan?.path ?? req.url} HTTP/1.1`];
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const k = req.rawHeaders[i].toLowerCase();
    if (k === PEER_HEADER || k === PROTOCOL_HEADER) continue;
    lines.push(k === 'host' && plan ? `Host: ${plan.authority}` : `${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
  }
  if (route.meshPeer) lines.push(`${PEER_HEADER}: ${encodePeer(d.identity())}`);
  up.write(lines.join('\r\n') + '\r\n\r\n');
  if (head.length > 0) up.write(head);
  up.once('data', (c: Buffer) => { tel.code = Number(/^HTTP\/1\.[01] (\d{3})/.exec(c.toString('latin1', 0, 16))?.[1] ?? 0); });
  const release = rt ? rt.balancer.acquire(t) : lb.acquire(t);
  const handle = relay(down as Socket, up, d.config.idleTimeoutMs);
  const tracked: Tracked = { abort: () => handle.abort() };
  open.add(tracked);
  const result = await handle.done;
  open.delete(tracked);
  release();
  tel.requestBodyBytes = result.sent;
  tel.responseBodyBytes = result.received;
  if (result.flags !== '-') tel.flags = result.flags;
  tel.finish();
}
