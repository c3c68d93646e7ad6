// Socket helpers Node cannot do itself: reading the pre-DNAT destination,
// the peer's credentials, and creating sockets inside another netns.
#pragma once

#include <optional>
#include <string>

#include "netns_thread.h"

namespace weir {

struct Endpoint {
  int family = 0;  // 4 or 6
  std::string address;
  int port = 0;
};

// SO_ORIGINAL_DST (IPv4) / IP6T_SO_ORIGINAL_DST (IPv6) of an accepted socket.
// A v4-mapped connection on a dual-stack listener is reported as IPv4.
std::optional<Failure> OriginalDst(int fd, Endpoint* out);
// The same when the caller knows the connection's family already (from its
// peer's address: IPv4 or v4-mapped = the IPv4 table's NAT), one syscall less.
std::optional<Failure> OriginalDst(int fd, bool ipv4, Endpoint* out);

struct PeerCredentials {
  int pid = 0;
  unsigned uid = 0;
  unsigned gid = 0;
};

// SO_PEERCRED of a connected unix socket.
std::optional<Failure> PeerCred(int fd, PeerCredentials* out);

struct SocketRequest {
  // kUnixListen: a listening AF_UNIX stream socket in the ABSTRACT namespace
  // (`address` is the name without the leading NUL). Abstract names belong
  // to the network namespace the socket is created in, so only processes in
  // that netns can connect: the agent's per-pod control-plane listener.
  enum class Kind { kTcpListen, kTcpConnect, kUdpBind, kUnixListen };
  Kind kind = Kind::kTcpListen;
  int family = 4;
  std::string address;
  int port = 0;
  int backlog = 511;
  int timeout_ms = 5000;
  bool transparent = false;
  bool freebind = false;
  // SO_REUSEPORT: several sockets (one per worker thread) share one port and
  // the kernel spreads datagrams/connections across them.
  bool reuse_port = false;
  std::optional<unsigned> mark;
  // tcp-connect only: bind to this source address first (with `transparent`,
  // a non-local one: TPROXY's hand-off from the client's address).
  std::optional<std::string> source_address;
  // With source_address: never use this source port (the client's own port;
  // the same 4-tuple twice would land in the client connection's conntrack entry).
  std::optional<int> avoid_source_port;
};

// Creates the socket on the calling thread (already inside the target netns);
// the fd is non-blocking and close-on-exec, ready for libuv.
std::optional<Failure> CreateSocket(const SocketRequest& request, int* fd_out);

}  // namespace weir
