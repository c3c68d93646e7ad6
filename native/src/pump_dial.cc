#include "pump_dial.h"

#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace weir {

namespace {

// IP_BIND_ADDRESS_NO_PORT (Linux 4.2): bind() with port 0 does not reserve
// a port; connect() picks one that makes the 4-tuple unique. Without it
// every bound connection needs its own port system-wide for that source
// address (the 127.0.0.6 hand-off of all inbound connections would run out
// at ~28k concurrent ones).
#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

bool ParseIp(const std::string& ip, int port, sockaddr_storage* out, socklen_t* len) {
  *out = sockaddr_storage{};
  auto* v4 = reinterpret_cast<sockaddr_in*>(out);
  if (inet_pton(AF_INET, ip.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    *len = sizeof(sockaddr_in);
    return true;
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(out);
  if (inet_pton(AF_INET6, ip.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    *len = sizeof(sockaddr_in6);
    return true;
  }
  return false;
}

}  // namespace

std::optional<Failure> ParseDialTarget(const std::string& ip, int port, const std::string& local_ip, int64_t timeout_ms,
                                       DialTarget* out) {
  if (port < 1 || port > 65535) return Failure{"port must be 1-65535 (got " + std::to_string(port) + ")", "EINVAL"};
  if (!ParseIp(ip, port, &out->addr, &out->addr_len)) return Failure{"ip must be a numeric IPv4 or IPv6 address (got \"" + ip + "\")", "EINVAL"};
  out->local_len = 0;
  if (!local_ip.empty()) {
    if (!ParseIp(local_ip, 0, &out->local, &out->local_len)) {
      return Failure{"localAddress must be a numeric IPv4 or IPv6 address (got \"" + local_ip + "\")", "EINVAL"};
    }
    if (out->local.ss_family != out->addr.ss_family) return Failure{"localAddress " + local_ip + " is not of the same family as ip " + ip, "EINVAL"};
  }
  out->timeout_ms = timeout_ms;
  out->text = out->addr.ss_family == AF_INET6 ? "[" + ip + "]:" + std::to_string(port) : ip + ":" + std::to_string(port);
  return std::nullopt;
}

int BeginConnect(const DialTarget& t, int* fd) {
  const int s = socket(t.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
  if (s < 0) return errno;
  // A relay forwards what it has at once (see PumpEngine::Start): no Nagle.
  int one = 1;
  setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (t.local_len > 0) {
    if (t.local.ss_family == AF_INET) setsockopt(s, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    if (bind(s, reinterpret_cast<const sockaddr*>(&t.local), t.local_len) != 0) {
      int err = errno;
      close(s);
      return err;
    }
  }
  if (connect(s, reinterpret_cast<const sockaddr*>(&t.addr), t.addr_len) == 0) {
    *fd = s;
    return 0;
  }
  int err = errno;
  if (err == EINPROGRESS) {
    *fd = s;
    return EINPROGRESS;
  }
  close(s);
  return err;
}

std::string ErrnoCode(int err) {
  const char* name = strerrorname_np(err);
  return name != nullptr ? name : "ECONNFAILED";
}

bool LocalAddressOf(int fd, std::string* address, int* port) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return false;
  char buf[INET6_ADDRSTRLEN] = {0};
  if (ss.ss_family == AF_INET) {
    auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
    if (inet_ntop(AF_INET, &v4->sin_addr, buf, sizeof(buf)) == nullptr) return false;
    *port = ntohs(v4->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
    if (inet_ntop(AF_INET6, &v6->sin6_addr, buf, sizeof(buf)) == nullptr) return false;
    *port = ntohs(v6->sin6_port);
  } else {
    return false;
  }
  *address = buf;
  return true;
}

}  // namespace weir
