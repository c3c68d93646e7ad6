// The state of one native TLS relay session, shared by the engine
// (tls_relay.cc: handshakes, commands, timers) and its byte pump
// (tls_relay_io.cc). Private to those two files.
#pragma once

#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <memory>
#include <string>

#include "tls_relay.h"

namespace weir {
namespace tls_relay {

constexpr size_t kBufSize = 64 * 1024;
// Bytes one direction moves per wakeup before the thread serves the others
// (the session is then run again before the thread sleeps): a bulk stream
// must not starve the rest.
constexpr size_t kRoundBudget = 1u << 20;
constexpr int kTls = 0, kPlain = 1;

inline bool IsReset(int err) { return err == ECONNRESET || err == EPIPE || err == ECONNABORTED || err == ETIMEDOUT; }

inline void CloseFd(int* fd, bool rst) {
  if (*fd < 0) return;
  if (rst) {
    linger lg{1, 0};  // close with RST, not FIN
    setsockopt(*fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  }
  close(*fd);
  *fd = -1;
}

// What one direction waits for before it can move again.
enum class Wait { kNone, kTlsRead, kTlsWrite, kPlainRead, kPlainWrite, kDone };

}  // namespace tls_relay

struct TlsRelayEngine::Session {
  using Wait = tls_relay::Wait;
  uint64_t id = 0;
  SSL* ssl = nullptr;
  bool server = false;
  int fd[2] = {-1, -1};          // [tls_relay::kTls], [tls_relay::kPlain]
  uint32_t registered[2] = {0, 0};
  bool in_epoll[2] = {false, false};
  enum class State { kHandshake, kWaiting, kRelay } state = State::kHandshake;
  bool prefix_rbio = false;      // rbio is a memory BIO with the caller's initial bytes
  bool finished = false;
  int64_t deadline_ms = 0;       // handshake deadline
  int64_t idle_timeout_ms = 0;
  int64_t last_active_ms = 0;
  double started_ms = 0;
  std::shared_ptr<TlsCounters> counters = std::make_shared<TlsCounters>();
  // plain -> tls
  std::unique_ptr<char[]> up_buf;
  size_t up_cap = 0, up_len = 0, up_off = 0;
  bool plain_eof = false, close_notify_sent = false;
  Wait up_wait = Wait::kNone;
  // tls -> plain
  std::unique_ptr<char[]> down_buf;
  size_t down_len = 0, down_off = 0;
  bool tls_eof = false, plain_shut = false;
  Wait down_wait = Wait::kNone;
  ~Session() {
    if (ssl != nullptr) SSL_free(ssl);
    tls_relay::CloseFd(&fd[0], false);
    tls_relay::CloseFd(&fd[1], false);
  }
};

}  // namespace weir
