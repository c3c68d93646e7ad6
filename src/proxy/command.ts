// `weir proxy`: the co-located L4 proxy, run as UID 1337 in the pod netns.
// Its command definition lives with the proxy (not in src/cli/) so the
// proxy-only bundle (src/proxy/main.ts) never depends on the CLI layer;
// the full CLI registers the same command from here.
import { Command, Option } from 'commander';
import { createLogger } from '../common/log.js';
import { optionWithDefault } from '../common/cli-option.js';
import { FieldError } from '../common/errors.js';
import { EXIT } from '../common/exit-codes.js';
import { resolveProxyConfig, type RawProxyOptions } from './config.js';
import { loadStaticConfig } from './compiled/static-config.js';
import { startProxy } from './proxy.js';

/** `weir proxy-wait`: the injected postStart hook (the app starts after the proxy answers ready). */
export function registerProxyWaitCommand(program: Command): void {
  program.command('proxy-wait')
    .description('wait until the local proxy is ready (the injected postStart hook: the app starts after the proxy)')
    .addOption(new Option('--url <url>', 'readiness URL').default('http://127.0.0.1:15021/healthz/ready'))
    .addOption(new Option('--timeout <duration>', 'give up after').default('120s'))
    .action(async (opts: { url: string; timeout: string }) => {
      try {
        const { waitForProxyReady } = await import('./wait-ready.js');
        const ms = await waitForProxyReady(opts.url, opts.timeout);
        process.stderr.write(`weir proxy ready after ${ms} ms\n`);
      } catch (err) {
        process.stderr.write(`weir proxy-wait: ${err instanceof Error ? err.message : String(err)}\n`);
        process.exit(err instanceof FieldError ? EXIT.usage : 1);
      }
    });
}

