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
 *   Both in weir_orig_dst.h.
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

/* Every program's membership check: the plan of the netns it runs in, 0 when
 * that netns is not captured (no entry, or one of another layout). Also
 * hands back the netns cookie, the first field of every weir_tuple the
 * caller builds next. ctx is the program's own context (each program type's
 * bpf_get_netns_cookie takes its own); inlined, so the verifier still sees
 * the context pointer. */
static __always_inline const struct weir_pod_plan *netns_plan(void *ctx, __u64 *netns) {
  *netns = bpf_get_netns_cookie(ctx);
  const struct weir_pod_plan *p = bpf_map_lookup_elem(&weir_pods, netns);
  if (!p || p->layout != WEIR_LAYOUT_VERSION) return 0;
  return p;
}

/* The caller's plan when its netns is captured and it is not the proxy. */
static __always_inline const struct weir_pod_plan *captured_caller(void *ctx) {
  __u64 netns;
  const struct weir_pod_plan *p = netns_plan(ctx, &netns);
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

#include "weir_orig_dst.h"
#include "weir_shortcut.h"

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
  __u64 netns;
  const struct weir_pod_plan *p = netns_plan(ops, &netns);
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

char LICENSE[] SEC("license") = "GPL";
