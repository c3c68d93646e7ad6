// SPDX-License-Identifier: GPL-2.0
/* weir's eBPF capture: cgroup socket hooks that do what the nftables
 * backend's output chain does, before the packet exists.
 *
 * - connect4/6: a captured pod's outbound TCP is pointed at its proxy on
 *   127.0.0.1/::1:outbound_port; DNS (TCP and connected UDP :53) at the DNS
 *   proxy. The dialled address is kept by socket cookie (TCP, weir_pending,
 *   until established) or in the socket's local storage (UDP, weir_orig).
 * - sockops: at active established, copies it to weir_tuples under the
 *   connection's 4-tuple, because the proxy asks on its ACCEPTED socket; at
 *   passive established (the proxy's accepted socket, always later: the
 *   client's callback runs before it sends the ACK that makes the child),
 *   moves it into the accepted socket's own storage (weir_accepted) and
 *   deletes the tuple. No state callbacks, no per-close map work.
 * - getsockopt: SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST answered from
 *   weir_accepted, so the proxy's conntrack-based code runs unchanged.
 * - sendmsg4/6 + recvmsg4/6: unconnected UDP DNS to the DNS proxy, and its
 *   replies appear to come from the server the app asked.
 * - sockops (established) + sk_msg: the same-node shortcut, weir_shortcut.h.
 *
 * Membership: weir_pods, keyed by the netns cookie, holds each captured
 * pod's plan (bpf/weir_maps.h). No entry, no effect: the programs may sit on
 * the cgroup2 root and still touch only pods the agent programmed.
 *
 * Only UAPI context structs are read (no kernel-internal layout), so the
 * object is portable across kernels without relocations; BTF (-g) is kept
 * for the maps and for libbpf. */
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/socket.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "weir_maps.h"

#define AF_INET 2
#define AF_INET6 10
#define SOL_IP 0
#define SOL_IPV6 41
#define SO_ORIGINAL_DST 80 /* == IP6T_SO_ORIGINAL_DST */
#define METRICS_PORT 15020
#define TCP_CLOSE_STATE 7  /* BPF_TCP_CLOSE */
/* Context and socket fields must be loaded at their own offset: clang would
 * otherwise fold neighbouring reads into pointer arithmetic the verifier
 * rejects ("dereference of modified ctx ptr"). */
#define RD(x) (*(volatile __typeof__(x) *)&(x))

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 16384);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, __u64);
  __type(value, struct weir_pod_plan);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} weir_pods SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_SK_STORAGE);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, int);
  __type(value, struct weir_orig);
  /* Pinned too: programs reloaded by a new agent keep finding what the old ones stored. */
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} weir_orig SEC(".maps");

/* A redirected TCP connection's original destination from connect4 to the
 * client's established, by socket cookie. A preallocated LRU rather than
 * socket storage: an update takes a free node instead of allocating (and
 * later RCU-freeing) one per connection, and the entry lives one loopback
 * handshake. UDP keeps socket storage (weir_orig): recvmsg needs it for the
 * socket's whole life. */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 65536);
  __type(key, __u64);
  __type(value, struct weir_orig);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} weir_pending SEC(".maps");

/* LRU: an entry lives from the client's established to the proxy's (one
 * round trip on loopback); the LRU bounds what a handshake that never
 * completes on the proxy's side leaves behind. */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 262144);
  __type(key, struct weir_tuple);
  __type(value, struct weir_orig);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} weir_tuples SEC(".maps");

/* The original destination of a proxy's accepted socket, freed with the
 * socket: getsockopt's answer without a hash lookup, and a socket without an
 * entry (everything not redirected by connect4) answers nothing at once. */
struct {
  __uint(type, BPF_MAP_TYPE_SK_STORAGE);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, int);
  __type(value, struct weir_orig);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} weir_accepted SEC(".maps");

