// RedirectPlan → iptables-restore input, one file per family (iptables,
// ip6tables), for the nat and raw tables. The same rule semantics as
// render-nftables.ts, in weir's own chains, reached by one jump from each
// built-in chain:
//   nat  PREROUTING → WEIR_PREROUTING (→ WEIR_INBOUND)
//   nat  OUTPUT     → WEIR_OUTPUT (→ WEIR_DNS, WEIR_OUTBOUND)
//   raw  OUTPUT     → WEIR_DNS_ZONE_OUT,  raw PREROUTING → WEIR_DNS_ZONE_IN
// The text is meant for `iptables-restore --noflush`: `:CHAIN - [0:0]` creates
// or flushes weir's chains and leaves every other chain alone. The jumps in
// built-in chains carry the comment "weir plan=<hash>"; the backend deletes
// the jumps it finds before appending these, so re-applying never duplicates
// them (see src/netns/iptables-backend.ts).
import { FieldError } from '../common/errors.js';
import { formatCidr, formatPortRange } from './addr.js';
import { planHash } from './plan.js';
import {
  assertRenderable, DNS_ZONE_APP_TO_PROXY, DNS_ZONE_PROXY_UPSTREAM, INBOUND_PASSTHROUGH_SOURCE, LOCALHOST, METRICS_PORT, TUNNEL_PORT,
} from './render-common.js';
import type { Cidr, PortRange, RedirectPlan } from './types.js';

export type IptablesTableName = 'nat' | 'raw' | 'mangle';
export const IPTABLES_TABLES: readonly IptablesTableName[] = ['nat', 'raw', 'mangle'];
/** Every chain weir creates starts with this; nothing else does. */
export const IPTABLES_CHAIN_PREFIX = 'WEIR_';

export interface IptablesTable {
  table: IptablesTableName;
  /** weir's chains, in declaration order. */
  chains: string[];
  /** Rules in weir's chains, in order, as `-A CHAIN ...`. */
  rules: string[];
  /** Jumps from built-in chains into weir's, as `-A BUILTIN ... -j WEIR_...`. */
  jumps: string[];
}

export interface IptablesFamilyRules { family: 4 | 6; tables: IptablesTable[] }

const dport = (r: PortRange): string => `--dport ${formatPortRange(r, ':')}`;

function natTable(plan: RedirectPlan, family: 4 | 6, comment: string): IptablesTable {
  const { proxyUid: uid, proxyGid: gid } = plan;
  const rules: string[] = [];
  const add = (chain: string, spec: string): void => { rules.push(`-A ${chain} ${spec}`); };
  const chains = ['WEIR_PREROUTING', 'WEIR_OUTPUT', 'WEIR_OUTBOUND'];

  for (const ifname of plan.excludeInterfaces) add('WEIR_PREROUTING', `-i ${ifname} -j RETURN`);
  // In TPROXY mode inbound is taken in mangle (tproxyTable), without NAT.
  if (plan.inbound.capture !== 'none' && !plan.tproxy) {
    chains.splice(1, 0, 'WEIR_INBOUND');
    add('WEIR_PREROUTING', '-p tcp -j WEIR_INBOUND');
    for (const r of inboundRules(plan, `-j REDIRECT --to-ports ${plan.inboundPort}`)) add('WEIR_INBOUND', r);
  }

  for (const ifname of plan.excludeInterfaces) add('WEIR_OUTPUT', `-o ${ifname} -j RETURN`);
  if (plan.dns.enabled) {
    chains.push('WEIR_DNS');
    add('WEIR_OUTPUT', '-p udp --dport 53 -j WEIR_DNS');
    add('WEIR_OUTPUT', '-p tcp --dport 53 -j WEIR_DNS');
    add('WEIR_DNS', `-m owner --uid-owner ${uid} -j RETURN`);
    add('WEIR_DNS', `-m owner --gid-owner ${gid} -j RETURN`);
    add('WEIR_DNS', `-p udp --dport 53 -j REDIRECT --to-ports ${plan.dns.port}`);
    add('WEIR_DNS', `-p tcp --dport 53 -j REDIRECT --to-ports ${plan.dns.port}`);
  }
  add('WEIR_OUTPUT', '-p tcp -j WEIR_OUTBOUND');

  const host = family === 4 ? 32 : 128;
  const O = 'WEIR_OUTBOUND';
  // TPROXY: the proxy's marked hand-off to the app passes (see render-nftables.ts).
  if (plan.tproxy) add(O, `-m mark --mark ${plan.tproxy.mark} -j RETURN`);
  if (plan.style === 'linkerd') {
    add(O, `-m owner --uid-owner ${uid} -j RETURN`);
    add(O, `-m owner --gid-owner ${gid} -j RETURN`);
    add(O, '-o lo -j RETURN');
  } else {
    add(O, `-p tcp --dport ${METRICS_PORT} -j RETURN`);
    add(O, `-s ${INBOUND_PASSTHROUGH_SOURCE[family]}/${host} -o lo -j RETURN`);
    for (const [flag, id] of [['--uid-owner', uid], ['--gid-owner', gid]] as const) {
      add(O, `! -d ${LOCALHOST[family]}/${host} -o lo -p tcp ! --dport ${TUNNEL_PORT} -m owner ${flag} ${id} -j REDIRECT --to-ports ${plan.inboundPort}`);
      add(O, `-o lo -m owner ! ${flag} ${id} -j RETURN`);
      add(O, `-m owner ${flag} ${id} -j RETURN`);
    }
  }
  add(O, `-d ${LOCALHOST[family]}/${host} -j RETURN`);
  const o = plan.outbound;
  for (const r of o.excludePorts) add(O, `-p tcp ${dport(r)} -j RETURN`);
  for (const r of o.includePorts) add(O, `-p tcp ${dport(r)} -j REDIRECT --to-ports ${plan.outboundPort}`);
  const mine = (c: Cidr[]): Cidr[] => c.filter((x) => x.family === family);
  for (const c of mine(o.excludeCidrs)) add(O, `-d ${formatCidr(c)} -j RETURN`);
  if (o.includeCidrs === 'all') add(O, `-p tcp -j REDIRECT --to-ports ${plan.outboundPort}`);
  else for (const c of mine(o.includeCidrs)) add(O, `-d ${formatCidr(c)} -p tcp -j REDIRECT --to-ports ${plan.outboundPort}`);

  const tag = `-m comment --comment "${comment}"`;
  return {
    table: 'nat', chains, rules,
    jumps: [`-A PREROUTING ${tag} -j WEIR_PREROUTING`, `-A OUTPUT ${tag} -j WEIR_OUTPUT`],
  };
}

