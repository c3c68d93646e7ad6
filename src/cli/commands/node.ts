// The node-local debug CLI: talks to the agent's admin socket.
//   weir status | pods | pod-rules POD | check POD | repair POD | logs
// POD is NAMESPACE/NAME or NAME (namespace "default"). Tables for people,
// `-o json` for scripts. Exit codes: 0 ok, 1 error, 2 usage, 3 drift found,
// 4 agent unreachable.
import { Command, Option } from 'commander';
import { request } from 'node:http';

export const EXIT = { ok: 0, error: 1, usage: 2, drift: 3, unreachable: 4 } as const;
const DEFAULT_ADMIN_SOCKET = '/var/run/weir/admin.sock';

class CliExit extends Error {
  constructor(readonly code: number, message: string) { super(message); }
}

function adminSocket(opts: { socket?: string }): string {
  return opts.socket ?? process.env.WEIR_ADMIN_SOCKET ?? DEFAULT_ADMIN_SOCKET;
}

export function adminCall(socketPath: string, method: string, path: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, method, path, timeout: 30_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        let body: unknown;
        try { body = JSON.parse(Buffer.concat(chunks).toString('utf8')); } catch { body = {}; }
        if ((res.statusCode ?? 500) >= 400) reject(new CliExit(EXIT.error, (body as { error?: string }).error ?? `HTTP ${res.statusCode}`));
        else resolve(body);
      });
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', (e) => reject(new CliExit(EXIT.unreachable, `cannot reach the weir agent at ${socketPath}: ${e.message}`)));
    req.end();
  });
}

function parsePod(arg: string): { ns: string; name: string } {
  const parts = arg.split('/');
  if (parts.length > 2 || parts.some((p) => !/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(p))) throw new CliExit(EXIT.usage, `POD: expected NAMESPACE/NAME or NAME (bad value: ${JSON.stringify(arg)})`);
  return parts.length === 2 ? { ns: parts[0], name: parts[1] } : { ns: 'default', name: parts[0] };
}

export function table(rows: (string | number | undefined)[][], header: string[]): string {
  const all = [header, ...rows.map((r) => r.map((c) => (c === undefined ? '-' : String(c))))];
  const widths = header.map((_, i) => Math.max(...all.map((r) => r[i].length)));
  return all.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('  ')).join('\n') + '\n';
}

type Out = { output?: string; socket?: string };

function withCommon(cmd: Command): Command {
  return cmd
    .addOption(new Option('-o, --output <format>', 'table or json').choices(['table', 'json']).default('table'))
    .addOption(new Option('--socket <path>', `admin socket (env WEIR_ADMIN_SOCKET, default ${DEFAULT_ADMIN_SOCKET})`));
}

function run(fn: (...args: never[]) => Promise<number>): (...args: unknown[]) => Promise<void> {
  return async (...args: unknown[]) => {
    try {
      process.exitCode = await (fn as (...a: unknown[]) => Promise<number>)(...args);
    } catch (e) {
      const code = e instanceof CliExit ? e.code : EXIT.error;
      process.stderr.write(`weir: ${(e as Error).message}\n`);
      process.exitCode = code;
    }
  };
}

function print(opts: Out, json: unknown, human: () => string): void {
  process.stdout.write(opts.output === 'json' ? `${JSON.stringify(json, null, 2)}\n` : human());
}

interface PodRow { namespace: string; name: string; phase?: string; capture: boolean; reason: string; status?: string; lastCheck?: string; sandboxes: { containerId: string }[] }
interface CheckResult { namespace: string; name: string; result: string; capture?: boolean; reason?: string; via?: string; netns?: string; differences?: string[]; error?: string }

