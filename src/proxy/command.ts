// `weir proxy`: the co-located L4 proxy, run as UID 1337 in the pod netns.
// Its command definition lives with the proxy (not in src/cli/) so the
// proxy-only bundle (src/proxy/main.ts) never depends on the CLI layer;
// the full CLI registers the same command from here.
import { Command, Option } from 'commander';
import { createLogger } from '../common/log.js';
import { resolveProxyConfig, type RawProxyOptions } from './config.js';
import { startProxy } from './proxy.js';

export function registerProxyCommand(program: Command): void {
  program
    .command('proxy')
    .description('run the co-located proxy (TCP, HTTP/1.1, HTTP/2, gRPC; outbound 15001, inbound 15006, admin 15000, ready 15021, metrics 15090)')
    .addOption(new Option('--control-plane-socket <@name|path>', 'node agent socket: @name = abstract socket in this pod\'s netns, else a path to the legacy host socket (env WEIR_CONTROL_PLANE_SOCKET)').default(undefined, '@weir/proxy'))
    .addOption(new Option('--pod-namespace <ns>', 'this pod\'s namespace (env POD_NAMESPACE)'))
    .addOption(new Option('--pod-name <name>', 'this pod\'s name (env POD_NAME)'))
    .addOption(new Option('--workload <name>', 'workload label for metrics (default: from the pod name)'))
    .addOption(new Option('--outbound-port <port>', 'outbound capture listener').default(undefined, '15001'))
    .addOption(new Option('--inbound-port <port>', 'inbound capture listener').default(undefined, '15006'))
    .addOption(new Option('--admin-port <port>', 'admin on 127.0.0.1').default(undefined, '15000'))
    .addOption(new Option('--ready-port <port>', 'readiness /healthz/ready').default(undefined, '15021'))
    .addOption(new Option('--prometheus-port <port>', 'Prometheus /stats/prometheus').default(undefined, '15090'))
    .addOption(new Option('--max-connections <n>', 'per listener').default(undefined, '16384'))
    .addOption(new Option('--idle-timeout <duration>', 'close a connection idle this long (a duration needs a unit: ms, s, m, h)').default(undefined, '1h'))
    .addOption(new Option('--connect-timeout <duration>', 'upstream connect timeout (ms, s, m or h)').default(undefined, '10s'))
    .addOption(new Option('--connect-attempts <n>', 'endpoints tried per outbound connection').default(undefined, '3'))
    .addOption(new Option('--ready-without-agent <duration>', 'become ready without an agent after (ms, s, m or h)').default(undefined, '5s'))
    .addOption(new Option('--drain-timeout <duration>', 'on SIGTERM, wait this long for connections (ms, s, m or h)').default(undefined, '5s'))
    .addOption(new Option('--dns-port <port>', 'DNS proxy on 127.0.0.1 and ::1').default(undefined, '15053'))
    .addOption(new Option('--pump <mode>', 'byte mover: auto (splice when the addon has it), splice, stream').default(undefined, 'auto'))
    .addOption(new Option('--busy-poll <µs>', 'splice pump: poll this long after activity before sleeping, e.g. 200us; off = always sleep (env WEIR_BUSY_POLL)').default(undefined, 'DEFAULT'))
    .addOption(new Option('--interception-mode <mode>', 'REDIRECT or TPROXY, as the pod\'s rules (env ISTIO_META_INTERCEPTION_MODE)').default(undefined, 'REDIRECT'))
    .option('--no-dns', 'do not run the DNS proxy')
    .addOption(new Option('--access-log <format>', 'one stdout line per request/connection: off, text (Istio\'s default format) or json (env WEIR_ACCESS_LOG)').default(undefined, 'off'))
    .option('--no-access-log', 'no access log (the default)')
    .addOption(new Option('--protocol-detection-timeout <duration>', 'outbound: a client silent this long on a port that declares no protocol is treated as TCP').default(undefined, '100ms'))
    .addOption(new Option('--inbound-protocol-detection-timeout <duration>', 'the same for inbound connections').default(undefined, '100ms'))
    .addOption(new Option('--http-retries <n>', 'outbound retries per HTTP request (connect failure, refused stream, 503, gRPC unavailable/cancelled)').default(undefined, '2'))
    .addOption(new Option('--pod-labels <file>', 'downward-API labels file (app, version, canonical names) (env WEIR_POD_LABELS_FILE)').default(undefined, '/etc/istio/pod/labels'))
    .action(async (opts: RawProxyOptions) => {
      const cfg = resolveProxyConfig(opts);
      const logger = createLogger({ name: 'weir-proxy' });
      const proxy = await startProxy(cfg, logger);
      let stopping = false;
      const stop = (sig: string) => {
        if (stopping) return;
        stopping = true;
        logger.info({ signal: sig }, 'draining');
        proxy.drain().then(() => process.exit(0), (err: unknown) => { logger.error({ err: String(err) }, 'drain failed'); process.exit(1); });
      };
      process.on('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGINT', () => stop('SIGINT'));
    });
}
