// RedirectPlan → one nft script (family inet: IPv4 and IPv6 in one ruleset).
//
// The script replaces weir's tables in ONE transaction: "table X" (declares
// it, empty, so the delete cannot fail), "delete table X", then the full
// definition. Either the whole new ruleset is live or the old one still is.
//
// DNS and conntrack zones (istio 33469): the app's query to N:53 is DNATed to
// the local DNS proxy; the proxy then asks N:53 itself. If the proxy's
// upstream socket reuses the app's (already closed) source port, its packet
// matches the app's conntrack entry and is DNATed back to 15053. Zones keep
// the two flows apart:
//   zone 1: proxy → upstream :53 (output, by proxy uid/gid), and replies
//           arriving with source port 53 (prerouting);
//   zone 2: app → :53 (output), and the proxy's answers from port 15053
//           (output), so the answer meets the app's DNAT entry and is
//           un-NATed back to N:53.
// Packets looping back over lo keep the conntrack entry they got in output;
// a zone set in prerouting does not change an already tracked packet.
import { formatCidr, formatPortRange } from './addr.js';
import { planHash } from './plan.js';
import {
  assertRenderable, DNS_ZONE_APP_TO_PROXY, DNS_ZONE_PROXY_UPSTREAM, INBOUND_PASSTHROUGH_SOURCE, LOCALHOST, METRICS_PORT, TUNNEL_PORT,
} from './render-common.js';
import type { Cidr, PortRange, RedirectPlan } from './types.js';

export const NFT_FAMILY = 'inet';
export const NFT_NAT_TABLE = 'weir_nat';
export const NFT_RAW_TABLE = 'weir_raw';
/** TPROXY mode only; a table of its own so its presence alone says a netns has TPROXY (and policy routing) to undo. */
export const NFT_TPROXY_TABLE = 'weir_tproxy';
/** Every table weir owns, all in family inet. */
export const NFT_TABLES: readonly string[] = [NFT_NAT_TABLE, NFT_RAW_TABLE, NFT_TPROXY_TABLE];

/** Single element, or an anonymous set. */
function set(values: string[]): string {
  return values.length === 1 ? values[0] : `{ ${values.join(', ')} }`;
}
const ports = (r: PortRange[]): string => set(r.map((p) => formatPortRange(p, '-')));
const quoted = (names: string[]): string => set(names.map((n) => `"${n}"`));
const cidrs = (c: Cidr[]): string => set(c.map(formatCidr));

function natTable(plan: RedirectPlan, comment: string): string {
  const { proxyUid: uid, proxyGid: gid } = plan;
  const lines: string[] = [];
  const chain = (name: string, hook: string | undefined, rules: string[]): void => {
    lines.push(`\tchain ${name} {`);
    if (hook) lines.push(`\t\t${hook}`);
    for (const r of rules) lines.push(`\t\t${r}`);
    lines.push('\t}');
  };
  const ifSkip = (dir: 'iifname' | 'oifname'): string[] =>
    plan.excludeInterfaces.length > 0 ? [`${dir} ${quoted(plan.excludeInterfaces)} return`] : [];

  lines.push(`table ${NFT_FAMILY} ${NFT_NAT_TABLE} {`, `\tcomment "${comment}"`);

  // Inbound: TCP arriving from outside the pod (in TPROXY mode the
  // weir_tproxy table takes it instead, without NAT).
  const inboundNat = plan.inbound.capture !== 'none' && !plan.tproxy;
  chain('prerouting', 'type nat hook prerouting priority -100; policy accept;', [
    ...ifSkip('iifname'),
    ...(inboundNat ? ['meta l4proto tcp jump inbound'] : []),
  ]);
  if (inboundNat) chain('inbound', undefined, inboundRules(plan, `redirect to :${plan.inboundPort}`));

  chain('output', 'type nat hook output priority -100; policy accept;', [
    ...ifSkip('oifname'),
    ...(plan.dns.enabled ? ['meta l4proto { tcp, udp } th dport 53 jump dns'] : []),
    'meta l4proto tcp jump outbound',
  ]);
  if (plan.dns.enabled) {
    chain('dns', undefined, [
      `meta skuid ${uid} return`,
      `meta skgid ${gid} return`,
      `udp dport 53 redirect to :${plan.dns.port}`,
      `tcp dport 53 redirect to :${plan.dns.port}`,
    ]);
  }

  // TPROXY: the proxy's hand-off to the app (marked, from the client's
  // address, to the pod IP over lo) must reach the app untouched.
  const out: string[] = plan.tproxy ? [`meta mark ${plan.tproxy.mark} return`] : [];
  if (plan.style === 'linkerd') {
    // linkerd-cni: the proxy's own traffic and anything over lo pass.
    out.push(`meta skuid ${uid} return`, `meta skgid ${gid} return`, 'oifname "lo" return');
  } else {
    out.push(`tcp dport ${METRICS_PORT} return`);
    // Both families in one inet table: each address match implies its family.
    out.push(`oifname "lo" ip saddr ${INBOUND_PASSTHROUGH_SOURCE[4]} return`);
    out.push(`oifname "lo" ip6 saddr ${INBOUND_PASSTHROUGH_SOURCE[6]} return`);
    for (const [key, id] of [['skuid', uid], ['skgid', gid]] as const) {
      // The proxy calling a pod-local address that is not localhost (its own
      // pod IP / a VIP routed to lo): hand it to the inbound listener.
      out.push(`oifname "lo" ip daddr != ${LOCALHOST[4]} tcp dport != ${TUNNEL_PORT} meta ${key} ${id} redirect to :${plan.inboundPort}`);
      out.push(`oifname "lo" ip6 daddr != ${LOCALHOST[6]} tcp dport != ${TUNNEL_PORT} meta ${key} ${id} redirect to :${plan.inboundPort}`);
      out.push(`oifname "lo" meta ${key} != ${id} return`);
      out.push(`meta ${key} ${id} return`);
    }
  }
  out.push(`ip daddr ${LOCALHOST[4]} return`, `ip6 daddr ${LOCALHOST[6]} return`);
  const o = plan.outbound;
  if (o.excludePorts.length > 0) out.push(`tcp dport ${ports(o.excludePorts)} return`);
  if (o.includePorts.length > 0) out.push(`tcp dport ${ports(o.includePorts)} redirect to :${plan.outboundPort}`);
  const ex4 = o.excludeCidrs.filter((c) => c.family === 4);
  const ex6 = o.excludeCidrs.filter((c) => c.family === 6);
  if (ex4.length > 0) out.push(`ip daddr ${cidrs(ex4)} return`);
  if (ex6.length > 0) out.push(`ip6 daddr ${cidrs(ex6)} return`);
  if (o.includeCidrs === 'all') {
    out.push(`meta l4proto tcp redirect to :${plan.outboundPort}`);
  } else {
    const in4 = o.includeCidrs.filter((c) => c.family === 4);
    const in6 = o.includeCidrs.filter((c) => c.family === 6);
    if (in4.length > 0) out.push(`ip daddr ${cidrs(in4)} meta l4proto tcp redirect to :${plan.outboundPort}`);
    if (in6.length > 0) out.push(`ip6 daddr ${cidrs(in6)} meta l4proto tcp redirect to :${plan.outboundPort}`);
  }
  chain('outbound', undefined, out);
  lines.push('}');
  return lines.join('\n') + '\n';
}

