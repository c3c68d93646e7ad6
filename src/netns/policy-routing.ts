// Policy routing for TPROXY inside a pod's netns: `ip rule fwmark M lookup T`
// and `ip route local default dev lo table T`, IPv4 and IPv6 (Istio's 1337
// and 133). Marked packets (TPROXY's, and the app's replies to the proxy's
// transparent hand-off) are delivered locally even though their destination
// is not a local address.
//
// Why `ip` through nsenter and not the `netlink` npm package: a netlink
// socket belongs to the netns it was created in, and netlink@0.3.0 creates
// its socket itself, on the JavaScript thread, in the agent's netns; it
// takes no existing fd. Using it for a pod would mean moving the libuv
// thread (or a worker's) into the pod with setns, which every other socket
// the agent opens meanwhile would inherit: exactly what the native addon's
// dedicated netns threads exist to prevent. See docs/architecture.md.
//
// Only TPROXY pods pay for the process spawns (2 to read, 2 to write); the
// backends ask first whether a netns has TPROXY rules at all (cheap, in
// process) before touching routing (see tproxy-backend.ts).
import { existsSync } from 'node:fs';
import { execa } from 'execa';

export interface PolicyRoute {
  mark: number;
  routeTable: number;
}

type Family = 4 | 6;
const FAMILIES: Family[] = [4, 6];
const label = (f: Family): string => (f === 4 ? 'ipv4' : 'ipv6');

export class PolicyRoutingError extends Error {
  constructor(action: string, netns: string, detail: string) {
    super(`policy routing ${action} in ${netns} failed: ${detail}`);
    this.name = 'PolicyRoutingError';
  }
}

interface IpRule { priority?: number; fwmark?: string; table?: string }
interface IpRoute { type?: string; dst?: string; dev?: string; table?: string }

async function ipBatch(netns: string, family: Family, lines: string[], json: boolean, action: string): Promise<string> {
  const args = [`--net=${netns}`, 'ip', ...(json ? ['-j'] : []), `-${family}`, '-batch', '-'];
  const r = await execa('nsenter', args, { input: lines.join('\n') + '\n', reject: false, timeout: 10_000 });
  if (r.exitCode !== 0) throw new PolicyRoutingError(action, netns, `ip -${family}: ${String(r.stderr).trim() || `exit ${r.exitCode}`}`);
  return String(r.stdout);
}

/** `ip -j -batch` prints one JSON array per command, back to back. */
function jsonArrays(text: string): unknown[][] {
  const out: unknown[][] = [];
  for (const chunk of text.split(/\n(?=\[)/)) {
    const t = chunk.trim();
    if (t !== '') out.push(JSON.parse(t) as unknown[]);
  }
  return out;
}

const markOf = (r: IpRule): number | undefined => (r.fwmark === undefined ? undefined : Number(r.fwmark));

interface FamilyState { rules: IpRule[]; routes: IpRoute[] }

async function readFamily(netns: string, family: Family, pr: PolicyRoute): Promise<FamilyState> {
  const [rules, routes] = jsonArrays(await ipBatch(netns, family, ['rule show', 'route show table all'], true, 'read')) as [IpRule[], IpRoute[]];
  return {
    rules: (rules ?? []).filter((r) => markOf(r) === pr.mark || r.table === String(pr.routeTable)),
    routes: (routes ?? []).filter((r) => r.table === String(pr.routeTable)),
  };
}

function linesOf(family: Family, s: FamilyState): string[] {
  return [
    ...s.rules.map((r) => `${label(family)} rule: fwmark 0x${(markOf(r) ?? 0).toString(16)} lookup ${r.table}`),
    ...s.routes.map((r) => `${label(family)} route table ${r.table}: ${r.type ?? 'unicast'} ${r.dst} dev ${r.dev}`),
  ];
}

/** What weir's policy routing looks like when programmed, in readPolicyRouting's form. */
export function expectedPolicyRouting(pr: PolicyRoute): string[] {
  return FAMILIES.flatMap((f) => [
    `${label(f)} rule: fwmark 0x${pr.mark.toString(16)} lookup ${pr.routeTable}`,
    `${label(f)} route table ${pr.routeTable}: local default dev lo`,
  ]);
}

/** Rules naming the mark or the table, and every route in the table, as canonical lines. */
export async function readPolicyRouting(netns: string, pr: PolicyRoute): Promise<string[]> {
  const lines: string[] = [];
  for (const f of FAMILIES) lines.push(...linesOf(f, await readFamily(netns, f, pr)));
  return lines;
}

/** Idempotent: adds the rule only when missing (the kernel accepts duplicates), replaces the route. */
export async function applyPolicyRouting(netns: string, pr: PolicyRoute): Promise<void> {
  for (const f of FAMILIES) {
    const now = await readFamily(netns, f, pr);
    const exact = now.rules.filter((r) => markOf(r) === pr.mark && r.table === String(pr.routeTable));
    const cmds: string[] = [];
    // Rules that name our mark or table but differ are not ours to keep;
    // identical duplicates go down to one (each del removes one copy).
    for (const r of now.rules) if (!exact.includes(r)) cmds.push(deleteRule(r));
    for (const r of exact.slice(1)) cmds.push(deleteRule(r));
    if (exact.length === 0) cmds.push(`rule add fwmark ${pr.mark} lookup ${pr.routeTable}`);
    cmds.push(`route replace local default dev lo table ${pr.routeTable}`);
    await ipBatch(netns, f, cmds, false, 'apply');
  }
}

function deleteRule(r: IpRule): string {
  const parts = ['rule del'];
  if (r.priority !== undefined) parts.push(`priority ${r.priority}`);
  if (r.fwmark !== undefined) parts.push(`fwmark ${r.fwmark}`);
  if (r.table !== undefined) parts.push(`lookup ${r.table}`);
  return parts.join(' ');
}

/** Removes the rules and the table's routes; a missing netns or nothing to remove is fine. */
export async function removePolicyRouting(netns: string, pr: PolicyRoute): Promise<void> {
  if (!existsSync(netns)) return;
  for (const f of FAMILIES) {
    const now = await readFamily(netns, f, pr);
    const cmds = now.rules.map(deleteRule);
    if (now.routes.length > 0) cmds.push(`route flush table ${pr.routeTable}`);
    if (cmds.length > 0) await ipBatch(netns, f, cmds, false, 'remove');
  }
}
