// Which iptables variant (nf_tables-backed or legacy xtables) to program a
// pod with. Pods must use the variant the node's own networking uses, or the
// two rule sets silently coexist and capture looks programmed but is not
// (istio 56983). The host netns tells: a node whose kube-proxy/CNI rules sit
// in legacy tables and not in nft ones is a legacy node; otherwise nft.
import { execa } from 'execa';

export type IptablesMode = 'nft' | 'legacy';

export interface IptablesDetection { mode: IptablesMode; reason: string }

/** Environment override, for nodes where detection guesses wrong. */
export const IPTABLES_MODE_ENV = 'WEIR_IPTABLES_MODE';

export function parseIptablesMode(value: string, field = IPTABLES_MODE_ENV): IptablesMode {
  if (value === 'nft' || value === 'legacy') return value;
  throw new Error(`${field}: must be "nft" or "legacy" (bad value: ${JSON.stringify(value)})`);
}

/** Number of rules (`-A` lines) an iptables-save variant reports, or 0 if it cannot run. */
async function ruleCount(saveBinary: string, netns?: string): Promise<number> {
  const cmd = netns ? ['nsenter', `--net=${netns}`, saveBinary] : [saveBinary];
  const r = await execa(cmd[0], cmd.slice(1), { reject: false, timeout: 10_000 });
  if (r.exitCode !== 0) return 0;
  return String(r.stdout).split('\n').filter((l) => l.startsWith('-A ')).length;
}

export interface DetectOptions {
  /** Explicit choice; wins over everything. */
  override?: IptablesMode;
  /** The netns to judge by; default the caller's own (the agent runs in the host netns). */
  referenceNetns?: string;
  env?: NodeJS.ProcessEnv;
}

/**
 * Decision order: explicit override, WEIR_IPTABLES_MODE, then rules found in
 * the reference netns: legacy rules and no nft rules → legacy; anything else
 * (nft rules, both, or none at all) → nft, the default of current distros.
 */
export async function detectIptablesMode(opts: DetectOptions = {}): Promise<IptablesDetection> {
  if (opts.override) return { mode: opts.override, reason: 'set explicitly' };
  const env = (opts.env ?? process.env)[IPTABLES_MODE_ENV];
  if (env !== undefined && env !== '') return { mode: parseIptablesMode(env), reason: `${IPTABLES_MODE_ENV}=${env}` };
  const [legacy4, legacy6, nft4, nft6] = await Promise.all([
    ruleCount('iptables-legacy-save', opts.referenceNetns),
    ruleCount('ip6tables-legacy-save', opts.referenceNetns),
    ruleCount('iptables-nft-save', opts.referenceNetns),
    ruleCount('ip6tables-nft-save', opts.referenceNetns),
  ]);
  const legacy = legacy4 + legacy6;
  const nft = nft4 + nft6;
  if (legacy > 0 && nft === 0) return { mode: 'legacy', reason: `host has ${legacy} legacy rules and no nft rules` };
  return { mode: 'nft', reason: `host has ${nft} nft rules and ${legacy} legacy rules` };
}
