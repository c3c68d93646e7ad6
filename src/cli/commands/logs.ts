// `weir logs [--tail N] [-f]`: the agent's recent log lines, as kubectl
// users expect (`--tail`, `-f` follows). `-n` is namespace to every kubectl
// user, so the old `-n N` is refused with the flag to use instead.
import { Option, type Command } from 'commander';
import { adminCall, adminSocket } from '../admin-client.js';
import { EXIT, runAction, usage } from '../exit.js';
import { withAdmin } from './node.js';

interface LogsOpts { output?: string; socket?: string; tail: string; follow?: boolean; lines?: string; interval: string }

function print(lines: string[], json: boolean): void {
  for (const l of lines) {
    if (!json) { process.stdout.write(`${l}\n`); continue; }
    // One JSON value per line (JSON lines), so `-f -o json` streams.
    let v: unknown;
    try { v = JSON.parse(l); } catch { v = l; }
    process.stdout.write(`${JSON.stringify(v)}\n`);
  }
}

export function registerLogsCommand(program: Command): void {
  withAdmin(program.command('logs').description('the agent\'s recent log lines (JSON lines with -o json)'), ['table', 'json'])
    .addOption(new Option('--tail <n>', 'how many of the most recent lines').default('200'))
    .option('-f, --follow', 'keep printing new lines until interrupted')
    .addOption(new Option('--interval <ms>', 'how often --follow asks the agent').default('500').hideHelp())
    .addOption(new Option('-n, --lines <n>').hideHelp())
    .action(runAction('weir logs', async (opts: LogsOpts) => {
      if (opts.lines !== undefined) throw usage(`-n is not a line count here (kubectl reads -n as namespace): use --tail ${opts.lines}`);
      const n = Number(opts.tail);
      if (!Number.isInteger(n) || n < 0) throw usage(`--tail: must be a non-negative integer (bad value: ${JSON.stringify(opts.tail)})`);
      const interval = Number(opts.interval);
      if (!Number.isInteger(interval) || interval < 50) throw usage(`--interval: milliseconds, at least 50 (bad value: ${JSON.stringify(opts.interval)})`);
      const sock = adminSocket(opts);
      const json = opts.output === 'json';
      const first = await adminCall(sock, 'GET', `/v1/logs?n=${n}`) as { lines: string[]; next: number };
      if (!opts.follow && json) {
        process.stdout.write(`${JSON.stringify(first.lines.map((l) => { try { return JSON.parse(l) as unknown; } catch { return l; } }), null, 2)}\n`);
        return EXIT.ok;
      }
      print(first.lines, json);
      if (!opts.follow) return EXIT.ok;
      let next = first.next;
      for (;;) {
        await new Promise((r) => setTimeout(r, interval));
        const r = await adminCall(sock, 'GET', `/v1/logs?after=${next}`) as { lines: string[]; next: number };
        print(r.lines, json);
        next = r.next;
      }
    }));
}
