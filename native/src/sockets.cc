#include "sockets.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6/ip6_tables.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>

namespace weir {

namespace {

std::string FormatAddress(int af, const void* addr) {
  char buf[INET6_ADDRSTRLEN] = {0};
  inet_ntop(af, addr, buf, sizeof(buf));
  return buf;
}

std::string Describe(const SocketRequest& r) {
  return r.family == 6 ? "[" + r.address + "]:" + std::to_string(r.port) : r.address + ":" + std::to_string(r.port);
}

struct SockAddr {
  sockaddr_storage storage{};
  socklen_t length = 0;
};

std::optional<Failure> ParseAddress(const SocketRequest& r, SockAddr* out) {
  if (r.family == 4) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&out->storage);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(static_cast<uint16_t>(r.port));
    if (inet_pton(AF_INET, r.address.c_str(), &sin->sin_addr) != 1) {
      return Failure{"address: not an IPv4 address: \"" + r.address + "\"", "EINVAL"};
    }
    out->length = sizeof(sockaddr_in);
  } else {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&out->storage);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(static_cast<uint16_t>(r.port));
    if (inet_pton(AF_INET6, r.address.c_str(), &sin6->sin6_addr) != 1) {
      return Failure{"address: not an IPv6 address: \"" + r.address + "\"", "EINVAL"};
    }
    out->length = sizeof(sockaddr_in6);
  }
  return std::nullopt;
}

std::optional<Failure> SetIntOption(int fd, int level, int name, int value, const char* what) {
  if (setsockopt(fd, level, name, &value, sizeof(value)) != 0) return ErrnoFailure(std::string("setsockopt ") + what, errno);
  return std::nullopt;
}

std::optional<Failure> ApplyOptions(int fd, const SocketRequest& r) {
  bool v6 = r.family == 6;
  if (r.kind == SocketRequest::Kind::kTcpListen || r.kind == SocketRequest::Kind::kUdpBind) {
    if (auto f = SetIntOption(fd, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR")) return f;
  }
  if (r.transparent) {
    if (auto f = v6 ? SetIntOption(fd, SOL_IPV6, IPV6_TRANSPARENT, 1, "IPV6_TRANSPARENT")
                    : SetIntOption(fd, SOL_IP, IP_TRANSPARENT, 1, "IP_TRANSPARENT"))
      return f;
  }
  if (r.freebind) {
    if (auto f = v6 ? SetIntOption(fd, SOL_IPV6, IPV6_FREEBIND, 1, "IPV6_FREEBIND")
                    : SetIntOption(fd, SOL_IP, IP_FREEBIND, 1, "IP_FREEBIND"))
      return f;
  }
  if (r.reuse_port) {
    if (auto f = SetIntOption(fd, SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT")) return f;
  }
  if (r.mark) {
    if (auto f = SetIntOption(fd, SOL_SOCKET, SO_MARK, static_cast<int>(*r.mark), "SO_MARK")) return f;
  }
  return std::nullopt;
}

// Non-blocking connect bounded by timeout_ms, so a blackholed address cannot
// pin a thread (and the libuv pool slot waiting on it) forever.
std::optional<Failure> ConnectWithTimeout(int fd, const SocketRequest& r, const SockAddr& addr) {
  if (connect(fd, reinterpret_cast<const sockaddr*>(&addr.storage), addr.length) == 0) return std::nullopt;
  if (errno != EINPROGRESS) return ErrnoFailure("connect " + Describe(r), errno);
  pollfd p{fd, POLLOUT, 0};
  int n;
  do {
    n = poll(&p, 1, r.timeout_ms);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return ErrnoFailure("poll connect " + Describe(r), errno);
  if (n == 0) return Failure{"connect " + Describe(r) + ": timed out after " + std::to_string(r.timeout_ms) + " ms", "ETIMEDOUT"};
  int soerr = 0;
  socklen_t len = sizeof(soerr);
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0) return ErrnoFailure("getsockopt SO_ERROR", errno);
  if (soerr != 0) return ErrnoFailure("connect " + Describe(r), soerr);
  return std::nullopt;
}

// Abstract unix listener: no file, no mode bits; reachable only from this netns.
std::optional<Failure> CreateAbstractListener(const SocketRequest& r, int* fd_out) {
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  // sun_path[0] stays NUL (abstract); the name follows, not NUL-terminated.
  if (r.address.empty() || r.address.size() > sizeof(sun.sun_path) - 1) {
    return Failure{"address: abstract socket name must be 1-" + std::to_string(sizeof(sun.sun_path) - 1) + " bytes", "EINVAL"};
  }
  memcpy(sun.sun_path + 1, r.address.data(), r.address.size());
  socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + r.address.size());
  // For messages: NULs in the name (a padded form) shown as '@', as ss(8) does.
  std::string shown = "@" + r.address;
  for (char& c : shown) if (c == '\0') c = '@';
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoFailure("socket AF_UNIX", errno);
  if (bind(fd, reinterpret_cast<const sockaddr*>(&sun), len) != 0) {
    Failure f = ErrnoFailure("bind " + shown, errno);
    close(fd);
    return f;
  }
  if (listen(fd, r.backlog) != 0) {
    Failure f = ErrnoFailure("listen " + shown, errno);
    close(fd);
    return f;
  }
  *fd_out = fd;
  return std::nullopt;
}

}  // namespace

std::optional<Failure> OriginalDst(int fd, Endpoint* out) {
  sockaddr_storage local{};
  socklen_t len = sizeof(local);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) != 0) return ErrnoFailure("getsockname fd " + std::to_string(fd), errno);

  bool ipv4 = local.ss_family == AF_INET;
  if (local.ss_family == AF_INET6) {
    // IPv4 clients of a dual-stack listener were NATed by the IPv4 table.
    ipv4 = IN6_IS_ADDR_V4MAPPED(&reinterpret_cast<sockaddr_in6*>(&local)->sin6_addr);
  } else if (local.ss_family != AF_INET) {
    return Failure{"fd " + std::to_string(fd) + " is not an IPv4/IPv6 socket", "EAFNOSUPPORT"};
  }
  return OriginalDst(fd, ipv4, out);
}

