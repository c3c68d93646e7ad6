// `weir proxy`: the co-located L4 proxy, run as UID 1337 in the pod netns.
import { Command, Option } from 'commander';
import { createLogger } from '../../common/log.js';
import { FieldError } from '../../common/errors.js';
import { EXIT } from '../exit.js';
import { resolveProxyConfig, type RawProxyOptions } from '../../proxy/config.js';
import { startProxy } from '../../proxy/proxy.js';

export function registerProxyCommand(program: Command): void {
  program
    .command('proxy')
    .description('run the co-located L4 proxy (outbound 15001, inbound 15006, admin 15000, ready 15021, metrics 15090)')
    .addOption(new Option('--control-plane-socket <path>', 'node agent socket (env WEIR_CONTROL_PLANE_SOCKET)'))
    .addOption(new Option('--pod-namespace <ns>', 'this pod\'s namespace (env POD_NAMESPACE)'))
    .addOption(new Option('--pod-name <name>', 'this pod\'s name (env POD_NAME)'))
    .addOption(new Option('--workload <name>', 'workload label for metrics (default: from the pod name)'))
    .addOption(new Option('--outbound-port <port>', 'outbound capture listener').default(undefined, '15001'))
    .addOption(new Option('--inbound-port <port>', 'inbound capture listener').default(undefined, '15006'))
    .addOption(new Option('--admin-port <port>', 'admin on 127.0.0.1').default(undefined, '15000'))
    .addOption(new Option('--ready-port <port>', 'readiness /healthz/ready').default(undefined, '15021'))
    .addOption(new Option('--prometheus-port <port>', 'Prometheus /stats/prometheus').default(undefined, '15090'))
    .addOption(new Option('--max-connections <n>', 'per listener').default(undefined, '16384'))
    .addOption(new Option('--idle-timeout <duration>', 'close a connection idle this long').default(undefined, '1h'))
    .addOption(new Option('--connect-timeout <duration>', 'upstream connect timeout').default(undefined, '10s'))
    .addOption(new Option('--connect-attempts <n>', 'endpoints tried per outbound connection').default(undefined, '3'))
    .addOption(new Option('--ready-without-agent <duration>', 'become ready without an agent after').default(undefined, '5s'))
    .addOption(new Option('--drain-timeout <duration>', 'on SIGTERM, wait this long for connections').default(undefined, '5s'))
    .addOption(new Option('--dns-port <port>', 'DNS proxy on 127.0.0.1 and ::1').default(undefined, '15053'))
    .addOption(new Option('--pump <mode>', 'byte mover: auto (splice when the addon has it), splice, stream').default(undefined, 'auto'))
    .addOption(new Option('--busy-poll <µs>', 'splice pump: poll this long after activity before sleeping, e.g. 200us; off = always sleep (env WEIR_BUSY_POLL)').default(undefined, 'DEFAULT'))
    .option('--no-dns', 'do not run the DNS proxy')
    .option('--no-access-log', 'no log line per connection')
    .action(async (opts: RawProxyOptions) => {
      let cfg;
      try {
        cfg = resolveProxyConfig(opts);
      } catch (e) {
        // A bad flag or variable is bad input (exit 2), like every other command.
        if (e instanceof FieldError) { process.stderr.write(`weir proxy: ${e.message}\n`); process.exit(EXIT.usage); }
        throw e;
      }
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
