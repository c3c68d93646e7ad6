// `weir uninstall`: remove weir-cni from this node's CNI chain and its
// binary from the CNI bin dir (src/agent/uninstall.ts). Run after the
// DaemonSet is deleted, on every node (README "Uninstall" has the kubectl steps).
import { Command, Option } from 'commander';
import { optionWithDefault } from '../../common/cli-option.js';

export function registerUninstallCommand(program: Command): void {
  program
    .command('uninstall')
    .description('remove weir-cni from the CNI conf and the CNI bin dir of this node; pods and the primary CNI keep working')
    .addOption(optionWithDefault('--cni-conf-dir <dir>', 'CNI conf dir (env WEIR_CNI_CONF_DIR)', '/etc/cni/net.d'))
    .addOption(optionWithDefault('--cni-bin-dir <dir>', 'CNI bin dir (env WEIR_CNI_BIN_DIR)', '/opt/cni/bin'))
    .addOption(optionWithDefault('--run-dir <dir>', 'the agent\'s run dir, to refuse while an agent serves (env WEIR_RUN_DIR)', '/var/run/weir'))
    .addOption(optionWithDefault('--bpf-pin-dir <dir>', 'the eBPF backend\'s pins, removed (detaching its programs)', '/sys/fs/bpf/weir'))
    .option('--force', 'uninstall even though an agent is still serving (it will chain weir-cni again)')
    .addOption(new Option('-o, --output <format>', 'text or json').choices(['text', 'json']).default('text'))
    .action(async (opts: { cniConfDir?: string; cniBinDir?: string; runDir?: string; bpfPinDir?: string; force?: boolean; output: string }) => {
      const env = process.env;
      const pick = (v: string | undefined, e: string | undefined, d: string): string => v ?? (e || d);
      try {
        // Loaded on use: every other `weir` command starts without the installer's modules.
        const { uninstall } = await import('../../agent/uninstall.js');
        const report = await uninstall({
          confDir: pick(opts.cniConfDir, env.WEIR_CNI_CONF_DIR, '/etc/cni/net.d'),
          binDir: pick(opts.cniBinDir, env.WEIR_CNI_BIN_DIR, '/opt/cni/bin'),
          runDir: pick(opts.runDir, env.WEIR_RUN_DIR, '/var/run/weir'),
          force: opts.force,
          bpfPinDir: opts.bpfPinDir,
        });
        if (opts.output === 'json') {
          process.stdout.write(JSON.stringify(report, null, 2) + '\n');
        } else {
          for (const f of report.unchained) process.stdout.write(`removed weir-cni from ${f}\n`);
          for (const f of report.deleted) process.stdout.write(`deleted ${f}\n`);
          if (report.binaryRemoved) process.stdout.write(`deleted ${report.binaryRemoved}\n`);
          if (report.ebpfRemoved.length) process.stdout.write(`removed eBPF pins (programs detached): ${report.ebpfRemoved.join(', ')}\n`);
          if (!report.unchained.length && !report.deleted.length && !report.binaryRemoved && !report.ebpfRemoved.length) process.stdout.write('weir-cni is not installed on this node\n');
        }
      } catch (e) {
        process.stderr.write(`weir uninstall: ${(e as Error).message}\n`);
        process.exitCode = 1;
      }
    });
}
