/* The same-node shortcut (included by weir.bpf.c): a captured pod's loopback
 * TCP connections — app ↔ its proxy's 15001, the proxy's inbound hand-off to
 * the app — skip the loopback TCP/IP stack. At established (active and
 * passive), sockops puts each end into the weir_socks sockhash under its
 * 4-tuple as it sees it; sk_msg, run on every sendmsg of a socket in the
 * sockhash, looks up the PEER (the reversed tuple) and moves the bytes
 * straight onto the peer's receive queue (bpf_msg_redirect_hash, INGRESS).
 * The kernel removes a socket from the sockhash when it closes.
 *
 * Safety:
 * - Only sockets whose netns has a plan with WEIR_F_SHORTCUT, and only
 *   loopback tuples (both ends in that netns, keyed with its netns cookie,
 *   since 127.0.0.1 tuples repeat across pods). A tuple with a non-loopback
 *   address is never entered: those need the kernel path (another node,
 *   NAT between the ends, the inbound nft capture).
 * - No redirect without the exact peer: a miss sends through TCP.
 * - Per direction, all bytes take ONE path. The client end is established
 *   (and entered) before the server end, so its first writes can find no
 *   peer and go through TCP; if later ones were redirected they would
 *   overtake those still queued in TCP (the peer reads its redirect queue
 *   first). So the first send decides: a socket that sent through TCP once
 *   never redirects (weir_sk.state), one that redirected keeps doing so. */
#ifndef WEIR_SHORTCUT_H
#define WEIR_SHORTCUT_H

#define WEIR_SK_NEW 0        /* in the sockhash, nothing sent yet */
#define WEIR_SK_REDIRECT 1   /* its bytes go to the peer's receive queue */
#define WEIR_SK_KERNEL 2     /* sent through TCP once: stays on TCP */

struct weir_sk_state {
  __u32 state; /* WEIR_SK_* */
};

struct {
  __uint(type, BPF_MAP_TYPE_SOCKHASH);
  __uint(max_entries, 65536);
  __type(key, struct weir_tuple); /* netns, local (client[]), remote (server[]), ports */
  __type(value, __u64);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} weir_socks SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_SK_STORAGE);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, int);
  __type(value, struct weir_sk_state);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} weir_sk SEC(".maps");

static __always_inline int both_loopback(const struct weir_tuple *t) {
  return is_loopback(t->client) && is_loopback(t->server);
}

/* sockops, at ACTIVE/PASSIVE_ESTABLISHED of a socket whose netns's plan has
 * WEIR_F_SHORTCUT (the caller checked): enter the socket when eligible. */
static __always_inline void shortcut_enter(struct bpf_sock_ops *ops, const struct weir_tuple *t) {
  if (!both_loopback(t)) return;
  struct bpf_sock *sk = ops->sk;
  if (!sk) return;
  /* The state first: sk_msg redirects only sockets that have one, so a
   * socket whose state could not be made never leaves TCP. */
  struct weir_sk_state *st = bpf_sk_storage_get(&weir_sk, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
  if (!st) return;
  st->state = WEIR_SK_NEW;
  struct weir_tuple key = *t;
  bpf_sock_hash_update(ops, &weir_socks, &key, BPF_NOEXIST);
}

SEC("sk_msg")
int weir_sk_msg(struct sk_msg_md *msg) {
  struct bpf_sock *sk = msg->sk;
  if (!sk) return SK_PASS;
  struct weir_sk_state *st = bpf_sk_storage_get(&weir_sk, sk, 0, 0);
  if (!st || st->state == WEIR_SK_KERNEL) return SK_PASS;
  /* The peer's key: this socket's tuple reversed. */
  __u32 family = RD(msg->family);
  __u32 l4 = RD(msg->local_ip4), r4 = RD(msg->remote_ip4);
  __u32 l6[4] = {RD(msg->local_ip6[0]), RD(msg->local_ip6[1]), RD(msg->local_ip6[2]), RD(msg->local_ip6[3])};
  __u32 r6[4] = {RD(msg->remote_ip6[0]), RD(msg->remote_ip6[1]), RD(msg->remote_ip6[2]), RD(msg->remote_ip6[3])};
  __u32 lport = RD(msg->local_port), rport = RD(msg->remote_port);
  /* The be16 remote port sits in the high half on little-endian kernels (as in sock_ops). */
  __u16 rport_h = bpf_ntohs((__u16)(rport > 0xffff ? rport >> 16 : rport));
  struct weir_tuple peer = {};
  tuple_fill(&peer, bpf_get_netns_cookie(msg), family, r4, l4, r6, l6, rport_h, (__u16)lport);
  if (bpf_msg_redirect_hash(msg, &weir_socks, &peer, BPF_F_INGRESS) == SK_PASS) {
    if (st->state == WEIR_SK_NEW) st->state = WEIR_SK_REDIRECT;
    return SK_PASS;
  }
  /* No peer (not entered yet, or gone): TCP, and TCP from now on. A socket
   * that had redirected only misses when its peer closed, where order no
   * longer matters. */
  st->state = WEIR_SK_KERNEL;
  return SK_PASS;
}

#endif
