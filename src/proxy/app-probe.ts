// Performs one of the app's original probes (carried in
// ISTIO_KUBE_APP_PROBERS) the way the kubelet would, from 127.0.0.6 so
// the capture rules let it through to the app instead of back into the
// proxy. HTTP(S) success is 200-399 (kubelet's rule; HTTPS unverified, as
// the kubelet does); TCP is a completed connect; gRPC is the standard
// grpc.health.v1 Check answering SERVING.
import * as http from 'node:http';
import * as http2 from 'node:http2';
import * as https from 'node:https';
import * as net from 'node:net';
import type { AppProber } from '../injector/probes.js';

export interface ProbeOutcome { ok: boolean; code: number; detail: string }

export const PROBE_SOURCE_V4 = '127.0.0.6';

/** 127.0.0.6 for IPv4 targets (the rules exempt it on lo); the kernel's choice for IPv6. */
function sourceFor(host: string): string | undefined {
  return net.isIPv4(host) ? PROBE_SOURCE_V4 : undefined;
}

function httpProbe(p: NonNullable<AppProber['httpGet']>, host: string, timeoutMs: number): Promise<ProbeOutcome> {
  const mod = p.scheme === 'HTTPS' ? https : http;
  const headers: Record<string, string> = { 'user-agent': 'kube-probe/weir', accept: '*/*' };
  for (const h of p.httpHeaders ?? []) headers[h.name.toLowerCase()] = h.value;
  return new Promise((resolve) => {
    const req = mod.request({
      host, port: p.port, path: p.path.startsWith('/') ? p.path : `/${p.path}`, method: 'GET', headers,
      localAddress: sourceFor(host), timeout: timeoutMs, rejectUnauthorized: false, agent: false,
    }, (res) => {
      const code = res.statusCode ?? 0;
      res.resume();
      resolve({ ok: code >= 200 && code < 400, code, detail: `${p.scheme} GET ${p.path} → ${code}` });
    });
    req.on('timeout', () => req.destroy(new Error(`timeout after ${timeoutMs} ms`)));
    req.on('error', (err) => resolve({ ok: false, code: 0, detail: `${p.scheme} GET ${host}:${p.port}${p.path}: ${err.message}` }));
    req.end();
  });
}

function tcpProbe(port: number, host: string, timeoutMs: number): Promise<ProbeOutcome> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port, localAddress: sourceFor(host) });
    const t = setTimeout(() => { s.destroy(); resolve({ ok: false, code: 0, detail: `tcp ${host}:${port}: timeout after ${timeoutMs} ms` }); }, timeoutMs);
    s.once('connect', () => { clearTimeout(t); s.destroy(); resolve({ ok: true, code: 200, detail: `tcp ${host}:${port} connected` }); });
    s.once('error', (err) => { clearTimeout(t); resolve({ ok: false, code: 0, detail: `tcp ${host}:${port}: ${err.message}` }); });
  });
}

// grpc.health.v1.HealthCheckRequest { string service = 1; } in protobuf wire format, in a gRPC frame.
function healthRequest(service: string): Buffer {
  const s = Buffer.from(service, 'utf8');
  if (s.length > 127) throw new Error('grpc service name longer than 127 bytes');
  const msg = s.length ? Buffer.concat([Buffer.from([0x0a, s.length]), s]) : Buffer.alloc(0);
  const frame = Buffer.alloc(5);
  frame.writeUInt32BE(msg.length, 1);
  return Buffer.concat([frame, msg]);
}

/** HealthCheckResponse.status (field 1, varint) from a gRPC frame; UNKNOWN (0) when absent. */
export function healthStatus(body: Buffer): number {
  if (body.length < 5) return -1;
  const len = body.readUInt32BE(1);
  const msg = body.subarray(5, 5 + len);
  for (let i = 0; i < msg.length;) {
    const tag = msg[i++];
    if (tag === 0x08) return msg[i] ?? 0;
    // Skip an unknown field: varint or length-delimited are all this message may hold.
    if ((tag & 7) === 0) { while (i < msg.length && msg[i++] & 0x80); } else if ((tag & 7) === 2) { i += 1 + (msg[i] ?? 0); } else return -1;
  }
  return 0;
}

const SERVING = 1;

function grpcProbe(p: NonNullable<AppProber['grpc']>, host: string, timeoutMs: number): Promise<ProbeOutcome> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (o: ProbeOutcome) => { if (done) return; done = true; clearTimeout(t); client.close(); client.destroy(); resolve(o); };
    const authority = net.isIPv6(host) ? `[${host}]:${p.port}` : `${host}:${p.port}`;
    const client = http2.connect(`http://${authority}`, { localAddress: sourceFor(host) } as http2.ClientSessionOptions);
    const t = setTimeout(() => finish({ ok: false, code: 0, detail: `grpc ${authority}: timeout after ${timeoutMs} ms` }), timeoutMs);
    client.on('error', (err) => finish({ ok: false, code: 0, detail: `grpc ${authority}: ${err.message}` }));
    const req = client.request({ ':method': 'POST', ':path': '/grpc.health.v1.Health/Check', 'content-type': 'application/grpc', te: 'trailers' });
    const chunks: Buffer[] = [];
    let grpcStatus: string | undefined;
    req.on('response', (h) => { if (h['grpc-status'] !== undefined) grpcStatus = String(h['grpc-status']); });
    req.on('trailers', (h) => { grpcStatus = String(h['grpc-status'] ?? grpcStatus); });
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', (err) => finish({ ok: false, code: 0, detail: `grpc ${authority}: ${err.message}` }));
    req.on('end', () => {
      if (grpcStatus !== '0') { finish({ ok: false, code: 0, detail: `grpc health ${p.service ?? ''}: grpc-status ${grpcStatus}` }); return; }
      const st = healthStatus(Buffer.concat(chunks));
      finish({ ok: st === SERVING, code: st === SERVING ? 200 : 0, detail: `grpc health ${p.service ?? ''}: status ${st}` });
    });
    try { req.end(healthRequest(p.service ?? '')); } catch (err) { finish({ ok: false, code: 0, detail: (err as Error).message }); }
  });
}

/** Run one prober against the app at `podIP` (or the probe's own host). */
export function runAppProbe(p: AppProber, podIP: string): Promise<ProbeOutcome> {
  const timeoutMs = Math.round(p.timeoutSeconds * 1000);
  if (p.httpGet) return httpProbe(p.httpGet, p.httpGet.host || podIP, timeoutMs);
  if (p.tcpSocket) return tcpProbe(p.tcpSocket.port, p.tcpSocket.host || podIP, timeoutMs);
  if (p.grpc) return grpcProbe(p.grpc, podIP, timeoutMs);
  return Promise.resolve({ ok: false, code: 0, detail: 'prober has no action' });
}
