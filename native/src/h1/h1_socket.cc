// Socket set-up shared by the engine's two codecs (HTTP/1.1 here, HTTP/2 in
// ../h2): see h1_conn.h.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "h1_conn.h"

namespace weir {
namespace h1 {

void PrepareAdopted(int fd) {
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

int OpenUpstreamSocket(const Endpoint& ep, bool inbound, const Config& c) {
  int fd = socket(ep.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (inbound && ep.addr.ss_family == AF_INET && !c.inbound_source_v4.empty()) {
    sockaddr_in src{};
    src.sin_family = AF_INET;
    if (inet_pton(AF_INET, c.inbound_source_v4.c_str(), &src.sin_addr) == 1) {
      setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
      bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof src);
    }
  }
  return fd;
}

}  // namespace h1
}  // namespace weir
