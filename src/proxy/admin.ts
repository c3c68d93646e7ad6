// The proxy's HTTP side doors, on Istio's ports: admin (localhost only:
// what the proxy holds and does), readiness for the kubelet, and Prometheus.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';

export interface AdminHandlers {
  configDump(): unknown;
  /** The proxy's log level (`weir proxy-config log`); set when a level is given. */
  logging(level?: string): { level: string };
  clusters(): unknown;
  stats(): unknown;
  ready(): { ready: boolean; reason: string };
  prometheus(): Promise<{ contentType: string; body: string }>;
}

function json(res: ServerResponse, code: number, body: unknown): void {
  // A length, not chunks: the dump is read by small clients (busybox wget, the agent's relay, tests).
  const text = JSON.stringify(body, null, 2) + '\n';
  res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

type Route = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

function serve(host: string, port: number, routes: Record<string, Route>): Promise<Server> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const r = routes[path];
    // Only /logging changes anything (POST ?level=), as Envoy's admin does.
    const method = req.method === 'POST' && path === '/logging' ? 'GET' : req.method;
    if (!r || (method !== 'GET' && method !== 'HEAD')) { json(res, 404, { error: `no ${req.method} ${path}`, paths: Object.keys(routes) }); return; }
    Promise.resolve(r(req, res)).catch((err: unknown) => json(res, 500, { error: String(err) }));
  });
  server.keepAliveTimeout = 5000;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port, ipv6Only: false }, () => { server.off('error', reject); resolve(server); });
  });
}

export async function startAdminServers(ports: { admin: number; ready: number; prometheus: number }, h: AdminHandlers): Promise<Server[]> {
  const readiness: Route = (_req, res) => {
    const r = h.ready();
    res.writeHead(r.ready ? 200 : 503, { 'content-type': 'text/plain' });
    res.end(r.reason + '\n');
  };
  const prom: Route = async (_req, res) => {
    const p = await h.prometheus();
    res.writeHead(200, { 'content-type': p.contentType });
    res.end(p.body);
  };
  return Promise.all([
    // Admin exposes the registry and per-connection state: loopback only.
    serve('127.0.0.1', ports.admin, {
      '/config_dump': (_q, s) => json(s, 200, h.configDump()),
      '/logging': (q, s) => {
        const level = q.method === 'POST' ? new URL(q.url ?? '/', 'http://admin').searchParams.get('level') ?? undefined : undefined;
        try { json(s, 200, h.logging(level)); } catch (e) { json(s, 400, { error: (e as Error).message }); }
      },
      '/clusters': (_q, s) => json(s, 200, h.clusters()),
      '/endpoints': (_q, s) => json(s, 200, h.clusters()),
      '/stats': (_q, s) => json(s, 200, h.stats()),
      '/ready': readiness,
      '/stats/prometheus': prom,
    }),
    // The kubelet probes from outside the pod: all addresses.
    serve('::', ports.ready, { '/healthz/ready': readiness }),
    serve('::', ports.prometheus, { '/stats/prometheus': prom }),
  ]);
}