/** Inbound capture rules (without the chain name): excluded ports return, the rest get `target`. */
function inboundRules(plan: RedirectPlan, target: string): string[] {
  const rules = plan.inbound.excludePorts.map((r) => `-p tcp ${dport(r)} -j RETURN`);
  if (plan.inbound.capture === 'all') rules.push(`-p tcp ${target}`);
  else if (plan.inbound.capture === 'list') for (const r of plan.inbound.includePorts) rules.push(`-p tcp ${dport(r)} ${target}`);
  return rules;
}

/**
 * TPROXY inbound in mangle: the same design as the weir_tproxy table of
 * render-nftables.ts (read the reasoning there). CONNMARK --save-mark comes
 * before TPROXY sets the mark, so only the proxy's own marked hand-off
 * connection is remembered; mangle OUTPUT restoring the mark makes the
 * kernel re-route the app's replies through the policy route.
 */
function tproxyTable(plan: RedirectPlan, tproxy: NonNullable<RedirectPlan['tproxy']>, family: 4 | 6, comment: string): IptablesTable {
  const mark = tproxy.mark;
  const rules: string[] = [];
  const add = (chain: string, spec: string): void => { rules.push(`-A ${chain} ${spec}`); };
  const chains = ['WEIR_TPROXY_PREROUTING', 'WEIR_TPROXY_OUTPUT'];
  for (const ifname of plan.excludeInterfaces) add('WEIR_TPROXY_PREROUTING', `-i ${ifname} -j RETURN`);
  add('WEIR_TPROXY_PREROUTING', `-m mark --mark ${mark} -j CONNMARK --save-mark`);
  add('WEIR_TPROXY_PREROUTING', `-m mark --mark ${mark} -j RETURN`);
  add('WEIR_TPROXY_PREROUTING', '-i lo -j RETURN');
  // Replies to connections the pod opened (the proxy's upstreams): TPROXY
  // would find their non-transparent socket and DROP the packet.
  add('WEIR_TPROXY_PREROUTING', '-m conntrack --ctdir REPLY -j RETURN');
  if (plan.inbound.capture !== 'none') {
    chains.splice(1, 0, 'WEIR_TPROXY_INBOUND');
    add('WEIR_TPROXY_PREROUTING', '-p tcp -j WEIR_TPROXY_INBOUND');
    const onIp = family === 4 ? '0.0.0.0' : '::';
    for (const r of inboundRules(plan, `-j TPROXY --on-port ${plan.inboundPort} --on-ip ${onIp} --tproxy-mark ${mark}/0xffffffff`)) add('WEIR_TPROXY_INBOUND', r);
  }
  add('WEIR_TPROXY_OUTPUT', `-m connmark --mark ${mark} -j CONNMARK --restore-mark`);
  const tag = `-m comment --comment "${comment}"`;
  return {
    table: 'mangle', chains, rules,
    jumps: [`-A PREROUTING ${tag} -j WEIR_TPROXY_PREROUTING`, `-A OUTPUT ${tag} -j WEIR_TPROXY_OUTPUT`],
  };
}

