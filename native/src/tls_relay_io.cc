// The byte pump of a native TLS relay session: plaintext fd <-> SSL, each
// direction until it waits on a socket, half-close and resets carried over.
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "tls_ctx.h"
#include "tls_session.h"

namespace weir {

using namespace tls_relay;

namespace {

// Whether what epoll reported on `side` can unblock a direction waiting for `w`.
bool Unblocks(Wait w, int side, uint32_t events) {
  if (side < 0 || w == Wait::kNone) return true;
  bool trouble = (events & (EPOLLERR | EPOLLHUP)) != 0;
  switch (w) {
    case Wait::kTlsRead: return side == kTls && (trouble || (events & (EPOLLIN | EPOLLRDHUP)));
    case Wait::kTlsWrite: return side == kTls && (trouble || (events & EPOLLOUT));
    case Wait::kPlainRead: return side == kPlain && (trouble || (events & (EPOLLIN | EPOLLRDHUP)));
    case Wait::kPlainWrite: return side == kPlain && (trouble || (events & EPOLLOUT));
    default: return false;
  }
}

}  // namespace

// Moves bytes both ways until each direction waits on a socket (or used its
// round budget: then the session is run again before the thread sleeps).
// `side`/`events`: what epoll reported (-1: Attach or a rerun, try both).
void TlsRelayEngine::Relay(Session* s, int side, uint32_t events) {
  if (s->state == Session::State::kWaiting) {
    if (events & (EPOLLERR | EPOLLHUP)) Finish(s, "reset-by-tls", "the peer left before the connection was admitted", true);
    return;
  }
  bool again = false;
  // plain -> tls
  if (s->up_wait != Wait::kDone && Unblocks(s->up_wait, side, events)) {
    s->up_wait = Wait::kNone;
    for (size_t moved = 0;;) {
      if (moved >= kRoundBudget) { again = true; break; }
      if (s->up_off < s->up_len) {
        ERR_clear_error();
        int n = SSL_write(s->ssl, s->up_buf.get() + s->up_off, static_cast<int>(s->up_len - s->up_off));
        if (n > 0) { s->up_off += n; moved += n; s->counters->plain_to_tls += n; continue; }
        int err = SSL_get_error(s->ssl, n);
        if (err == SSL_ERROR_WANT_WRITE) { s->up_wait = Wait::kTlsWrite; break; }
        if (err == SSL_ERROR_WANT_READ) { s->up_wait = Wait::kTlsRead; break; }
        int e = errno;
        if (err == SSL_ERROR_SYSCALL && IsReset(e)) { Finish(s, "reset-by-tls", std::string("tls write: ") + std::strerror(e), true); return; }
        Finish(s, "error", OpenSslErrors("tls write"), true);
        return;
      }
      if (s->plain_eof) {
        // FIN from the plaintext side becomes close_notify + FIN; the other direction goes on (half-close).
        ERR_clear_error();
        int r = SSL_shutdown(s->ssl);
        if (r < 0 && SSL_get_error(s->ssl, r) == SSL_ERROR_WANT_WRITE) { s->up_wait = Wait::kTlsWrite; break; }
        shutdown(s->fd[kTls], SHUT_WR);
        s->close_notify_sent = true;
        s->up_wait = Wait::kDone;
        break;
      }
      if (!s->up_buf) { s->up_cap = kBufSize; s->up_buf.reset(new char[kBufSize]); }
      ssize_t n = read(s->fd[kPlain], s->up_buf.get(), s->up_cap);
      s->up_off = 0;
      s->up_len = n > 0 ? static_cast<size_t>(n) : 0;
      if (n > 0) continue;
      if (n == 0) { s->plain_eof = true; continue; }
      // Nothing to move: an idle connection holds no buffer (1000 idle ones would hold 64 MiB).
      if (errno == EAGAIN || errno == EINTR) { s->up_buf.reset(); s->up_wait = Wait::kPlainRead; break; }
      int e = errno;
      Finish(s, IsReset(e) ? "reset-by-plain" : "error", std::string("plain read: ") + std::strerror(e), true);
      return;
    }
  }
  // tls -> plain
  if (s->down_wait != Wait::kDone && Unblocks(s->down_wait, side, events)) {
    s->down_wait = Wait::kNone;
    // Set when the last fill ended on WANT_READ: OpenSSL holds no whole record, so once the buffer is out the
    // next move waits for the socket (no read(2) just to hear EAGAIN).
    bool tls_empty = false;
    for (size_t moved = 0;;) {
      if (moved >= kRoundBudget) { again = true; break; }
      if (s->down_off < s->down_len) {
        ssize_t n = send(s->fd[kPlain], s->down_buf.get() + s->down_off, s->down_len - s->down_off, MSG_NOSIGNAL);
        if (n > 0) { s->down_off += n; moved += n; s->counters->tls_to_plain += n; continue; }
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) { s->down_wait = Wait::kPlainWrite; break; }
        int e = n < 0 ? errno : EPIPE;
        Finish(s, IsReset(e) ? "reset-by-plain" : "error", std::string("plain write: ") + std::strerror(e), true);
        return;
      }
      if (s->tls_eof) {
        shutdown(s->fd[kPlain], SHUT_WR);
        s->plain_shut = true;
        s->down_wait = Wait::kDone;
        break;
      }
      if (tls_empty) { s->down_buf.reset(); s->down_wait = Wait::kTlsRead; break; }
      if (!s->down_buf) s->down_buf.reset(new char[kBufSize]);
      s->down_off = 0;
      s->down_len = 0;
      // A record carries at most 16 KiB: gather every whole record already read into one write to the plaintext side.
      int err = SSL_ERROR_NONE;
      while (s->down_len < kBufSize) {
        ERR_clear_error();
        int n = SSL_read(s->ssl, s->down_buf.get() + s->down_len, static_cast<int>(kBufSize - s->down_len));
        if (n <= 0) { err = SSL_get_error(s->ssl, n); break; }
        s->down_len += n;
      }
      if (err == SSL_ERROR_NONE) continue;  // the buffer is full
      if (err == SSL_ERROR_ZERO_RETURN) { s->tls_eof = true; continue; }
      if (err == SSL_ERROR_WANT_READ) { tls_empty = true; continue; }
      if (s->down_len > 0 && err == SSL_ERROR_WANT_WRITE) continue;  // out with what we have; the next read says it again
      if (err == SSL_ERROR_WANT_WRITE) { s->down_wait = Wait::kTlsWrite; break; }
      int e = errno;
      if (err == SSL_ERROR_SYSCALL && IsReset(e)) { Finish(s, "reset-by-tls", std::string("tls read: ") + std::strerror(e), true); return; }
      // A bad record, a failed MAC, a fatal alert from the peer: nothing after it can be trusted.
      Finish(s, "error", OpenSslErrors("tls read"), true);
      return;
    }
  }
  if (s->up_wait == Wait::kDone && s->down_wait == Wait::kDone) { Finish(s, "closed", "", false); return; }
  if (again) rerun_.push_back(s->id);
  Interest(s);
}

}  // namespace weir
