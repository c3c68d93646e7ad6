// `weir inject` (offline, like `istioctl kube-inject`), `weir injector`
// (the admission webhook server) and `weir proxy-wait` (the postStart hook
// that holds the app until the proxy is ready).
// The injector's modules load only when one of these commands runs: every
// `weir` start (the agent, a proxy started through the CLI) parses this file.
import { optionWithDefault } from '../../common/cli-option.js';
import * as fs from 'node:fs';
import { Command, Option } from 'commander';
import { FieldError } from '../../common/errors.js';
import { registerProxyWaitCommand } from '../../proxy/command.js';
import type { RawInjectOptions, RawServerOptions } from '../../injector/options.js';

function injectionOptions(cmd: Command): Command {
  return cmd
    .addOption(optionWithDefault('--proxy-image <ref>', 'the weir image (env WEIR_PROXY_IMAGE)', 'ghcr.io/weir/weir:0.1.0'))
    .addOption(optionWithDefault('--proxy-command <cmd>', 'how weir runs in that image (env WEIR_PROXY_COMMAND)', 'node /usr/local/lib/weir/weir.mjs'))
    .addOption(new Option('--proxy-args <args>', 'extra `weir proxy` flags for every injected proxy (env WEIR_PROXY_ARGS)'))
    .addOption(new Option('--cluster-id <name>', 'this cluster\'s name, injected as ISTIO_META_CLUSTER_ID (env CLUSTER_ID)'))
    .addOption(optionWithDefault('--native-sidecars <auto|true|false>', 'proxy as a native sidecar (Kubernetes ≥ 1.29); auto reads the API server version', 'auto'))
    .addOption(optionWithDefault('--revision <rev>', 'written into sidecar.istio.io/status (env WEIR_REVISION)', 'default'))
    .addOption(optionWithDefault('--exclude-namespaces <list>', 'never injected, besides kube-system and kube-public (env WEIR_INJECT_EXCLUDE_NAMESPACES)', 'weir-system'))
    .addOption(new Option('--kubeconfig <path>', 'kubeconfig (default: in-cluster)'));
}

function fail(prefix: string, err: unknown): never {
  process.stderr.write(`${prefix}: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(err instanceof FieldError ? 2 : 1);
}

async function kubeApi(kubeconfig: string | undefined) {
  const [{ loadKubeConfig }, { KubeRest }] = await Promise.all([import('../../kube/informers.js'), import('../../injector/kube-rest.js')]);
  return new KubeRest(loadKubeConfig(kubeconfig));
}

async function nativeFromCluster(kubeconfig: string | undefined): Promise<boolean> {
  const { supportsNativeSidecars } = await import('../../injector/config.js');
  const v = await (await kubeApi(kubeconfig)).serverVersion();
  return supportsNativeSidecars(v.major, v.minor);
}

export function registerInjectCommands(program: Command): void {
  injectionOptions(program.command('inject')
    .description('inject the weir proxy into Pods, Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs and CronJobs (multi-document YAML); prints applyable YAML')
    .requiredOption('-f, --filename <file>', 'manifest file, or - for stdin')
    .addOption(new Option('-o, --output <file>', 'write here instead of stdout')))
    .action(async (opts: RawInjectOptions & { filename: string; output?: string; kubeconfig?: string }) => {
      try {
        const { nativeChoice, resolveInjectorConfig } = await import('../../injector/options.js');
        const { describeResult, injectYaml } = await import('../../injector/manifest-io.js');
        const choice = nativeChoice('--native-sidecars', opts.nativeSidecars);
        // Offline, "auto" asks a cluster only when told which one; else native (every supported Kubernetes has it).
        const native = choice !== 'auto' ? choice : opts.kubeconfig ? await nativeFromCluster(opts.kubeconfig) : true;
        const config = resolveInjectorConfig(opts, process.env, native);
        const text = opts.filename === '-' ? fs.readFileSync(0, 'utf8') : fs.readFileSync(opts.filename, 'utf8');
        const out = injectYaml(text, config, opts.filename === '-' ? 'stdin' : opts.filename);
        for (const r of out.results) { const line = describeResult(r); if (line) process.stderr.write(`${line}\n`); }
        if (opts.output) fs.writeFileSync(opts.output, out.yaml);
        else process.stdout.write(out.yaml);
      } catch (err) { fail('weir inject', err); }
    });

  injectionOptions(program.command('injector')
    .description('run the sidecar injection webhook (HTTPS, POST /inject); issues and rotates its own serving certificate and keeps the caBundle patched')
    .addOption(optionWithDefault('--port <port>', 'HTTPS port (env WEIR_INJECTOR_PORT)', '15017'))
    .addOption(optionWithDefault('--host <addr>', 'listen address', '::'))
    .addOption(optionWithDefault('--namespace <ns>', 'the injector\'s namespace (env POD_NAMESPACE)', 'weir-system'))
    .addOption(optionWithDefault('--service <name>', 'the Service the API server calls', 'weir-injector'))
    .addOption(optionWithDefault('--webhook-config <name>', 'MutatingWebhookConfiguration to keep the caBundle of ("" = none)', 'weir-sidecar-injector'))
    .addOption(optionWithDefault('--ca-secret <name>', 'Secret holding the injector CA', 'weir-injector-ca'))
    .addOption(optionWithDefault('--cert-lifetime <duration>', 'serving certificate lifetime (renewed at 2/3)', '168h'))
    .addOption(optionWithDefault('--policy <enabled|disabled>', 'default for pods without sidecar.istio.io/inject (env WEIR_INJECTION_POLICY)', 'enabled'))
    .option('--no-kube', 'no API server: in-memory CA, no caBundle patching, --native-sidecars must be explicit'))
    .action(async (opts: RawInjectOptions & RawServerOptions & { kubeconfig?: string; kube?: boolean }) => {
      try {
        const { createLogger } = await import('../../common/log.js');
        const { startInjector } = await import('../../injector/run.js');
        const { nativeChoice, resolveInjectorConfig, resolveServerSettings } = await import('../../injector/options.js');
        const logger = createLogger({ name: 'weir-injector' });
        const choice = nativeChoice('--native-sidecars', opts.nativeSidecars);
        const settings = resolveServerSettings(opts);
        resolveInjectorConfig(opts); // flag errors before anything starts
        const api = opts.kube === false ? undefined : await kubeApi(opts.kubeconfig);
        if (!api && choice === 'auto') throw new FieldError('--native-sidecars', 'must be true or false with --no-kube (there is no API server to ask)', 'auto');
        const running = await startInjector({ settings, api, nativeChoice: choice, configFor: (native) => resolveInjectorConfig(opts, process.env, native), logger });
        const stop = () => { running.close().then(() => process.exit(0), () => process.exit(1)); };
        process.on('SIGTERM', stop);
        process.on('SIGINT', stop);
      } catch (err) { fail('weir injector', err); }
    });

  // Defined with the proxy: the proxy-only bundle (the injected sidecar's command) runs it too.
  registerProxyWaitCommand(program);
}
