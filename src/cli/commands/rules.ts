// `weir rules ...`: render, apply, show, verify and remove a pod's capture
// rules by hand, with the same planner and backends the agent uses.
// Exit codes: 0 ok, 1 runtime failure, 2 bad input (nothing touched), 3 drift.
import { existsSync } from 'node:fs';
import { Command, Option } from 'commander';
import { FieldError } from '../../common/errors.js';
import type { CaptureBackend } from '../../netns/backend-types.js';
import { BACKEND_NAMES, DEFAULT_BACKEND, getBackend } from '../../netns/backends.js';
import { detectIptablesMode, type IptablesMode } from '../../netns/iptables-detect.js';
import { ADDON_NOT_BUILT, nativeAvailable } from '../../native/addon.js';
import { buildPlan } from '../../redirect/plan.js';
import { readPodFile } from '../../redirect/pod-file.js';
import { renderIptables } from '../../redirect/render-iptables.js';
import { renderNftables } from '../../redirect/render-nftables.js';
import type { RedirectPlan } from '../../redirect/types.js';
import type { BackendName } from '../../netns/backend-types.js';
import { sandboxAt } from '../../netns/backend-types.js';

export const EXIT_RUNTIME = 1;
export const EXIT_BAD_INPUT = 2;
export const EXIT_DRIFT = 3;

class BadInput extends Error {}

interface CommonOpts { backend?: BackendName; iptablesMode: IptablesMode | 'auto'; netns?: string; file?: string }

function planFromFile(file: string | undefined): RedirectPlan {
  if (!file) throw new BadInput('-f/--file: a pod manifest (YAML or JSON) is required');
  return buildPlan(readPodFile(file));
}

function requireNetns(netns: string | undefined): string {
  if (!netns) throw new BadInput('--netns: a network namespace path is required');
  if (!existsSync(netns)) throw new BadInput(`--netns: no such network namespace: ${netns}`);
  return netns;
}

/**
 * Backends to look at when the user named none: both, except nftables when
 * the native addon is missing (an iptables-only host can still show and
 * remove; naming --backend nftables still reports the missing addon).
 */
function implicitBackends(named: BackendName | undefined): BackendName[] {
  if (named) return [named];
  if (nativeAvailable()) return [...BACKEND_NAMES];
  process.stderr.write(`weir rules: skipping nftables: ${ADDON_NOT_BUILT}\n`);
  return BACKEND_NAMES.filter((b) => b !== 'nftables');
}

async function backendFor(name: BackendName, opts: CommonOpts): Promise<CaptureBackend> {
  if (name !== 'iptables') return getBackend(name);
  const mode = opts.iptablesMode === 'auto' ? (await detectIptablesMode()).mode : opts.iptablesMode;
  return getBackend('iptables', { iptablesMode: mode });
}

/** Runs a subcommand body and maps its failure to the documented exit code. */
function action(body: (opts: CommonOpts) => Promise<number | void>) {
  return async (opts: CommonOpts): Promise<void> => {
    try {
      process.exitCode = (await body(opts)) ?? 0;
    } catch (e) {
      const bad = e instanceof FieldError || e instanceof BadInput;
      process.stderr.write(`weir rules: ${bad ? 'bad input: ' : ''}${(e as Error).message}\n`);
      process.exitCode = bad ? EXIT_BAD_INPUT : EXIT_RUNTIME;
    }
  };
}

function withCommon(cmd: Command, parts: { file?: boolean; netns?: boolean; backendRequired?: boolean }): Command {
  if (parts.file) cmd.option('-f, --file <pod.yaml>', 'pod manifest, YAML or JSON');
  if (parts.netns) cmd.option('--netns <path>', 'network namespace path (/run/netns/X, /proc/PID/ns/net)');
  const backend = new Option('--backend <name>', 'capture backend').choices([...BACKEND_NAMES]);
  cmd.addOption(parts.backendRequired ? backend.default(DEFAULT_BACKEND) : backend);
  cmd.addOption(new Option('--iptables-mode <mode>', 'iptables variant').choices(['auto', 'nft', 'legacy']).default('auto'));
  // Usage errors are bad input too: exit 2, not commander's 1.
  cmd.exitOverride((err) => {
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') process.exit(0);
    process.exit(EXIT_BAD_INPUT);
  });
  return cmd;
}

export function registerRulesCommands(program: Command): void {
  const rules = program.command('rules').description("render, apply, inspect and remove a pod's capture rules");

  withCommon(rules.command('render').description('print the ruleset a pod gets'), { file: true, backendRequired: true })
    .action(action(async (opts) => {
      const plan = planFromFile(opts.file);
      if (opts.backend === 'iptables') {
        const r = renderIptables(plan);
        process.stdout.write(`# iptables-restore --noflush (IPv4)\n${r.v4}# ip6tables-restore --noflush (IPv6)\n${r.v6}`);
      } else {
        process.stdout.write(renderNftables(plan));
      }
    }));

  withCommon(rules.command('apply').description("replace weir's rules in a netns with the pod's plan"), { file: true, netns: true, backendRequired: true })
    .action(action(async (opts) => {
      const plan = planFromFile(opts.file); // before touching the netns: bad input leaves it as it was
      const netns = requireNetns(opts.netns);
      await (await backendFor(opts.backend!, opts)).apply(sandboxAt(netns), plan);
      process.stdout.write(`applied ${opts.backend} rules to ${netns}\n`);
    }));

  withCommon(rules.command('show').description('print what weir programmed in a netns'), { netns: true })
    .action(action(async (opts) => {
      const netns = requireNetns(opts.netns);
      const names = implicitBackends(opts.backend);
      let any = false;
      for (const name of names) {
        const state = await (await backendFor(name, opts)).read(sandboxAt(netns));
        if (!state.present) continue;
        any = true;
        process.stdout.write(`# backend ${name}${state.planHash ? ` plan=${state.planHash}` : ''}\n${state.listing.trimEnd()}\n`);
      }
      if (!any) process.stdout.write(`no weir rules in ${netns}\n`);
    }));

  withCommon(rules.command('verify').description("compare a netns with the pod's plan; exit 3 on drift"), { file: true, netns: true, backendRequired: true })
    .action(action(async (opts) => {
      const plan = planFromFile(opts.file);
      const netns = requireNetns(opts.netns);
      const result = await (await backendFor(opts.backend!, opts)).verify(sandboxAt(netns), plan);
      if (result.ok) {
        process.stdout.write(`ok: ${netns} matches the plan\n`);
        return 0;
      }
      process.stdout.write(`drift in ${netns}:\n${result.differences.map((d) => `  ${d}`).join('\n')}\n`);
      return EXIT_DRIFT;
    }));

  withCommon(rules.command('remove').description("remove exactly weir's rules from a netns"), { netns: true })
    .action(action(async (opts) => {
      const netns = requireNetns(opts.netns);
      for (const name of implicitBackends(opts.backend)) await (await backendFor(name, opts)).remove(sandboxAt(netns));
      process.stdout.write(`removed weir rules from ${netns}\n`);
    }));
}
