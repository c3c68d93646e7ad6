// SPDX-License-Identifier: GPL-2.0
/* weir's eBPF capture: cgroup socket hooks that do what the nftables
 * backend's output chain does, before the packet exists.
 *
 * - connect4/6: a captured pod's outbound TCP is pointed at its proxy on
 *   127.0.0.1/::1:outbound_port; DNS (TCP and connected UDP :53) at the DNS
 *   proxy. The dialled address is kept in the socket's local storage.
 * - sockops (active established): copies it to weir_tuples under the
 *   connection's 4-tuple, because the proxy asks on its ACCEPTED socket.
 * - getsockopt: SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST answered from
 *   weir_tuples, so the proxy's conntrack-based code runs unchanged.
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

/* LRU: entries are deleted when the connection closes; the LRU only bounds a
 * leak if a close is ever missed. */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 262144);
  __type(key, struct weir_tuple);
  __type(value, struct weir_orig);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} weir_tuples SEC(".maps");

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

/* The caller's plan when its netns is captured and it is not the proxy. */
static __always_inline const struct weir_pod_plan *captured_caller(void *ctx) {
  __u64 cookie = bpf_get_netns_cookie(ctx);
  const struct weir_pod_plan *p = bpf_map_lookup_elem(&weir_pods, &cookie);
  if (!p || p->layout != WEIR_LAYOUT_VERSION) return 0;
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

static __always_inline int remember(struct bpf_sock_addr *ctx, const __u32 *a, __u16 port_be, __u8 kind, __u8 family) {
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
  if (!remember(ctx, a, (__u16)ctx->user_port, to == p->dns_port && port == 53 ? WEIR_ORIG_DNS : WEIR_ORIG_TCP_OUTBOUND, 4)) return 1;
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
  if (!remember(ctx, a, (__u16)ctx->user_port, to == p->dns_port && port == 53 ? WEIR_ORIG_DNS : WEIR_ORIG_TCP_OUTBOUND, mapped ? 4 : 6)) return 1;
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

/* Every field is loaded unconditionally, then chosen: a load inside a branch
 * gets tail-merged by clang into a shifted ctx pointer, which the verifier
 * refuses. */
static __always_inline void tuple_of(struct bpf_sock_ops *ops, struct weir_tuple *t) {
  __u32 family = RD(ops->family);
  __u32 l4 = RD(ops->local_ip4), r4 = RD(ops->remote_ip4);
  __u32 l6[4] = {RD(ops->local_ip6[0]), RD(ops->local_ip6[1]), RD(ops->local_ip6[2]), RD(ops->local_ip6[3])};
  __u32 r6[4] = {RD(ops->remote_ip6[0]), RD(ops->remote_ip6[1]), RD(ops->remote_ip6[2]), RD(ops->remote_ip6[3])};
  __u32 lport = RD(ops->local_port), rport = RD(ops->remote_port);
  t->netns = bpf_get_netns_cookie(ops);
  if (family == AF_INET) {
    t->client[2] = bpf_htonl(0xffff);
    t->client[3] = l4;
    t->server[2] = bpf_htonl(0xffff);
    t->server[3] = r4;
  } else {
    t->client[0] = l6[0]; t->client[1] = l6[1]; t->client[2] = l6[2]; t->client[3] = l6[3];
    t->server[0] = r6[0]; t->server[1] = r6[1]; t->server[2] = r6[2]; t->server[3] = r6[3];
  }
  t->client_port = (__u16)lport;                      /* host order */
  t->server_port = bpf_ntohs((__u16)(rport >> 16));   /* the be16 port sits in the high half */
}

#include "weir_shortcut.h"

SEC("sockops")
int weir_sockops(struct bpf_sock_ops *ops) {
  if (ops->family != AF_INET && ops->family != AF_INET6) return 1;
  __u32 op = ops->op;
  if (op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB || op == BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB) {
    struct weir_tuple t = {};
    tuple_of(ops, &t);
    shortcut_enter(ops, &t);
    if (op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB) return 1;
    struct bpf_sock *sk = ops->sk;
    if (!sk) return 1;
    struct weir_orig *o = bpf_sk_storage_get(&weir_orig, sk, 0, 0);
    if (!o || o->kind != WEIR_ORIG_TCP_OUTBOUND) return 1;
    struct weir_orig copy = *o;
    bpf_map_update_elem(&weir_tuples, &t, &copy, BPF_ANY);
    bpf_sock_ops_cb_flags_set(ops, BPF_SOCK_OPS_STATE_CB_FLAG);
  } else if (op == BPF_SOCK_OPS_STATE_CB && ops->args[1] == TCP_CLOSE_STATE) {
    struct weir_tuple t = {};
    tuple_of(ops, &t);
    bpf_map_delete_elem(&weir_tuples, &t);
  }
  return 1;
}

SEC("cgroup/getsockopt")
int weir_getsockopt(struct bpf_sockopt *ctx) {
  if (ctx->optname != SO_ORIGINAL_DST || (ctx->level != SOL_IP && ctx->level != SOL_IPV6)) return 1;
  struct bpf_sock *sk = ctx->sk;
  if (!sk || sk->protocol != IPPROTO_TCP) return 1;
  struct weir_tuple t = {};
  t.netns = bpf_get_netns_cookie(ctx);
  /* The accepted socket's peer is the client; its local end is the listener. */
  __u32 family = RD(sk->family);
  __u32 d4 = RD(sk->dst_ip4), s4 = RD(sk->src_ip4);
  __u32 d6[4] = {RD(sk->dst_ip6[0]), RD(sk->dst_ip6[1]), RD(sk->dst_ip6[2]), RD(sk->dst_ip6[3])};
  __u32 s6[4] = {RD(sk->src_ip6[0]), RD(sk->src_ip6[1]), RD(sk->src_ip6[2]), RD(sk->src_ip6[3])};
  __u16 dport = (__u16)RD(sk->dst_port);
  __u32 sport = RD(sk->src_port);
  if (family == AF_INET) {
    t.client[2] = bpf_htonl(0xffff);
    t.client[3] = d4;
    t.server[2] = bpf_htonl(0xffff);
    t.server[3] = s4;
  } else {
    t.client[0] = d6[0]; t.client[1] = d6[1]; t.client[2] = d6[2]; t.client[3] = d6[3];
    t.server[0] = s6[0]; t.server[1] = s6[1]; t.server[2] = s6[2]; t.server[3] = s6[3];
  }
  t.client_port = bpf_ntohs(dport);
  t.server_port = (__u16)sport;
  const struct weir_orig *o = bpf_map_lookup_elem(&weir_tuples, &t);
  if (!o) return 1;
  if (ctx->level == SOL_IP) {
    if (o->family != 4) return 1;
    struct { __u16 family; __u16 port; __u32 addr; __u8 zero[8]; } *sin = ctx->optval;
    if ((void *)(sin + 1) > ctx->optval_end) return 1;
    sin->family = AF_INET;
    sin->port = o->port;
    sin->addr = o->addr[3];
    __builtin_memset(sin->zero, 0, sizeof(sin->zero));
    ctx->optlen = sizeof(*sin);
  } else {
    struct { __u16 family; __u16 port; __u32 flowinfo; __u32 addr[4]; __u32 scope; } *sin6 = ctx->optval;
    if ((void *)(sin6 + 1) > ctx->optval_end) return 1;
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