/** The inbound chain's rules: excluded ports pass, the rest (or the listed ports) get `action`. */
function inboundRules(plan: RedirectPlan, action: string): string[] {
  const rules = [`tcp dport ${ports(plan.inbound.excludePorts)} return`];
  if (plan.inbound.capture === 'all') rules.push(`meta l4proto tcp ${action}`);
  else if (plan.inbound.capture === 'list') rules.push(`tcp dport ${ports(plan.inbound.includePorts)} ${action}`);
  return rules;
}

/**
 * TPROXY inbound (Istio's interceptionMode TPROXY), no NAT, so the proxy and
 * then the app see the client's real address:
 * - prerouting (mangle priority): TCP from outside is delivered to the
 *   proxy's IP_TRANSPARENT listener with mark M (the fwmark rule routes
 *   marked packets to the local table; see src/netns/policy-routing.ts).
 * - The proxy hands the connection to the app from the client's address,
 *   with SO_MARK M, to the pod IP over lo. Seen again in prerouting, the
 *   mark is saved on the connection and the packet passes.
 * - The app's replies to that connection are addressed to the client (not a
 *   local address): output restores M from the connection, the route hook
 *   re-routes, and the policy route delivers them back over lo to the proxy.
 * The client's own connection never gets a ct mark (its packets carry M only
 * after the save rule), so the proxy's replies to the client leave normally.
 */
function tproxyTable(plan: RedirectPlan, tproxy: NonNullable<RedirectPlan['tproxy']>, comment: string): string {
  const mark = tproxy.mark;
  const lines = [`table ${NFT_FAMILY} ${NFT_TPROXY_TABLE} {`, `\tcomment "${comment}"`, '\tchain prerouting {', '\t\ttype filter hook prerouting priority mangle; policy accept;'];
  if (plan.excludeInterfaces.length > 0) lines.push(`\t\tiifname ${quoted(plan.excludeInterfaces)} return`);
  // Replies to connections the pod opened never need TPROXY (it would only
  // find their non-transparent socket; xt_TPROXY drops such packets).
  lines.push(`\t\tmeta mark ${mark} ct mark set meta mark return`, '\t\tiifname "lo" return', '\t\tct direction reply return');
  if (plan.inbound.capture !== 'none') lines.push('\t\tmeta l4proto tcp jump inbound');
  lines.push('\t}');
  if (plan.inbound.capture !== 'none') {
    lines.push('\tchain inbound {', ...inboundRules(plan, `tproxy to :${plan.inboundPort} meta mark set ${mark} accept`).map((r) => `\t\t${r}`), '\t}');
  }
  lines.push('\tchain output {', '\t\ttype route hook output priority mangle; policy accept;', `\t\tct mark ${mark} meta mark set ct mark`, '\t}', '}');
  return lines.join('\n') + '\n';
}

