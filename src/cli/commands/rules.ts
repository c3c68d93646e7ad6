// `weir rules ...`: render, apply, show, verify and remove a pod's capture
// rules by hand, with the same planner and backends the agent uses.
// Exit codes (src/cli/exit.ts): 0 ok, 1 runtime failure, 2 bad input (nothing touched), 3 drift.
// -f takes a file or `-` (stdin): one or many YAML documents, Pods or
// workloads (their pod template). --netns takes a path, a PID or an `ip netns` name.
import { Command, Option } from 'commander';
import { FieldError } from '../../common/errors.js';
import { netnsExists, resolveNetnsPath } from '../../netns/netns-path.js';
import { readManifests, type ManifestPod } from '../../redirect/manifests.js';
import { EXIT, runAction } from '../exit.js';
import type { CaptureBackend } from '../../netns/backend-types.js';
import { BACKEND_NAMES, DEFAULT_BACKEND, getBackend } from '../../netns/backends.js';
import { detectIptablesMode, type IptablesMode } from '../../netns/iptables-detect.js';
import { ADDON_NOT_BUILT, nativeAvailable } from '../../native/addon.js';
import { buildPlan } from '../../redirect/plan.js';
import { renderIptables } from '../../redirect/render-iptables.js';
import { renderNftables } from '../../redirect/render-nftables.js';
import type { RedirectPlan } from '../../redirect/types.js';
import type { BackendName } from '../../netns/backend-types.js';
import { sandboxAt } from '../../netns/backend-types.js';
import { DEFAULT_BPF_PIN_DIR, ebpfPinned } from '../../netns/ebpf-loader.js';
import { formatEbpfEntry, inboundOnlyPlan, renderEbpfEntry } from '../../redirect/render-ebpf.js';

interface CommonOpts { backend?: BackendName; iptablesMode: IptablesMode | 'auto'; netns?: string; file?: string; bpfPinDir: string; cgroup?: string }

function podsFromFile(file: string | undefined): ManifestPod[] {
  if (!file) throw new FieldError('-f/--file', 'a manifest (YAML or JSON; - for stdin) is required');
  return readManifests(file);
}

/** apply/verify program one netns: the manifest must hold exactly one pod. */
function planFromFile(file: string | undefined): RedirectPlan {
  const pods = podsFromFile(file);
  if (pods.length !== 1) throw new FieldError('-f/--file', `one pod is needed to program a netns, found ${pods.length}: ${pods.map((p) => p.label).join(', ')}`);
  return buildPlan(pods[0].pod);
}

function requireNetns(netns: string | undefined): string {
  if (!netns) throw new FieldError('--netns', 'a network namespace is required (path, PID or `ip netns` name)');
  const p = resolveNetnsPath(netns, '--netns');
  if (!netnsExists(p)) throw new FieldError('--netns', `no such network namespace: ${p}`);
  return p;
}

/**
 * Backends to look at when the user named none: both, except nftables when
 * the native addon is missing (an iptables-only host can still show and
 * remove; naming --backend nftables still reports the missing addon).
 */
function implicitBackends(named: BackendName | undefined, opts: CommonOpts): BackendName[] {
  if (named) return [named];
  // ebpf only where its programs are pinned: first, so its entry (which
  // includes the nft inbound tables) is shown instead of those tables alone.
  const ebpf: BackendName[] = ebpfPinned(opts.bpfPinDir) ? ['ebpf'] : [];
  const rest = BACKEND_NAMES.filter((b) => b !== 'ebpf');
  if (nativeAvailable()) return [...ebpf, ...rest];
  process.stderr.write(`weir rules: skipping nftables: ${ADDON_NOT_BUILT}\n`);
  return rest.filter((b) => b !== 'nftables');
}