std::optional<Failure> OriginalDst(int fd, bool ipv4, Endpoint* out) {
  if (ipv4) {
    sockaddr_in dst{};
    socklen_t dlen = sizeof(dst);
    if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &dst, &dlen) != 0) return ErrnoFailure("getsockopt SO_ORIGINAL_DST fd " + std::to_string(fd), errno);
    out->family = 4;
    out->address = FormatAddress(AF_INET, &dst.sin_addr);
    out->port = ntohs(dst.sin_port);
  } else {
    sockaddr_in6 dst{};
    socklen_t dlen = sizeof(dst);
    if (getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &dst, &dlen) != 0) return ErrnoFailure("getsockopt IP6T_SO_ORIGINAL_DST fd " + std::to_string(fd), errno);
    out->family = 6;
    out->address = FormatAddress(AF_INET6, &dst.sin6_addr);
    out->port = ntohs(dst.sin6_port);
  }
  return std::nullopt;
}

std::optional<Failure> PeerCred(int fd, PeerCredentials* out) {
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return ErrnoFailure("getsockopt SO_PEERCRED fd " + std::to_string(fd), errno);
  out->pid = cred.pid;
  out->uid = cred.uid;
  out->gid = cred.gid;
  return std::nullopt;
}

namespace {

int BoundPort(int fd) {
  sockaddr_storage local{};
  socklen_t len = sizeof(local);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) != 0) return -1;
  return local.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&local)->sin6_port)
                                     : ntohs(reinterpret_cast<sockaddr_in*>(&local)->sin_port);
}

// bind(source, 0) for a tcp-connect; a port equal to avoid_source_port is
// refused with EADDRINUSE so the caller makes a new socket (the kernel gives
// another ephemeral port).
std::optional<Failure> BindSource(int fd, const SocketRequest& r) {
  SocketRequest src = r;
  src.address = *r.source_address;
  src.port = 0;
  SockAddr addr;
  if (auto f = ParseAddress(src, &addr)) return Failure{"sourceAddress: " + f->message, f->code};
  if (bind(fd, reinterpret_cast<const sockaddr*>(&addr.storage), addr.length) != 0) return ErrnoFailure("bind source " + Describe(src), errno);
  if (r.avoid_source_port && BoundPort(fd) == *r.avoid_source_port) return Failure{"source port collides", "EADDRINUSE"};
  return std::nullopt;
}

std::optional<Failure> CreateSocketOnce(const SocketRequest& r, int* fd_out);

}  // namespace

std::optional<Failure> CreateSocket(const SocketRequest& r, int* fd_out) {
  if (r.kind == SocketRequest::Kind::kUnixListen) return CreateAbstractListener(r, fd_out);
  // Only a source-port collision is retried; a handful of tries make a
  // repeat of a 1-in-28000 event vanishingly rare.
  std::optional<Failure> f;
  for (int attempt = 0; attempt < 4; attempt++) {
    f = CreateSocketOnce(r, fd_out);
    if (!f || f->message != "source port collides") return f;
  }
  return Failure{"bind source " + *r.source_address + ": kept getting the client's own port", "EADDRINUSE"};
}

namespace {

std::optional<Failure> CreateSocketOnce(const SocketRequest& r, int* fd_out) {
  SockAddr addr;
  if (auto f = ParseAddress(r, &addr)) return f;
  int type = r.kind == SocketRequest::Kind::kUdpBind ? SOCK_DGRAM : SOCK_STREAM;
  int fd = socket(r.family == 6 ? AF_INET6 : AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoFailure("socket", errno);

  auto fail = [fd](Failure f) -> std::optional<Failure> {
    close(fd);
    return f;
  };
  if (auto f = ApplyOptions(fd, r)) return fail(*f);
  switch (r.kind) {
    case SocketRequest::Kind::kTcpListen:
      if (bind(fd, reinterpret_cast<const sockaddr*>(&addr.storage), addr.length) != 0) return fail(ErrnoFailure("bind " + Describe(r), errno));
      if (listen(fd, r.backlog) != 0) return fail(ErrnoFailure("listen " + Describe(r), errno));
      break;
    case SocketRequest::Kind::kUdpBind:
      if (bind(fd, reinterpret_cast<const sockaddr*>(&addr.storage), addr.length) != 0) return fail(ErrnoFailure("bind " + Describe(r), errno));
      break;
    case SocketRequest::Kind::kTcpConnect:
      if (r.source_address) {
        if (auto f = BindSource(fd, r)) return fail(*f);
      }
      if (auto f = ConnectWithTimeout(fd, r, addr)) return fail(*f);
      break;
    case SocketRequest::Kind::kUnixListen:
      break;  // handled above
  }
  *fd_out = fd;
  return std::nullopt;
}

}  // namespace
}  // namespace weir
