// `weir precheck`: one line per thing this node offers or lacks, with what to do (exit 1 when something weir needs is missing).
import { Option, type Command } from 'commander';
import { adminSocket, socketOption } from '../admin-client.js';
import { EXIT, runAction } from '../exit.js';
import { outputOption, printListing } from '../output.js';
import { runPrechecks, type CheckLine } from '../precheck/checks.js';

export function registerPrecheckCommand(program: Command): void {
  program.command('precheck').description('what this node offers and lacks: kernel, backends, iptables variant, CNI conf, cgroup2, BPF, agent')
    .addOption(new Option('--cni-conf-dir <dir>', 'the primary CNI\'s conf dir').env('WEIR_CNI_CONF_DIR').default('/etc/cni/net.d'))
    .addOption(outputOption(['table', 'json', 'yaml']))
    .addOption(socketOption())
    .action(runAction('weir precheck', async (opts: { cniConfDir: string; output?: string; socket?: string }) => {
      const lines = await runPrechecks({ cniConfDir: opts.cniConfDir, socket: adminSocket(opts) });
      printListing<CheckLine>(opts.output, lines, [
        { header: 'CHECK', value: (l) => l.check },
        { header: 'STATUS', value: (l) => l.status.toUpperCase() },
        { header: 'DETAIL', value: (l) => l.detail },
        { header: 'WHAT TO DO', value: (l) => l.fix },
      ]);
      return lines.some((l) => l.status === 'fail') ? EXIT.failure : EXIT.ok;
    }));
}