async function backendFor(name: BackendName, opts: CommonOpts): Promise<CaptureBackend> {
  if (name === 'ebpf') return getBackend('ebpf', { ebpf: { pinDir: opts.bpfPinDir, ...(opts.cgroup ? { cgroup: opts.cgroup } : {}) } });
  if (name !== 'iptables') return getBackend(name);
  const mode = opts.iptablesMode === 'auto' ? (await detectIptablesMode()).mode : opts.iptablesMode;
  return getBackend('iptables', { iptablesMode: mode });
}

/** Runs a subcommand body and maps its failure to the documented exit code. */
function action(body: (opts: CommonOpts) => Promise<number | void>) {
  return runAction('weir rules', body);
}

function withCommon(cmd: Command, parts: { file?: boolean; netns?: boolean; backendRequired?: boolean }): Command {
  if (parts.file) cmd.option('-f, --file <manifest>', 'Pod or workload manifest(s), YAML or JSON; - reads stdin');
  if (parts.netns) cmd.option('--netns <netns>', 'network namespace: a path (/run/netns/X), a PID, or an `ip netns` name');
  const backend = new Option('--backend <name>', 'capture backend').choices([...BACKEND_NAMES]);
  cmd.addOption(parts.backendRequired ? backend.default(DEFAULT_BACKEND) : backend);
  cmd.addOption(new Option('--iptables-mode <mode>', 'iptables variant').choices(['auto', 'nft', 'legacy']).default('auto'));
  cmd.addOption(new Option('--bpf-pin-dir <dir>', 'ebpf: where weir\'s programs and maps are pinned').default(DEFAULT_BPF_PIN_DIR));
  cmd.addOption(new Option('--cgroup <dir>', 'ebpf: the cgroup2 directory the programs attach to (default: the cgroup2 root)'));
  return cmd;
}

export function registerRulesCommands(program: Command): void {
  const rules = program.command('rules').description("render, apply, inspect and remove a pod's capture rules");

  withCommon(rules.command('render').description('print the ruleset each pod (or workload\'s pod template) gets'), { file: true, backendRequired: true })
    .action(action(async (opts) => {
      const pods = podsFromFile(opts.file);
      // Plan every pod first: one bad document means no output at all.
      const plans = pods.map((p) => ({ label: p.label, plan: buildPlan(p.pod) }));
      for (const { label, plan } of plans) {
        if (plans.length > 1) process.stdout.write(`# ---- ${label}\n`);
        if (opts.backend === 'iptables') {
          const r = renderIptables(plan);
          process.stdout.write(`# iptables-restore --noflush (IPv4)\n${r.v4}# ip6tables-restore --noflush (IPv6)\n${r.v6}`);
        } else if (opts.backend === 'ebpf') {
          // Without a netns: no pod-local addresses or interface subnets yet (apply reads them from the netns).
          process.stdout.write(`# weir_pods map entry (netns addresses are added at apply)\n${formatEbpfEntry(renderEbpfEntry(plan, []))}`);
          process.stdout.write(`# nftables, inbound only\n${renderNftables(inboundOnlyPlan(plan))}`);
        } else {
          process.stdout.write(renderNftables(plan));
        }
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
      const names = implicitBackends(opts.backend, opts);
      let any = false;
      let ebpfShown = false;
      for (const name of names) {
        if (name === 'nftables' && ebpfShown) continue; // already listed as the ebpf backend's inbound part
        const state = await (await backendFor(name, opts)).read(sandboxAt(netns));
        if (!state.present || (name === 'ebpf' && state.planHash === undefined && !opts.backend)) continue;
        if (name === 'ebpf') ebpfShown = true;
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
      return EXIT.drift;
    }));

  withCommon(rules.command('remove').description("remove exactly weir's rules from a netns"), { netns: true })
    .action(action(async (opts) => {
      const netns = requireNetns(opts.netns);
      for (const name of implicitBackends(opts.backend, opts)) await (await backendFor(name, opts)).remove(sandboxAt(netns));
      process.stdout.write(`removed weir rules from ${netns}\n`);
    }));
}
