// The upstream side of a pump that connects for itself (PumpEngine::
// StartConnect): the address to dial, parsed once on the JavaScript thread,
// and the non-blocking connect the pump thread performs. No Node socket and
// no libuv handle is ever made for the upstream connection.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <string>

#include "netns_thread.h"

namespace weir {

struct DialTarget {
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  // Source address to bind first (port 0: the kernel picks it at connect
  // time); local_len 0 = no bind.
  sockaddr_storage local{};
  socklen_t local_len = 0;
  // The connect must complete within this (ETIMEDOUT otherwise).
  int64_t timeout_ms = 5000;
  std::string text;  // "ip:port" / "[ip]:port", for messages
};

// Parses a numeric IPv4/IPv6 address and port (and an optional source
// address of the same family); a clear error names the bad field.
std::optional<Failure> ParseDialTarget(const std::string& ip, int port, const std::string& local_ip, int64_t timeout_ms,
                                       DialTarget* out);

// Creates the socket (non-blocking, close-on-exec, TCP_NODELAY), binds the
// source address if any, and starts connect(2). Returns 0 when connected at
// once, EINPROGRESS when the result comes as EPOLLOUT, else the errno (and
// then nothing is left open). *fd is the socket in the first two cases.
int BeginConnect(const DialTarget& target, int* fd);

// "ECONNREFUSED" for ECONNREFUSED: the code Node would have given.
std::string ErrnoCode(int err);

// The socket's own address as text and port (getsockname); false if unknown.
bool LocalAddressOf(int fd, std::string* address, int* port);

}  // namespace weir
