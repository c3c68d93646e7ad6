// `weir agent`: the node agent (the DaemonSet's process).
import { Command, Option } from 'commander';
import { optionWithDefault } from '../output.js';
import { resolveAgentConfig, ConfigError, type RawAgentOptions } from '../../agent/config.js';
import { startAgent, defaultPluginBinary } from '../../agent/agent.js';
import { installLastResort } from '../../agent/last-resort.js';

export function registerAgentCommand(program: Command): void {
  program
    .command('agent')
    .description('run the node agent: CNI server, installer, capture repair, metrics (:15014), admin socket')
    .addOption(new Option('--node-name <name>', 'this node, required (env NODE_NAME)'))
    .addOption(new Option('--kubeconfig <path>', 'kubeconfig file; default in-cluster (env KUBECONFIG)'))
    .addOption(optionWithDefault('--cni-conf-dir <dir>', 'CNI conf dir (env WEIR_CNI_CONF_DIR)', '/etc/cni/net.d'))
    .addOption(optionWithDefault('--cni-bin-dir <dir>', 'CNI bin dir (env WEIR_CNI_BIN_DIR)', '/opt/cni/bin'))
    .addOption(optionWithDefault('--cni-plugin-binary <path>', 'the weir-cni executable to install (env WEIR_CNI_PLUGIN_BINARY)', 'dist/weir-cni beside the bundle, or /usr/local/lib/weir/weir-cni'))
    .option('--no-install', 'do not install or chain weir-cni (env WEIR_INSTALL=false)')
    .addOption(optionWithDefault('--run-dir <dir>', 'sockets and state (env WEIR_RUN_DIR)', '/var/run/weir'))
    .addOption(optionWithDefault('--backend <name>', 'nftables | iptables | ebpf: the default for pods without a weir.io/backend annotation (env WEIR_BACKEND)', 'nftables'))
    .addOption(optionWithDefault('--bpf-pin-dir <dir>', 'ebpf: where programs and maps are pinned (env WEIR_BPF_PIN_DIR)', '/sys/fs/bpf/weir'))
    .addOption(optionWithDefault('--ebpf-cgroup <dir>', 'ebpf: the host\'s cgroup2 root to attach to (env WEIR_EBPF_CGROUP)', 'this process\'s cgroup2 mount'))
    .addOption(optionWithDefault('--ebpf-fallback <policy>', 'ebpf pods when the eBPF programs cannot load: nftables, or fail (closed: the pod does not start) (env WEIR_EBPF_FALLBACK)', 'nftables'))
    .addOption(optionWithDefault('--repair-mode <mode>', 'repair | delete | label (env WEIR_REPAIR_MODE)', 'repair'))
    .addOption(optionWithDefault('--repair-interval <duration>', 'how often every pod is verified, e.g. 60s or 5m: a unit is required (env WEIR_REPAIR_INTERVAL)', '60s'))
    .addOption(optionWithDefault('--metrics-addr <host:port>', 'metrics and health (env WEIR_METRICS_ADDR)', '0.0.0.0:15014'))
    .addOption(optionWithDefault('--host-proc <dir>', 'the host\'s /proc (env WEIR_HOST_PROC)', '/proc'))
    .addOption(optionWithDefault('--exclude-namespaces <list>', 'never captured, comma-separated (env WEIR_EXCLUDE_NAMESPACES)', 'kube-system'))
    .addOption(optionWithDefault('--keep-chain-on-shutdown [bool]', 'keep weir-cni chained when the agent stops: new pods fail closed until it is back; to remove weir use weir uninstall (env WEIR_KEEP_CHAIN_ON_SHUTDOWN)', 'true'))
    .option('--no-control-plane', 'do not serve the proxies\' control plane (env WEIR_CONTROL_PLANE=false)')
    .addOption(optionWithDefault('--cluster-domain <domain>', 'env WEIR_CLUSTER_DOMAIN', 'cluster.local'))
    .addOption(optionWithDefault('--istio-root-namespace <ns>', 'env WEIR_ISTIO_ROOT_NAMESPACE', 'istio-system'))
    .addOption(optionWithDefault('--log-level <level>', 'env WEIR_LOG_LEVEL', 'info'))
    .addOption(optionWithDefault('--cluster-id <name>', 'this cluster\'s name in a multi-cluster mesh, as Istio\'s (env CLUSTER_ID)', 'Kubernetes'))
    .addOption(new Option('--network <name>', 'this cluster\'s network; remote endpoints on another network go through its east-west gateway (env WEIR_NETWORK)'))
    .addOption(new Option('--remote-secret-namespace <ns>', 'watch Secrets labelled istio/multiCluster=true or weir.io/remote-cluster=true here for remote clusters; default the agent\'s POD_NAMESPACE (env WEIR_REMOTE_SECRET_NAMESPACE)'))
    .option('--no-remote-clusters', 'do not watch remote-cluster Secrets (env WEIR_REMOTE_CLUSTERS=false)')
    .option('--prefer-local-cluster', 'use remote endpoints of a Service only while it has no ready local one (env WEIR_PREFER_LOCAL_CLUSTER)')
    .addOption(new Option('--ca-url <url>', 'the weir CA proxies\' CSRs are forwarded to, e.g. https://weir-ca.weir-system.svc:15012; unset = no workload certificates (env WEIR_CA_URL)'))
    .addOption(optionWithDefault('--ca-token-file <path>', 'this agent\'s projected service-account token for the CA (env WEIR_CA_TOKEN_FILE)', '/var/run/secrets/weir/ca-token/token'))
    .addOption(optionWithDefault('--ca-roots-file <path>', 'mesh roots that sign the CA\'s serving certificate (env WEIR_CA_ROOTS_FILE)', '/var/run/secrets/weir/mesh-roots/root-cert.pem'))
    .addOption(optionWithDefault('--trust-domain <domain>', 'SPIFFE trust domain (env WEIR_TRUST_DOMAIN)', 'cluster.local'))
    .action(async (opts: Record<string, string | boolean | undefined>) => {
      // Commander sets negatable flags to true when absent; only an explicit --no-x counts, so env can still decide.
      const raw: RawAgentOptions = { ...opts, install: opts.install === false ? false : undefined, controlPlane: opts.controlPlane === false ? false : undefined, remoteClusters: opts.remoteClusters === false ? false : undefined, preferLocalCluster: opts.preferLocalCluster === true ? true : undefined };
      if (raw.cniPluginBinary === undefined && !process.env.WEIR_CNI_PLUGIN_BINARY) raw.cniPluginBinary = defaultPluginBinary();
      let cfg;
      try {
        cfg = resolveAgentConfig(raw);
      } catch (e) {
        if (e instanceof ConfigError) { process.stderr.write(`weir agent: ${e.message}\n`); process.exit(2); }
        throw e;
      }
      const lastResort = installLastResort();
      const agent = await startAgent(cfg);
      lastResort.use(agent.logger, agent.metrics.registry);
      let stopping = false;
      const stop = (sig: string): void => {
        if (stopping) return;
        stopping = true;
        agent.logger.info({ signal: sig }, 'shutting down');
        agent.close().then(() => process.exit(0), (err: unknown) => { agent.logger.error({ err: String(err) }, 'shutdown failed'); process.exit(1); });
      };
      process.on('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGINT', () => stop('SIGINT'));
    });
}