export function registerNodeCommands(program: Command): void {
  withCommon(program.command('status').description('agent, install, backend and informer health'))
    .action(run(async (opts: Out) => {
      const s = await adminCall(adminSocket(opts), 'GET', '/v1/status') as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
      print(opts, s, () => {
        const inf = Object.entries(s.informers as Record<string, { synced: boolean; restarts: number; lastError?: string }>)
          .map(([k, v]) => `${k}=${v.synced ? 'synced' : 'NOT SYNCED'} restarts=${v.restarts}${v.lastError ? ` lastError="${v.lastError}"` : ''}`).join('; ');
        return table([
          ['node', s.node], ['ready', `${s.ready} (${s.readyReason})`], ['backend', s.backend], ['repair mode', s.repairMode],
          ['install', `${s.install.ready} (${s.install.reason})`], ['informers', inf], ['sandboxes', `${s.sandboxes} (${s.captured} captured)`],
          ['last repair', s.lastRepair ? `${s.lastRepair.at}, ${s.lastRepair.outcomes.length} pods checked` : 'none'],
        ], ['FIELD', 'VALUE']);
      });
      return s.ready ? EXIT.ok : EXIT.error;
    }));

  withCommon(program.command('pods').description('pods on this node: captured or why not, rule state'))
    .action(run(async (opts: Out) => {
      const pods = await adminCall(adminSocket(opts), 'GET', '/v1/pods') as PodRow[];
      print(opts, pods, () => table(pods.map((p) => [`${p.namespace}/${p.name}`, p.phase, p.capture ? 'yes' : 'no', p.reason, p.status, p.lastCheck, p.sandboxes.length]),
        ['POD', 'PHASE', 'CAPTURE', 'REASON', 'STATUS', 'LAST CHECK', 'SANDBOXES']));
      return EXIT.ok;
    }));

  withCommon(program.command('pod-rules').argument('<pod>', 'NAMESPACE/NAME').description('the capture rules weir owns in the pod\'s netns, as the kernel reports them'))
    .action(run(async (podArg: string, opts: Out) => {
      const { ns, name } = parsePod(podArg);
      const r = await adminCall(adminSocket(opts), 'GET', `/v1/pods/${ns}/${name}/rules`) as { netns: string; backend: string; present: boolean; listing: string; planHash?: string };
      print(opts, r, () => `# ${ns}/${name} netns=${r.netns} backend=${r.backend} present=${r.present} planHash=${r.planHash ?? '-'}\n${r.listing}${r.listing.endsWith('\n') ? '' : '\n'}`);
      return EXIT.ok;
    }));

  for (const verb of ['check', 'repair'] as const) {
    withCommon(program.command(verb).argument('<pod>', 'NAMESPACE/NAME').description(verb === 'check' ? 'verify the pod\'s capture rules against its plan (exit 3 on drift)' : 'verify and fix the pod\'s capture rules (per the agent\'s repair mode)'))
      .action(run(async (podArg: string, opts: Out) => {
        const { ns, name } = parsePod(podArg);
        const r = await adminCall(adminSocket(opts), 'POST', `/v1/pods/${ns}/${name}/${verb}`) as CheckResult;
        print(opts, r, () => `${ns}/${name}: ${r.result}${r.reason ? ` (${r.reason})` : ''}${r.netns ? ` netns=${r.netns} via=${r.via}` : ''}${r.error ? `\n  error: ${r.error}` : ''}\n${(r.differences ?? []).map((d) => `  ${d}\n`).join('')}`);
        if (r.result === 'ok' || r.result === 'skipped' || r.result === 'repaired' || r.result === 'labeled' || r.result === 'deleted') return EXIT.ok;
        if (r.result === 'failed' && r.differences && r.differences.length > 0 && !r.error) return EXIT.drift;
        if (r.result === 'netns-not-found') return EXIT.drift;
        return EXIT.error;
      }));
  }

  withCommon(program.command('logs').description('the agent\'s recent log lines'))
    .addOption(new Option('-n, --lines <n>', 'how many').default('200'))
    .action(run(async (opts: Out & { lines: string }) => {
      const n = Number(opts.lines);
      if (!Number.isInteger(n) || n < 0) throw new CliExit(EXIT.usage, `--lines: must be a non-negative integer (bad value: ${JSON.stringify(opts.lines)})`);
      const r = await adminCall(adminSocket(opts), 'GET', `/v1/logs?n=${n}`) as { lines: string[] };
      print(opts, r.lines.map((l) => { try { return JSON.parse(l) as unknown; } catch { return l; } }), () => r.lines.map((l) => `${l}\n`).join(''));
      return EXIT.ok;
    }));
}