static __always_inline int in_cidrs(const struct weir_cidr *c, __u32 n, const __u32 *a) {
  for (__u32 i = 0; i < WEIR_MAX_CIDRS; i++) {
    if (i >= n) break;
    if ((a[0] & c[i].mask[0]) == c[i].addr[0] && (a[1] & c[i].mask[1]) == c[i].addr[1] &&
        (a[2] & c[i].mask[2]) == c[i].addr[2] && (a[3] & c[i].mask[3]) == c[i].addr[3])
      return 1;
  }
  return 0;
}

static __always_inline int in_ports(const struct weir_port_range *r, __u32 n, __u16 port) {
  for (__u32 i = 0; i < WEIR_MAX_PORT_RANGES; i++) {
    if (i >= n) break;
    if (port >= r[i].from && port <= r[i].to) return 1;
  }
  return 0;
}

static __always_inline int is_local(const struct weir_pod_plan *p, const __u32 *a) {
  for (__u32 i = 0; i < WEIR_MAX_LOCAL_ADDRS; i++) {
    if (i >= p->n_local) break;
    if (a[0] == p->local[i][0] && a[1] == p->local[i][1] && a[2] == p->local[i][2] && a[3] == p->local[i][3]) return 1;
  }
  return 0;
}

static __always_inline int is_mapped(const __u32 *a) {
  return a[0] == 0 && a[1] == 0 && a[2] == bpf_htonl(0xffff);
}

static __always_inline int is_loopback(const __u32 *a) {
  if (is_mapped(a)) return (bpf_ntohl(a[3]) >> 24) == 127;
  return a[0] == 0 && a[1] == 0 && a[2] == 0 && a[3] == bpf_htonl(1);
}

static __always_inline const struct weir_pod_plan *plan_of(__u64 cookie) {
  const struct weir_pod_plan *p = bpf_map_lookup_elem(&weir_pods, &cookie);
  if (!p || p->layout != WEIR_LAYOUT_VERSION) return 0;
  return p;
}

/* The caller's plan when its netns is captured and it is not the proxy. */
static __always_inline const struct weir_pod_plan *captured_caller(void *ctx) {
  const struct weir_pod_plan *p = plan_of(bpf_get_netns_cookie(ctx));
  if (!p) return 0;
  __u64 ugid = bpf_get_current_uid_gid();
  if ((__u32)ugid == p->proxy_uid || (__u32)(ugid >> 32) == p->proxy_gid) return 0;
  return p;
}

/* Where a captured pod's connection/datagram to (a, port) goes: 0 = untouched,
 * else the local port to send it to. Same order as render-nftables.ts's
 * output chain (dns first; then 15020, loopback, pod-local, ports, CIDRs). */
static __always_inline __u16 verdict(const struct weir_pod_plan *p, const __u32 *a, __u16 port, int tcp) {
  if (in_cidrs(p->skip_cidrs, p->n_skip_cidrs, a)) return 0;
  if (port == 53 && (p->flags & WEIR_F_DNS)) return p->dns_port;
  if (!tcp) return 0;
  if (!(p->flags & WEIR_F_LINKERD) && port == METRICS_PORT) return 0;
  if (is_loopback(a) || is_local(p, a)) return 0;
  if (in_ports(p->exclude_ports, p->n_exclude_ports, port)) return 0;
  if (in_ports(p->include_ports, p->n_include_ports, port)) return p->outbound_port;
  if (in_cidrs(p->exclude_cidrs, p->n_exclude_cidrs, a)) return 0;
  if ((p->flags & WEIR_F_INCLUDE_ALL) || in_cidrs(p->include_cidrs, p->n_include_cidrs, a)) return p->outbound_port;
  return 0;
}

