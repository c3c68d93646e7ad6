// Representative pod rulesets for bench/apply-latency.ts, in nft and
// iptables-restore syntax, with the same meaning: Istio's REDIRECT-mode
// sidecar capture (reference.md) for IPv4 and IPv6, with DNS capture and
// conntrack zones. Used when the project's renderers (src/redirect) are not
// available; the bench prefers those.

import type { NftRenderer } from '../src/netns/nft-backend.js';
import type { RedirectPlan } from '../src/redirect/types.js';

const INBOUND_EXCLUDED = [15008, 15020, 15021, 15090];
const TABLES = ['weir_nat', 'weir_raw'] as const;

/** The default plan these rulesets stand for. */
export function benchPlan(): RedirectPlan {
  return {
    version: 1, mode: 'REDIRECT', proxyUid: 1337, proxyGid: 1337, inboundPort: 15006, outboundPort: 15001,
    dns: { enabled: true, port: 15053 },
    inbound: { capture: 'all', includePorts: [], excludePorts: INBOUND_EXCLUDED.map((p) => ({ from: p, to: p })) },
    outbound: { includeCidrs: 'all', excludeCidrs: [], includePorts: [], excludePorts: [] },
    excludeInterfaces: [],
  };
}

/** Full replace script: "declare empty; delete; define", one transaction. */
export function nftRuleset(hash = 'bench'): string {
  return TABLES.map((t) => `table inet ${t} {}\ndelete table inet ${t}\n`).join('') + nftDefinition(hash);
}

/** The renderer shape NftablesBackend takes, for this fixed ruleset. */
export const benchNftRenderer: NftRenderer = {
  tables: TABLES,
  render: () => nftRuleset(),
  renderDefinition: () => nftDefinition(),
};

export function nftDefinition(hash = 'bench'): string {
  return `table inet weir_nat {
  comment "weir plan=${hash}"
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    meta l4proto tcp jump inbound
  }
  chain inbound {
    tcp dport { ${INBOUND_EXCLUDED.join(', ')} } return
    meta l4proto tcp redirect to :15006
  }
  chain output {
    type nat hook output priority -100; policy accept;
    jump outbound
  }
  chain outbound {
    tcp dport 15020 return
    oifname "lo" ip saddr 127.0.0.6 return
    oifname "lo" ip6 saddr ::6 return
    oifname "lo" meta skuid 1337 ip daddr != 127.0.0.1 tcp dport != 15008 redirect to :15006
    oifname "lo" meta skuid 1337 ip6 daddr != ::1 tcp dport != 15008 redirect to :15006
    oifname "lo" meta skuid != 1337 return
    meta skuid 1337 return
    oifname "lo" meta skgid 1337 ip daddr != 127.0.0.1 tcp dport != 15008 redirect to :15006
    oifname "lo" meta skgid 1337 ip6 daddr != ::1 tcp dport != 15008 redirect to :15006
    oifname "lo" meta skgid != 1337 return
    meta skgid 1337 return
    meta l4proto { tcp, udp } th dport 53 redirect to :15053
    ip daddr 127.0.0.1 return
    ip6 daddr ::1 return
    meta l4proto tcp redirect to :15001
  }
}
table inet weir_raw {
  comment "weir plan=${hash}"
  chain output {
    type filter hook output priority raw; policy accept;
    udp dport 53 meta skuid 1337 ct zone set 1
    udp sport 15053 meta skuid 1337 ct zone set 2
  }
  chain prerouting {
    type filter hook prerouting priority raw; policy accept;
    udp sport 53 ct zone set 1
  }
}
`;
}

/** One iptables-restore input per family (iptables has no inet family). */
export function iptablesRulesets(): { v4: string; v6: string } {
  const one = (v6: boolean) => {
    const lo = v6 ? '::1/128' : '127.0.0.1/32';
    const passthrough = v6 ? '::6/128' : '127.0.0.6/32';
    return `*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:WEIR_INBOUND - [0:0]
:WEIR_IN_REDIRECT - [0:0]
:WEIR_OUTPUT - [0:0]
:WEIR_REDIRECT - [0:0]
-A PREROUTING -p tcp -j WEIR_INBOUND
-A OUTPUT -j WEIR_OUTPUT
${INBOUND_EXCLUDED.map((p) => `-A WEIR_INBOUND -p tcp --dport ${p} -j RETURN`).join('\n')}
-A WEIR_INBOUND -p tcp -j WEIR_IN_REDIRECT
-A WEIR_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A WEIR_REDIRECT -p tcp -j REDIRECT --to-ports 15001
-A WEIR_OUTPUT -p tcp --dport 15020 -j RETURN
-A WEIR_OUTPUT -s ${passthrough} -o lo -j RETURN
-A WEIR_OUTPUT ! -d ${lo} -o lo -p tcp ! --dport 15008 -m owner --uid-owner 1337 -j WEIR_IN_REDIRECT
-A WEIR_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN
-A WEIR_OUTPUT -m owner --uid-owner 1337 -j RETURN
-A WEIR_OUTPUT ! -d ${lo} -o lo -p tcp ! --dport 15008 -m owner --gid-owner 1337 -j WEIR_IN_REDIRECT
-A WEIR_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN
-A WEIR_OUTPUT -m owner --gid-owner 1337 -j RETURN
-A WEIR_OUTPUT -p udp --dport 53 -j REDIRECT --to-ports 15053
-A WEIR_OUTPUT -p tcp --dport 53 -j REDIRECT --to-ports 15053
-A WEIR_OUTPUT -d ${lo} -j RETURN
-A WEIR_OUTPUT -j WEIR_REDIRECT
COMMIT
*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A OUTPUT -p udp --dport 53 -m owner --uid-owner 1337 -j CT --zone 1
-A OUTPUT -p udp --sport 15053 -m owner --uid-owner 1337 -j CT --zone 2
-A PREROUTING -p udp --sport 53 -j CT --zone 1
COMMIT
`;
  };
  return { v4: one(false), v6: one(true) };
}
