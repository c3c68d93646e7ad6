// The proxy's status port (15020, Istio's): the kubelet's rewritten probes
// (/app-health/<container>/{livez,readyz,startupz}) answered by probing the
// app, POST /quitquitquit (the app, or a Job's last step, asks the proxy to
// exit), /healthz/ready; and, for regular-container proxies of Job-like
// pods, exit when the app containers have exited. Configured from the
// environment the injector writes, so `weir proxy` needs no new flags.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../common/log.js';
import { FieldError } from '../common/errors.js';
import { parseProbers, type AppProbers } from '../injector/probes.js';
import { watchAppExit, type AppExitWatch } from './app-exit.js';
import { runAppProbe } from './app-probe.js';

export interface StatusSettings {
  /** 0 = any free port (tests). */
  port: number;
  probers: AppProbers;
  /** Where the app is probed: the pod IP (INSTANCE_IP), else 127.0.0.1. */
  podIP: string;
  exitWhenAppExits: boolean;
}

/** The status server's settings from the injected environment; undefined when WEIR_STATUS_PORT=off. */
export function statusSettingsFromEnv(env: NodeJS.ProcessEnv = process.env): StatusSettings | undefined {
  const raw = env.WEIR_STATUS_PORT ?? '15020';
  if (raw === 'off') return undefined;
  if (!/^\d+$/.test(raw) || Number(raw) < 1 || Number(raw) > 65535) throw new FieldError('WEIR_STATUS_PORT', 'must be a port number 1-65535 or off', raw);
  const exit = (env.WEIR_EXIT_WHEN_APP_EXITS ?? 'false').toLowerCase();
  if (exit !== 'true' && exit !== 'false') throw new FieldError('WEIR_EXIT_WHEN_APP_EXITS', 'must be true or false', env.WEIR_EXIT_WHEN_APP_EXITS);
  return { port: Number(raw), probers: parseProbers(env.ISTIO_KUBE_APP_PROBERS), podIP: env.INSTANCE_IP || '127.0.0.1', exitWhenAppExits: exit === 'true' };
}

/** 127.0.0.0/8 and ::1, also as v4-mapped (the server listens on :: dual-stack). */
function isLoopback(address: string | undefined): boolean {
  const a = address?.startsWith('::ffff:') ? address.slice(7) : address;
  return a === '::1' || (a?.startsWith('127.') ?? false);
}

export interface StatusServer { port: number; close(): Promise<void> }

export async function startStatusServer(s: StatusSettings, h: { ready(): { ready: boolean; reason: string }; quit(reason: string): void; logger: Logger }): Promise<StatusServer> {
  let quitting = false;
  const quit = (reason: string) => { if (quitting) return; quitting = true; h.logger.info({ reason }, 'proxy exiting'); h.quit(reason); };
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const text = (code: number, body: string) => { res.writeHead(code, { 'content-type': 'text/plain' }); res.end(`${body}\n`); };
    if (path === '/quitquitquit') {
      if (req.method !== 'POST') { text(405, 'POST /quitquitquit'); return; }
      // 15020 is never captured inbound (the kubelet must reach it), so any
      // peer that can route to the pod IP reaches this port directly: only the
      // pod itself (loopback) may stop its proxy, as pilot-agent allows.
      if (!isLoopback(req.socket.remoteAddress)) { text(403, 'POST /quitquitquit is accepted from the pod itself (loopback) only'); return; }
      text(200, 'exiting');
      // Answer first: the caller (often the app's last line) should see its request succeed.
      res.on('finish', () => quit('POST /quitquitquit'));
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') { text(405, `${req.method} ${path}`); return; }
    if (path === '/healthz/ready') { const r = h.ready(); text(r.ready ? 200 : 503, r.reason); return; }
    if (path.startsWith('/app-health/')) {
      const prober = s.probers[path];
      if (!prober) { text(404, `no app probe at ${path} (probes: ${Object.keys(s.probers).join(', ') || 'none'})`); return; }
      runAppProbe(prober, s.podIP).then((o) => {
        if (!o.ok) h.logger.debug({ path, detail: o.detail }, 'app probe failed');
        // The app's own failure code when it has one, so `kubectl describe` shows it.
        text(o.ok ? 200 : o.code >= 400 ? o.code : 503, o.detail);
      }, (err: unknown) => text(500, String(err)));
      return;
    }
    text(404, `no ${path}`);
  });
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '::', port: s.port, ipv6Only: false }, () => { server.off('error', reject); resolve(); });
  });
  let exitWatch: AppExitWatch | undefined;
  if (s.exitWhenAppExits) {
    exitWatch = watchAppExit({
      onExit: () => quit('app containers exited'),
      onNoPidNamespace: () => h.logger.warn('WEIR_EXIT_WHEN_APP_EXITS: no app process visible after 30 s (is shareProcessNamespace on?); POST /quitquitquit still works'),
    });
  }
  h.logger.info({ port: (server.address() as AddressInfo).port, probes: Object.keys(s.probers), exitWhenAppExits: s.exitWhenAppExits }, 'status server listening');
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((r) => { exitWatch?.stop(); server.close(() => r()); server.closeAllConnections(); }),
  };
}
