/* The layout of weir's pinned eBPF maps, shared by the programs (bpf/weir.bpf.c)
 * and the loader (native/src/bpf/). Every field has a fixed size and the
 * structs have no implicit padding, so the TypeScript encoder
 * (src/redirect/render-ebpf.ts) can write the same bytes; WEIR_POD_PLAN_SIZE
 * is checked by the loader against sizeof at build time and by the encoder at
 * run time. Addresses are 16 bytes: IPv4 as ::ffff:a.b.c.d, so one compare
 * loop serves both families. Ports and masks are in network byte order where
 * noted, host order otherwise. */
#ifndef WEIR_MAPS_H
#define WEIR_MAPS_H

#define WEIR_MAX_PORT_RANGES 32
#define WEIR_MAX_CIDRS 32
#define WEIR_MAX_LOCAL_ADDRS 16
/* Bumped whenever the layout changes: the loader refuses a pinned map whose
 * entries were written for another version (libbpf also refuses a pinned map
 * whose value size differs). */
#define WEIR_LAYOUT_VERSION 1

/* Flags of weir_pod_plan.flags. */
#define WEIR_F_DNS 0x1            /* capture UDP/TCP :53 to dns_port */
#define WEIR_F_INCLUDE_ALL 0x2    /* includeOutboundIPRanges '*' */
#define WEIR_F_LINKERD 0x4        /* linkerd style: no :15020 pass-through */
#define WEIR_F_SHORTCUT 0x8       /* splice the pod's loopback TCP (app <-> proxy) with sk_msg */

struct weir_port_range {
  __u16 from; /* host order, inclusive */
  __u16 to;
};

struct weir_cidr {
  __u32 addr[4]; /* network order, host bits cleared */
  __u32 mask[4]; /* network order */
};

struct weir_pod_plan {
  __u32 layout;           /* WEIR_LAYOUT_VERSION */
  __u32 flags;            /* WEIR_F_* */
  __u32 proxy_uid;
  __u32 proxy_gid;
  __u16 outbound_port;    /* host order */
  __u16 dns_port;         /* host order */
  __u8 n_include_ports;
  __u8 n_exclude_ports;
  __u8 n_include_cidrs;
  __u8 n_exclude_cidrs;
  __u8 n_skip_cidrs;      /* subnets of excluded interfaces: never captured, DNS included */
  __u8 n_local;           /* the netns's own addresses: app traffic to them stays local */
  __u8 plan_hash[6];      /* planHash() of the RedirectPlan, 12 hex digits as 6 bytes */
  struct weir_port_range include_ports[WEIR_MAX_PORT_RANGES];
  struct weir_port_range exclude_ports[WEIR_MAX_PORT_RANGES];
  struct weir_cidr include_cidrs[WEIR_MAX_CIDRS];
  struct weir_cidr exclude_cidrs[WEIR_MAX_CIDRS];
  struct weir_cidr skip_cidrs[WEIR_MAX_CIDRS];
  __u32 local[WEIR_MAX_LOCAL_ADDRS][4];
};
#define WEIR_POD_PLAN_SIZE (32 + 2 * 4 * WEIR_MAX_PORT_RANGES + 3 * 32 * WEIR_MAX_CIDRS + 16 * WEIR_MAX_LOCAL_ADDRS)

/* What connect/sendmsg rewrote, kept in the socket's local storage. */
#define WEIR_ORIG_TCP_OUTBOUND 1  /* to the outbound listener: getsockopt answers it */
#define WEIR_ORIG_DNS 2           /* to the DNS proxy: recvmsg restores the source */
struct weir_orig {
  __u32 addr[4];  /* network order (IPv4 mapped) */
  __u16 port;     /* network order */
  __u8 kind;      /* WEIR_ORIG_* */
  __u8 family;    /* 4 or 6: what the app dialled */
};

/* A redirected TCP connection by its 4-tuple as the client sees it, in the
 * client's netns: how the proxy's accepted socket finds the original
 * destination (the accepted socket is not the one connect() ran on). */
struct weir_tuple {
  __u64 netns;
  __u32 client[4];
  __u32 server[4];
  __u16 client_port; /* host order */
  __u16 server_port; /* host order */
  __u32 pad;
};

#endif