/**
 * conntrack zones for DNS, as in render-nftables.ts. The CT target only sets
 * a zone on a packet that is not tracked yet, so the first matching rule
 * wins: the specific cases come before the catch-all.
 */
function rawTable(plan: RedirectPlan, comment: string): IptablesTable {
  const { proxyUid: uid, proxyGid: gid } = plan;
  const rules: string[] = [];
  // DNS over an excluded interface is not captured: it stays in the default
  // zone both ways (a query and its reply must share a zone).
  for (const ifname of plan.excludeInterfaces) rules.push(`-A WEIR_DNS_ZONE_OUT -o ${ifname} -j RETURN`);
  for (const ifname of plan.excludeInterfaces) rules.push(`-A WEIR_DNS_ZONE_IN -i ${ifname} -j RETURN`);
  for (const proto of ['udp', 'tcp']) {
    rules.push(`-A WEIR_DNS_ZONE_OUT -p ${proto} --sport ${plan.dns.port} -j CT --zone ${DNS_ZONE_APP_TO_PROXY}`);
  }
  for (const proto of ['udp', 'tcp']) {
    rules.push(`-A WEIR_DNS_ZONE_OUT -p ${proto} --dport 53 -m owner --uid-owner ${uid} -j CT --zone ${DNS_ZONE_PROXY_UPSTREAM}`);
    rules.push(`-A WEIR_DNS_ZONE_OUT -p ${proto} --dport 53 -m owner --gid-owner ${gid} -j CT --zone ${DNS_ZONE_PROXY_UPSTREAM}`);
    rules.push(`-A WEIR_DNS_ZONE_OUT -p ${proto} --dport 53 -j CT --zone ${DNS_ZONE_APP_TO_PROXY}`);
  }
  for (const proto of ['udp', 'tcp']) {
    rules.push(`-A WEIR_DNS_ZONE_IN -p ${proto} --sport 53 -j CT --zone ${DNS_ZONE_PROXY_UPSTREAM}`);
  }
  const tag = `-m comment --comment "${comment}"`;
  return {
    table: 'raw', chains: ['WEIR_DNS_ZONE_IN', 'WEIR_DNS_ZONE_OUT'], rules,
    jumps: [`-A PREROUTING ${tag} -j WEIR_DNS_ZONE_IN`, `-A OUTPUT ${tag} -j WEIR_DNS_ZONE_OUT`],
  };
}

/** The plan's chains, rules and jumps per table, for one family. */
export function renderIptablesRules(plan: RedirectPlan, family: 4 | 6): IptablesFamilyRules {
  assertRenderable(plan, 'iptables');
  // Only the eBPF backend's inbound-only plan carries it, and that plan goes to nftables.
  if (plan.untrackLoopback) throw new FieldError('plan.untrackLoopback', 'the iptables renderer does not render it (the ebpf backend keeps its inbound rules on nftables)');
  const comment = `weir plan=${planHash(plan)}`;
  const tables = [natTable(plan, family, comment)];
  if (plan.dns.enabled) tables.push(rawTable(plan, comment));
  if (plan.tproxy) tables.push(tproxyTable(plan, plan.tproxy, family, comment));
  return { family, tables };
}

export interface RestoreHooks {
  /** Lines before the chain declarations (deleting old jumps). */
  before?: (t: IptablesTable) => string[];
  /** Lines after the declarations have flushed weir's chains (deleting chains no longer used). */
  afterDeclarations?: (t: IptablesTable) => string[];
}

/** iptables-restore text (for --noflush) of the given tables. */
export function formatRestore(tables: IptablesTable[], hooks: RestoreHooks = {}): string {
  let out = '';
  for (const t of tables) {
    out += `*${t.table}\n`;
    for (const line of hooks.before?.(t) ?? []) out += `${line}\n`;
    for (const c of t.chains) out += `:${c} - [0:0]\n`;
    for (const line of hooks.afterDeclarations?.(t) ?? []) out += `${line}\n`;
    for (const r of [...t.rules, ...t.jumps]) out += `${r}\n`;
    out += 'COMMIT\n';
  }
  return out;
}

/** iptables-restore --noflush input for IPv4 and IPv6, assuming no weir jump exists yet (the backend handles re-apply). */
export function renderIptables(plan: RedirectPlan): { v4: string; v6: string } {
  return {
    v4: formatRestore(renderIptablesRules(plan, 4).tables),
    v6: formatRestore(renderIptablesRules(plan, 6).tables),
  };
}