static __always_inline int remember(struct bpf_sock_addr *ctx, const __u32 *a, __u16 port_be, __u8 kind, __u8 family, int tcp) {
  if (tcp) {
    /* TCP to the DNS proxy: nothing asks for its original destination. */
    if (kind != WEIR_ORIG_TCP_OUTBOUND) return 1;
    struct weir_orig v = {{a[0], a[1], a[2], a[3]}, port_be, kind, family};
    __u64 cookie = bpf_get_socket_cookie(ctx);
    return bpf_map_update_elem(&weir_pending, &cookie, &v, BPF_ANY) == 0;
  }
  struct bpf_sock *sk = ctx->sk;
  if (!sk) return 0;
  struct weir_orig *o = bpf_sk_storage_get(&weir_orig, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
  if (!o) return 0;
  o->addr[0] = a[0]; o->addr[1] = a[1]; o->addr[2] = a[2]; o->addr[3] = a[3];
  o->port = port_be;
  o->kind = kind;
  o->family = family;
  return 1;
}

static __always_inline int redirect4(struct bpf_sock_addr *ctx, int tcp) {
  const struct weir_pod_plan *p = captured_caller(ctx);
  if (!p) return 1;
  __u32 a[4] = {0, 0, bpf_htonl(0xffff), ctx->user_ip4};
  __u16 port = bpf_ntohs((__u16)ctx->user_port);
  __u16 to = verdict(p, a, port, tcp);
  if (!to) return 1;
  /* No storage, no rewrite: a connection the proxy could not place is worse than an uncaptured one. */
  if (!remember(ctx, a, (__u16)ctx->user_port, to == p->dns_port && port == 53 ? WEIR_ORIG_DNS : WEIR_ORIG_TCP_OUTBOUND, 4, tcp)) return 1;
  ctx->user_ip4 = bpf_htonl(0x7f000001);
  ctx->user_port = bpf_htons(to);
  return 1;
}

static __always_inline int redirect6(struct bpf_sock_addr *ctx, int tcp) {
  const struct weir_pod_plan *p = captured_caller(ctx);
  if (!p) return 1;
  __u32 a[4] = {RD(ctx->user_ip6[0]), RD(ctx->user_ip6[1]), RD(ctx->user_ip6[2]), RD(ctx->user_ip6[3])};
  __u16 port = bpf_ntohs((__u16)ctx->user_port);
  __u16 to = verdict(p, a, port, tcp);
  if (!to) return 1;
  int mapped = is_mapped(a);
  if (!remember(ctx, a, (__u16)ctx->user_port, to == p->dns_port && port == 53 ? WEIR_ORIG_DNS : WEIR_ORIG_TCP_OUTBOUND, mapped ? 4 : 6, tcp)) return 1;
  /* A dual-stack socket dialling an IPv4 address stays IPv4: ::ffff:127.0.0.1. */
  ctx->user_ip6[0] = 0;
  ctx->user_ip6[1] = 0;
  ctx->user_ip6[2] = mapped ? bpf_htonl(0xffff) : 0;
  ctx->user_ip6[3] = mapped ? bpf_htonl(0x7f000001) : bpf_htonl(1);
  ctx->user_port = bpf_htons(to);
  return 1;
}

SEC("cgroup/connect4")
int weir_connect4(struct bpf_sock_addr *ctx) {
  if (ctx->protocol == IPPROTO_TCP) return redirect4(ctx, 1);
  if (ctx->protocol == IPPROTO_UDP) return redirect4(ctx, 0);
  return 1;
}

SEC("cgroup/connect6")
int weir_connect6(struct bpf_sock_addr *ctx) {
  if (ctx->protocol == IPPROTO_TCP) return redirect6(ctx, 1);
  if (ctx->protocol == IPPROTO_UDP) return redirect6(ctx, 0);
  return 1;
}

SEC("cgroup/sendmsg4")
int weir_sendmsg4(struct bpf_sock_addr *ctx) {
  return redirect4(ctx, 0);
}

SEC("cgroup/sendmsg6")
int weir_sendmsg6(struct bpf_sock_addr *ctx) {
  return redirect6(ctx, 0);
}

/* A reply from the DNS proxy reports the server the app asked as its source. */
static __always_inline const struct weir_orig *dns_orig(struct bpf_sock_addr *ctx) {
  struct bpf_sock *sk = ctx->sk;
  if (!sk) return 0;
  const struct weir_orig *o = bpf_sk_storage_get(&weir_orig, sk, 0, 0);
  if (!o || o->kind != WEIR_ORIG_DNS) return 0;
  return o;
}

SEC("cgroup/recvmsg4")
int weir_recvmsg4(struct bpf_sock_addr *ctx) {
  if (ctx->user_ip4 != bpf_htonl(0x7f000001)) return 1;
  const struct weir_orig *o = dns_orig(ctx);
  if (!o || o->family != 4) return 1;
  ctx->user_ip4 = o->addr[3];
  ctx->user_port = o->port;
  return 1;
}

SEC("cgroup/recvmsg6")
int weir_recvmsg6(struct bpf_sock_addr *ctx) {
  const struct weir_orig *o = dns_orig(ctx);
  if (!o) return 1;
  __u32 a[4] = {RD(ctx->user_ip6[0]), RD(ctx->user_ip6[1]), RD(ctx->user_ip6[2]), RD(ctx->user_ip6[3])};
  if (!is_loopback(a)) return 1;
  ctx->user_ip6[0] = o->addr[0];
  ctx->user_ip6[1] = o->addr[1];
  ctx->user_ip6[2] = o->addr[2];
  ctx->user_ip6[3] = o->addr[3];
  ctx->user_port = o->port;
  return 1;
}

/* The one way a weir_tuple is filled (sockops, sk_msg): the client end and
 * the server end of a connection as seen in the client's netns. Addresses
 * in network order, as 4 (IPv4: mapped) or 16 bytes; ports in host order.
 * Callers load every context field unconditionally first (RD) and pass the
 * values: a load inside a branch gets tail-merged by clang into a shifted
 * ctx pointer, which the verifier refuses. */
static __always_inline void tuple_fill(struct weir_tuple *t, __u64 netns, __u32 family, __u32 c4, __u32 s4,
                                       const __u32 *c6, const __u32 *s6, __u16 cport, __u16 sport) {
  t->netns = netns;
  if (family == AF_INET) {
    t->client[2] = bpf_htonl(0xffff);
    t->client[3] = c4;
    t->server[2] = bpf_htonl(0xffff);
    t->server[3] = s4;
  } else {
    t->client[0] = c6[0]; t->client[1] = c6[1]; t->client[2] = c6[2]; t->client[3] = c6[3];
    t->server[0] = s6[0]; t->server[1] = s6[1]; t->server[2] = s6[2]; t->server[3] = s6[3];
  }
  t->client_port = cport;
  t->server_port = sport;
}

/* A sockops socket's tuple, local end as the client (reversed: as the
 * client, its peer, sees it). */
static __always_inline void tuple_of(struct bpf_sock_ops *ops, __u64 netns, int reversed, struct weir_tuple *t) {
  __u32 family = RD(ops->family);
  __u32 l4 = RD(ops->local_ip4), r4 = RD(ops->remote_ip4);
  __u32 l6[4] = {RD(ops->local_ip6[0]), RD(ops->local_ip6[1]), RD(ops->local_ip6[2]), RD(ops->local_ip6[3])};
  __u32 r6[4] = {RD(ops->remote_ip6[0]), RD(ops->remote_ip6[1]), RD(ops->remote_ip6[2]), RD(ops->remote_ip6[3])};
  __u16 lport = (__u16)RD(ops->local_port);                           /* host order */
  __u16 rport = bpf_ntohs((__u16)(RD(ops->remote_port) >> 16));       /* the be16 port sits in the high half */
  if (reversed) tuple_fill(t, netns, family, r4, l4, r6, l6, rport, lport);
  else tuple_fill(t, netns, family, l4, r4, l6, r6, lport, rport);
}

#include "weir_shortcut.h"

/* The client (the app's socket, redirected by connect4): publish the
 * original destination under the connection's tuple for the proxy's side. */
static __always_inline void active_established(struct bpf_sock_ops *ops, __u64 netns) {
  __u64 cookie = bpf_get_socket_cookie(ops);
  struct weir_orig copy;
  const struct weir_orig *o = bpf_map_lookup_elem(&weir_pending, &cookie);
  if (o) {
    copy = *o;
    bpf_map_delete_elem(&weir_pending, &cookie);
  } else {
    /* Connected under an older agent's connect4, which kept it in socket storage. */
    struct bpf_sock *sk = ops->sk;
    if (!sk) return;
    const struct weir_orig *old = bpf_sk_storage_get(&weir_orig, sk, 0, 0);
    if (!old) return;
    copy = *old;
  }
  if (copy.kind != WEIR_ORIG_TCP_OUTBOUND) return;
  struct weir_tuple t = {};
  tuple_of(ops, netns, 0, &t);
  bpf_map_update_elem(&weir_tuples, &t, &copy, BPF_ANY);
}

/* The proxy's accepted socket on the outbound port: take the tuple's entry
 * into the socket's own storage. Only sockets on outbound_port with a
 * loopback local address can have one (connect4 sends nothing elsewhere). */
static __always_inline void passive_established(struct bpf_sock_ops *ops, __u64 netns, const struct weir_pod_plan *p) {
  __u32 family = RD(ops->family);
  __u32 l4 = RD(ops->local_ip4);
  __u32 l6[4] = {RD(ops->local_ip6[0]), RD(ops->local_ip6[1]), RD(ops->local_ip6[2]), RD(ops->local_ip6[3])};
  __u16 lport = (__u16)RD(ops->local_port);
  if (lport != p->outbound_port) return;
  __u32 la[4] = {0, 0, bpf_htonl(0xffff), l4};
  if (family != AF_INET) { la[0] = l6[0]; la[1] = l6[1]; la[2] = l6[2]; la[3] = l6[3]; }
  if (!is_loopback(la)) return;
  struct bpf_sock *sk = ops->sk;
  if (!sk) return;
  struct weir_tuple t = {};
  tuple_of(ops, netns, 1, &t);
  const struct weir_orig *o = bpf_map_lookup_elem(&weir_tuples, &t);
  if (!o) return;
  struct weir_orig copy = *o;
  struct weir_orig *mine = bpf_sk_storage_get(&weir_accepted, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
  /* No storage: the tuple stays, and getsockopt answers from it. */
  if (!mine) return;
  *mine = copy;
  bpf_map_delete_elem(&weir_tuples, &t);
}

SEC("sockops")
int weir_sockops(struct bpf_sock_ops *ops) {
  __u32 op = ops->op;
  if (op == BPF_SOCK_OPS_STATE_CB) {
    /* Only sockets an agent before this one tracked until close (it set
     * BPF_SOCK_OPS_STATE_CB_FLAG and kept their tuple until TCP_CLOSE):
     * drop their entry so an upgrade leaks nothing. */
    if (ops->args[1] != TCP_CLOSE_STATE) return 1;
    struct weir_tuple t = {};
    tuple_of(ops, bpf_get_netns_cookie(ops), 0, &t);
    bpf_map_delete_elem(&weir_tuples, &t);
    return 1;
  }
  if (op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB && op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB) return 1;
  if (ops->family != AF_INET && ops->family != AF_INET6) return 1;
  /* One lookup decides for every socket of an uncaptured netns. */
  __u64 netns = bpf_get_netns_cookie(ops);
  const struct weir_pod_plan *p = plan_of(netns);
  if (!p) return 1;
  if (p->flags & WEIR_F_SHORTCUT) {
    struct weir_tuple t = {};
    tuple_of(ops, netns, 0, &t);
    shortcut_enter(ops, &t);
  }
  if (op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB) active_established(ops, netns);
  else passive_established(ops, netns, p);
  return 1;
}

/* A connection accepted before this program took over the link (its
 * passive established ran under an older agent) has its answer only in
 * weir_tuples, under the tuple as its client sees it. */
static __always_inline const struct weir_orig *orig_by_tuple(struct bpf_sockopt *ctx, struct bpf_sock *sk) {
  __u64 netns = bpf_get_netns_cookie(ctx);
  const struct weir_pod_plan *p = plan_of(netns);
  if (!p) return 0;
  __u32 family = RD(sk->family);
  __u32 d4 = RD(sk->dst_ip4), s4 = RD(sk->src_ip4);
  __u32 d6[4] = {RD(sk->dst_ip6[0]), RD(sk->dst_ip6[1]), RD(sk->dst_ip6[2]), RD(sk->dst_ip6[3])};
  __u32 s6[4] = {RD(sk->src_ip6[0]), RD(sk->src_ip6[1]), RD(sk->src_ip6[2]), RD(sk->src_ip6[3])};
  __u16 dport = bpf_ntohs((__u16)RD(sk->dst_port));
  __u16 sport = (__u16)RD(sk->src_port);
  if (sport != p->outbound_port) return 0;
  struct weir_tuple t = {};
  /* The accepted socket's peer is the client; its local end is the listener. */
  tuple_fill(&t, netns, family, d4, s4, d6, s6, dport, sport);
  return bpf_map_lookup_elem(&weir_tuples, &t);
}

SEC("cgroup/getsockopt")
int weir_getsockopt(struct bpf_sockopt *ctx) {
  /* Not ours: optlen 0 tells the kernel to copy nothing back (the caller
   * already has the kernel's answer); retval is left alone. */
  if (ctx->optname != SO_ORIGINAL_DST || (ctx->level != SOL_IP && ctx->level != SOL_IPV6)) { ctx->optlen = 0; return 1; }
  struct bpf_sock *sk = ctx->sk;
  if (!sk || sk->protocol != IPPROTO_TCP) { ctx->optlen = 0; return 1; }
  const struct weir_orig *o = bpf_sk_storage_get(&weir_accepted, sk, 0, 0);
  if (!o) o = orig_by_tuple(ctx, sk);
  /* Not redirected by connect4 (an nft REDIRECT's answer is conntrack's): as the kernel said. */
  if (!o) { ctx->optlen = 0; return 1; }
  if (ctx->level == SOL_IP) {
    if (o->family != 4) { ctx->optlen = 0; return 1; }
    struct { __u16 family; __u16 port; __u32 addr; __u8 zero[8]; } *sin = ctx->optval;
    if ((void *)(sin + 1) > ctx->optval_end) { ctx->optlen = 0; return 1; }
    sin->family = AF_INET;
    sin->port = o->port;
    sin->addr = o->addr[3];
    __builtin_memset(sin->zero, 0, sizeof(sin->zero));
    ctx->optlen = sizeof(*sin);
  } else {
    struct { __u16 family; __u16 port; __u32 flowinfo; __u32 addr[4]; __u32 scope; } *sin6 = ctx->optval;
    if ((void *)(sin6 + 1) > ctx->optval_end) { ctx->optlen = 0; return 1; }
    sin6->family = AF_INET6;
    sin6->port = o->port;
    sin6->flowinfo = 0;
    sin6->addr[0] = o->addr[0]; sin6->addr[1] = o->addr[1]; sin6->addr[2] = o->addr[2]; sin6->addr[3] = o->addr[3];
    sin6->scope = 0;
    ctx->optlen = sizeof(*sin6);
  }
  ctx->retval = 0;
  return 1;
}

char LICENSE[] SEC("license") = "GPL";