export function registerProxyCommand(program: Command): void {
  program
    .command('proxy')
    .description('run the co-located proxy (TCP, HTTP/1.1, HTTP/2, gRPC; outbound 15001, inbound 15006, admin 15000, ready 15021, metrics 15090)')
    .addOption(optionWithDefault('--control-plane-socket <@name|path>', 'node agent socket: @name = abstract socket in this pod\'s netns, else a path to the legacy host socket (env WEIR_CONTROL_PLANE_SOCKET)', '@weir/proxy'))
    .addOption(new Option('--pod-namespace <ns>', 'this pod\'s namespace (env POD_NAMESPACE)'))
    .addOption(new Option('--pod-name <name>', 'this pod\'s name (env POD_NAME)'))
    .addOption(new Option('--cluster-id <name>', 'the cluster this pod runs in, for source_cluster/destination_cluster (env ISTIO_META_CLUSTER_ID; default Kubernetes)'))
    .addOption(new Option('--workload <name>', 'workload label for metrics (default: from the pod name)'))
    .addOption(optionWithDefault('--outbound-port <port>', 'outbound capture listener', '15001'))
    .addOption(optionWithDefault('--inbound-port <port>', 'inbound capture listener', '15006'))
    .addOption(optionWithDefault('--admin-port <port>', 'admin on 127.0.0.1', '15000'))
    .addOption(optionWithDefault('--ready-port <port>', 'readiness /healthz/ready', '15021'))
    .addOption(optionWithDefault('--prometheus-port <port>', 'Prometheus /stats/prometheus', '15090'))
    .addOption(optionWithDefault('--max-connections <n>', 'per listener', '16384'))
    .addOption(optionWithDefault('--idle-timeout <duration>', 'close a connection idle this long (a duration needs a unit: ms, s, m, h)', '1h'))
    .addOption(optionWithDefault('--connect-timeout <duration>', 'upstream connect timeout (ms, s, m or h)', '10s'))
    .addOption(optionWithDefault('--connect-attempts <n>', 'endpoints tried per outbound connection', '3'))
    .addOption(optionWithDefault('--ready-without-agent <duration>', 'become ready without an agent after (ms, s, m or h)', '5s'))
    .addOption(optionWithDefault('--drain-timeout <duration>', 'on SIGTERM, wait this long for connections (ms, s, m or h)', '5s'))
    .addOption(optionWithDefault('--dns-port <port>', 'DNS proxy on 127.0.0.1 and ::1', '15053'))
    .addOption(optionWithDefault('--pump <mode>', 'byte mover: auto (splice when the addon has it), splice, stream', 'auto'))
    .option('--http-engine <mode>', 'HTTP/1.1: native (the addon serves connections whose routes need nothing the JS chain alone has) or js (env WEIR_HTTP_ENGINE)')
    .option('--native-accept <mode>', 'outbound opaque TCP accepted, routed and dialled on the pump thread: auto (default), off (env WEIR_NATIVE_ACCEPT)')
    .addOption(optionWithDefault('--busy-poll <µs>', 'splice pump: poll this long after activity before sleeping, e.g. 200us; off = always sleep (env WEIR_BUSY_POLL)', 'DEFAULT'))
    .addOption(optionWithDefault('--interception-mode <mode>', 'REDIRECT or TPROXY, as the pod\'s rules (env ISTIO_META_INTERCEPTION_MODE)', 'REDIRECT'))
    .option('--no-dns', 'do not run the DNS proxy')
    .addOption(optionWithDefault('--access-log <format>', 'one stdout line per request/connection: off, text (Istio\'s default format) or json (env WEIR_ACCESS_LOG)', 'off'))
    .option('--no-access-log', 'no access log (the default)')
    .addOption(optionWithDefault('--protocol-detection-timeout <duration>', 'outbound: a client silent this long on a port that declares no protocol is treated as TCP', '100ms'))
    .addOption(optionWithDefault('--inbound-protocol-detection-timeout <duration>', 'the same for inbound connections', '100ms'))
    .addOption(optionWithDefault('--http-retries <n>', 'outbound retries per HTTP request (connect failure, refused stream, 503, gRPC unavailable/cancelled)', '2'))
    .addOption(new Option('--zipkin-address <host:port>', 'export spans (Zipkin v2 JSON) to this collector (else PROXY_CONFIG tracing.zipkin.address; none: headers propagated, no spans)'))
    .addOption(new Option('--trace-sampling <percent>', 'share of new traces sampled, 0-100 (else PROXY_CONFIG tracing.sampling; Istio\'s default 1)'))
    .addOption(new Option('--static-config <file>', 'apply this compiled config (CompiledProxyConfig JSON: routes, l4, clusters, outboundTrafficPolicy) at start'))
    .addOption(optionWithDefault('--pod-labels <file>', 'downward-API labels file (app, version, canonical names) (env WEIR_POD_LABELS_FILE)', '/etc/istio/pod/labels'))
    .addOption(optionWithDefault('--mtls <mode>', 'mesh mTLS: off, auto (certificate through the agent when it issues them) or required (readiness waits for it) (env WEIR_MTLS)', 'auto'))
    .addOption(optionWithDefault('--trust-domain <domain>', 'SPIFFE trust domain (env WEIR_TRUST_DOMAIN)', 'cluster.local'))
    .addOption(new Option('--static-security <file>', 'PeerAuthentication / AuthorizationPolicy objects (YAML or JSON) to enforce instead of the Security kind the control plane pushes (env WEIR_STATIC_SECURITY)'))
    .addOption(optionWithDefault('--mtls-engine <engine>', 'mTLS of opaque TCP in native code (the addon\'s TLS relay) or node:tls streams: auto (native when built), native or node (env WEIR_MTLS_ENGINE)', 'auto'))
    .addOption(new Option('--cert-rotation <duration>', 'renew the workload certificate at least this often (default: at half-life ± jitter)'))
    .action(async (opts: RawProxyOptions) => {
      let cfg;
      let staticConfig;
      try {
        cfg = resolveProxyConfig(opts);
        staticConfig = cfg.staticConfig ? loadStaticConfig(cfg.staticConfig) : undefined;
      } catch (e) {
        // A bad flag or variable is bad input (exit 2), like every other command.
        if (e instanceof FieldError) { process.stderr.write(`weir proxy: ${e.message}\n`); process.exit(EXIT.usage); }
        throw e;
      }
      const logger = createLogger({ name: 'weir-proxy' });
      const proxy = await startProxy(cfg, logger, { staticConfig });
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