/** The DNS zone rules of weir_raw's output and prerouting chains (see the top of this file). */
function dnsZoneRules(plan: RedirectPlan): { output: string[]; prerouting: string[] } {
  const { proxyUid: uid, proxyGid: gid } = plan;
  const dns53 = 'meta l4proto { tcp, udp } th dport 53';
  // DNS over an excluded interface is not captured, so it stays in the
  // default zone both ways (a query and its reply must share a zone).
  const skipInterfaces = (dir: 'iifname' | 'oifname'): string[] =>
    plan.excludeInterfaces.length > 0 ? [`${dir} ${quoted(plan.excludeInterfaces)} return`] : [];
  return {
    output: [
      ...skipInterfaces('oifname'),
      `meta l4proto { tcp, udp } th sport ${plan.dns.port} ct zone set ${DNS_ZONE_APP_TO_PROXY} return`,
      `${dns53} meta skuid ${uid} ct zone set ${DNS_ZONE_PROXY_UPSTREAM} return`,
      `${dns53} meta skgid ${gid} ct zone set ${DNS_ZONE_PROXY_UPSTREAM} return`,
      `${dns53} ct zone set ${DNS_ZONE_APP_TO_PROXY}`,
    ],
    prerouting: [...skipInterfaces('iifname'), `meta l4proto { tcp, udp } th sport 53 ct zone set ${DNS_ZONE_PROXY_UPSTREAM}`],
  };
}

/**
 * plan.untrackLoopback (the eBPF backend's inbound-only plan): no conntrack
 * for lo traffic whose both ends are localhost or the inbound passthrough
 * source. The set is symmetric, so a flow's packets are untracked both ways
 * (a half-tracked flow would be picked up mid-stream as new and meet the nat
 * chains). No such flow is ever NATed by that plan's nat table: its only lo
 * redirect needs a destination other than 127.0.0.1 (::1) and a source other
 * than 127.0.0.6 (::6); the one flow it would have taken and now does not is
 * the proxy itself dialling 127.0.0.6 (::6), which no proxy does. Output
 * alone suffices: a packet looped over lo keeps its untracked state in
 * prerouting.
 */
function untrackLoopbackRules(): string[] {
  const v4 = `{ ${LOCALHOST[4]}, ${INBOUND_PASSTHROUGH_SOURCE[4]} }`;
  const v6 = `{ ${LOCALHOST[6]}, ${INBOUND_PASSTHROUGH_SOURCE[6]} }`;
  return [`oifname "lo" ip saddr ${v4} ip daddr ${v4} notrack`, `oifname "lo" ip6 saddr ${v6} ip6 daddr ${v6} notrack`];
}

/** weir_raw: conntrack decisions made before conntrack sees a packet (DNS zones, untracked loopback); undefined when the plan needs none. */
function rawTable(plan: RedirectPlan, comment: string): string | undefined {
  const dns = plan.dns.enabled ? dnsZoneRules(plan) : { output: [], prerouting: [] };
  const output = [...(plan.untrackLoopback ? untrackLoopbackRules() : []), ...dns.output];
  if (output.length === 0 && dns.prerouting.length === 0) return undefined;
  const chain = (name: string, rules: string[]): string[] =>
    rules.length === 0 ? [] : [`\tchain ${name} {`, `\t\ttype filter hook ${name} priority raw; policy accept;`, ...rules.map((r) => `\t\t${r}`), '\t}'];
  return [`table ${NFT_FAMILY} ${NFT_RAW_TABLE} {`, `\tcomment "${comment}"`, ...chain('output', output), ...chain('prerouting', dns.prerouting), '}'].join('\n') + '\n';
}

/** Only the table definitions, without the replace prelude (for a netns known to have no weir table). */
export function renderNftablesDefinition(plan: RedirectPlan): string {
  assertRenderable(plan, 'nftables');
  const comment = `weir plan=${planHash(plan)}`;
  return natTable(plan, comment) + (rawTable(plan, comment) ?? '') + (plan.tproxy ? tproxyTable(plan, plan.tproxy, comment) : '');
}

function replacePrelude(): string {
  return NFT_TABLES.map((t) => `table ${NFT_FAMILY} ${t}\ndelete table ${NFT_FAMILY} ${t}\n`).join('');
}

/** Complete script: atomically replaces weir's tables with the plan's when run as one transaction. */
export function renderNftables(plan: RedirectPlan): string {
  const definition = renderNftablesDefinition(plan);
  return replacePrelude() + definition;
}

/** Removes weir's tables; succeeds whether or not they exist. */
export function renderNftablesRemoval(): string {
  return replacePrelude();
}
