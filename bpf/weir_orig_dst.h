/* The original destination of a redirected TCP connection, from the client's
 * socket to the proxy's accepted one (included by weir.bpf.c, after
 * connect4's weir_pending): sockops moves it at the client's active
 * established into weir_tuples (keyed by the connection's 4-tuple, since the
 * proxy asks on ANOTHER socket), and at the proxy's passive established into
 * the accepted socket's storage, where getsockopt answers SO_ORIGINAL_DST /
 * IP6T_SO_ORIGINAL_DST from. Passive always follows active: the client's
 * callback runs before it sends the ACK that creates the accepted socket. */
#ifndef WEIR_ORIG_DST_H
#define WEIR_ORIG_DST_H

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

/* A connection accepted before this program took over the link (its
 * passive established ran under an older agent) has its answer only in
 * weir_tuples, under the tuple as its client sees it. */
static __always_inline const struct weir_orig *orig_by_tuple(struct bpf_sockopt *ctx, struct bpf_sock *sk) {
  __u64 netns;
  const struct weir_pod_plan *p = netns_plan(ctx, &netns);
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

#endif
