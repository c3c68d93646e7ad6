#include "tls_relay.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstring>

#include "tls_ctx.h"
#include "mono_clock.h"
#include "tls_session.h"

namespace weir {

using namespace tls_relay;

namespace {

constexpr uint64_t kWakeToken = ~uint64_t{0};
constexpr int64_t kAttachTimeoutMs = 60000;

std::optional<Failure> DupStream(int fd, const char* what, int* out) {
  int type = 0;
  socklen_t len = sizeof(type);
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) return ErrnoFailure(what, errno);
  if (type != SOCK_STREAM) return Failure{std::string(what) + " is not a stream socket", "EINVAL"};
  int d = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (d < 0) return ErrnoFailure(std::string(what) + ": dup", errno);
  // No Nagle: a TLS record (or a handshake flight) written in pieces must not
  // wait for the peer's delayed ACK. Accepted sockets come without it. Not TCP
  // (a unix socket in a test): nothing to set.
  int one = 1;
  setsockopt(d, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  int fl = fcntl(d, F_GETFL);
  if (fl < 0 || fcntl(d, F_SETFL, fl | O_NONBLOCK) != 0) {
    int e = errno;
    close(d);
    return ErrnoFailure(std::string(what) + ": O_NONBLOCK", e);
  }
  *out = d;
  return std::nullopt;
}

}  // namespace

std::optional<Failure> TlsRelayEngine::Create(OnEvent on_event, std::unique_ptr<TlsRelayEngine>* out) {
  std::unique_ptr<TlsRelayEngine> e(new TlsRelayEngine());
  e->on_event_ = std::move(on_event);
  e->epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  if (e->epoll_fd_ < 0) return ErrnoFailure("tlsRelay: epoll_create1", errno);
  e->wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (e->wake_fd_ < 0) return ErrnoFailure("tlsRelay: eventfd", errno);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kWakeToken;
  if (epoll_ctl(e->epoll_fd_, EPOLL_CTL_ADD, e->wake_fd_, &ev) != 0) return ErrnoFailure("tlsRelay: epoll_ctl", errno);
  TlsRelayEngine* raw = e.get();
  e->thread_ = std::thread([raw] { raw->Run(); });
  *out = std::move(e);
  return std::nullopt;
}

TlsRelayEngine::~TlsRelayEngine() {
  Stop();
  if (epoll_fd_ >= 0) close(epoll_fd_);
  if (wake_fd_ >= 0) close(wake_fd_);
}

void TlsRelayEngine::Stop() {
  std::lock_guard<std::mutex> lock(stop_mutex_);
  if (stopped_) return;
  stopped_ = true;
  stopping_ = true;
  uint64_t one = 1;
  if (write(wake_fd_, &one, sizeof(one)) < 0) { /* the thread polls stopping_ anyway */ }
  if (thread_.joinable()) thread_.join();
  sessions_.clear();
  std::lock_guard<std::mutex> c(commands_mutex_);
  commands_.clear();
}

TlsEngineStats TlsRelayEngine::Stats() const {
  return TlsEngineStats{active_.load(), started_.load(), handshakes_.load(), handshake_failures_.load(), finished_.load()};
}

void TlsRelayEngine::Enqueue(Command c) {
  bool wake;
  {
    std::lock_guard<std::mutex> lock(commands_mutex_);
    wake = commands_.empty();
    commands_.push_back(std::move(c));
  }
  uint64_t one = 1;
  if (wake && write(wake_fd_, &one, sizeof(one)) < 0) { /* already signalled */ }
}

std::optional<Failure> TlsRelayEngine::Start(const TlsStartSpec& spec, uint64_t* id, std::shared_ptr<TlsCounters>* counters) {
  if (spec.ctx == nullptr) return Failure{"tlsStart: no TLS context", "EINVAL"};
  auto s = std::make_unique<Session>();
  if (auto f = DupStream(spec.fd, "tlsStart: fd", &s->fd[kTls])) return f;
  ERR_clear_error();
  s->ssl = SSL_new(spec.ctx);
  if (s->ssl == nullptr) return Failure{OpenSslErrors("tlsStart: SSL_new"), "ETLS"};
  s->server = spec.server;
  if (spec.initial.empty()) {
    SSL_set_fd(s->ssl, s->fd[kTls]);
  } else {
    // The bytes a peek already took from the kernel come first, from memory;
    // the socket takes over once they are consumed (Handshake swaps the BIO).
    BIO* mem = BIO_new(BIO_s_mem());
    BIO_write(mem, spec.initial.data(), static_cast<int>(spec.initial.size()));
    BIO_set_mem_eof_return(mem, -1);
    SSL_set_bio(s->ssl, mem, BIO_new_socket(s->fd[kTls], BIO_NOCLOSE));
    s->prefix_rbio = true;
  }
  if (spec.server) {
    SSL_set_accept_state(s->ssl);
  } else {
    SSL_set_connect_state(s->ssl);
    if (!spec.sni.empty()) SSL_set_tlsext_host_name(s->ssl, spec.sni.c_str());
  }
  s->id = next_id_++;
  s->started_ms = NowMsPrecise();
  s->deadline_ms = NowMs() + spec.handshake_timeout_ms;
  *id = s->id;
  *counters = s->counters;
  started_++;
  active_++;
  Command c;
  c.kind = Command::Kind::kStart;
  c.session = std::move(s);
  Enqueue(std::move(c));
  return std::nullopt;
}

std::optional<Failure> TlsRelayEngine::Attach(uint64_t id, int plain_fd, std::string initial, int64_t idle_timeout_ms) {
  int d = -1;
  if (auto f = DupStream(plain_fd, "tlsAttach: fd", &d)) return f;
  Command c;
  c.kind = Command::Kind::kAttach;
  c.id = id;
  c.fd = d;
  c.initial = std::move(initial);
  c.idle_timeout_ms = idle_timeout_ms;
  Enqueue(std::move(c));
  return std::nullopt;
}

void TlsRelayEngine::Abort(uint64_t id, bool reset) {
  Command c;
  c.kind = Command::Kind::kAbort;
  c.id = id;
  c.reset = reset;
  Enqueue(std::move(c));
}

void TlsRelayEngine::TakeCommands(int64_t now) {
  std::vector<Command> batch;
  {
    std::lock_guard<std::mutex> lock(commands_mutex_);
    batch.swap(commands_);
  }
  for (auto& c : batch) {
    if (c.kind == Command::Kind::kStart) {
      Session* s = c.session.get();
      sessions_.emplace(s->id, std::move(c.session));
      Handshake(s);
      continue;
    }
    auto it = sessions_.find(c.id);
    Session* s = it == sessions_.end() || it->second->finished ? nullptr : it->second.get();
    if (c.kind == Command::Kind::kAbort) {
      if (s != nullptr) Finish(s, "aborted", "", c.reset);
      continue;
    }
    // kAttach: the session may have ended meanwhile (the peer left); its Done event says so.
    if (s == nullptr || s->state != Session::State::kWaiting) {
      if (c.fd >= 0) close(c.fd);
      continue;
    }
    s->fd[kPlain] = c.fd;
    // The first plaintext (bytes the caller had already read) fills the first buffer.
    if (!c.initial.empty()) {
      s->up_cap = std::max(kBufSize, c.initial.size());
      s->up_buf.reset(new char[s->up_cap]);
      std::memcpy(s->up_buf.get(), c.initial.data(), c.initial.size());
    }
    s->up_len = c.initial.size();
    s->up_off = 0;
    s->idle_timeout_ms = c.idle_timeout_ms;
    s->last_active_ms = now;
    s->state = Session::State::kRelay;
    Relay(s, -1, 0);
  }
}

void TlsRelayEngine::Interest(Session* s) {
  uint32_t want[2] = {0, 0};
  if (s->state == Session::State::kHandshake) {
    want[kTls] = SSL_want_write(s->ssl) ? EPOLLOUT : EPOLLIN;
  } else if (s->state == Session::State::kRelay) {
    for (Wait w : {s->up_wait, s->down_wait}) {
      if (w == Wait::kTlsRead) want[kTls] |= EPOLLIN;
      if (w == Wait::kTlsWrite) want[kTls] |= EPOLLOUT;
      if (w == Wait::kPlainRead) want[kPlain] |= EPOLLIN;
      if (w == Wait::kPlainWrite) want[kPlain] |= EPOLLOUT;
    }
  } else {
    // Waiting for Attach: nothing is read (a half-close is fine, the bytes wait in the kernel), but a
    // reset must end the session. Edge-triggered with no IN/OUT: only error/hangup, once.
    want[kTls] = EPOLLET;
  }
  for (int side : {kTls, kPlain}) {
    if (s->fd[side] < 0) continue;
    epoll_event ev{};
    ev.events = want[side];
    ev.data.u64 = (s->id << 1) | static_cast<uint64_t>(side);
    // An fd with nothing to wait for leaves the set: error/hangup reports on it would spin the thread.
    if (want[side] == 0) {
      if (s->in_epoll[side]) epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, s->fd[side], nullptr);
      s->in_epoll[side] = false;
    } else if (!s->in_epoll[side]) {
      if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, s->fd[side], &ev) != 0) { Finish(s, "error", ErrnoFailure("epoll_ctl", errno).message, true); return; }
      s->in_epoll[side] = true;
    } else if (want[side] != s->registered[side]) {
      epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, s->fd[side], &ev);
    }
    s->registered[side] = want[side];
  }
}

void TlsRelayEngine::Handshake(Session* s) {
  for (;;) {
    ERR_clear_error();
    int r = SSL_do_handshake(s->ssl);
    if (r == 1) break;
    int err = SSL_get_error(s->ssl, r);
    if (err == SSL_ERROR_WANT_READ && s->prefix_rbio && BIO_ctrl_pending(SSL_get_rbio(s->ssl)) == 0) {
      SSL_set0_rbio(s->ssl, BIO_new_socket(s->fd[kTls], BIO_NOCLOSE));
      s->prefix_rbio = false;
      continue;
    }
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) { Interest(s); return; }
    int e = errno;
    std::string why = OpenSslErrors("handshake");
    if (err == SSL_ERROR_SYSCALL) why += e != 0 ? std::string(": ") + std::strerror(e) : ": peer closed the connection";
    handshake_failures_++;
    Finish(s, "handshake-failed", why, false);
    return;
  }
  if (SSL_get_verify_result(s->ssl) != X509_V_OK || SSL_get0_peer_certificate(s->ssl) == nullptr) {
    handshake_failures_++;
    Finish(s, "handshake-failed", "peer certificate not verified", true);
    return;
  }
  handshakes_++;
  s->state = Session::State::kWaiting;
  // JavaScript attaches or aborts within its connect timeout; a session it lost must not hold its fd forever.
  s->deadline_ms = NowMs() + kAttachTimeoutMs;
  auto ev = std::make_unique<TlsEvent>();
  ev->kind = TlsEvent::Kind::kHandshake;
  ev->id = s->id;
  ev->peer_uris = PeerUriSans(s->ssl);
  const unsigned char* alpn = nullptr;
  unsigned alpn_len = 0;
  SSL_get0_alpn_selected(s->ssl, &alpn, &alpn_len);
  if (alpn != nullptr) ev->alpn.assign(reinterpret_cast<const char*>(alpn), alpn_len);
  Interest(s);
  on_event_(std::move(ev));
}

void TlsRelayEngine::Finish(Session* s, const std::string& reason, const std::string& error, bool rst) {
  if (s->finished) return;
  s->finished = true;
  for (int side : {kTls, kPlain}) {
    if (s->in_epoll[side]) epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, s->fd[side], nullptr);
    s->in_epoll[side] = false;
    CloseFd(&s->fd[side], rst);
  }
  auto ev = std::make_unique<TlsEvent>();
  ev->kind = TlsEvent::Kind::kDone;
  ev->id = s->id;
  ev->reason = reason;
  ev->error = error;
  ev->plain_to_tls = s->counters->plain_to_tls.load();
  ev->tls_to_plain = s->counters->tls_to_plain.load();
  ev->duration_ms = NowMsPrecise() - s->started_ms;
  dead_.push_back(s->id);
  active_--;
  finished_++;
  on_event_(std::move(ev));
}

void TlsRelayEngine::Expire(int64_t now) {
  if (now < next_scan_ms_) return;
  next_scan_ms_ = now + 250;
  for (auto& [id, s] : sessions_) {
    if (s->finished) continue;
    if (s->state == Session::State::kHandshake && now >= s->deadline_ms) {
      handshake_failures_++;
      Finish(s.get(), "handshake-failed", "handshake timed out", true);
    } else if (s->state == Session::State::kWaiting && now >= s->deadline_ms) {
      Finish(s.get(), "error", "not attached within 60 s of the handshake", true);
    } else if (s->state == Session::State::kRelay && s->idle_timeout_ms > 0 && now - s->last_active_ms >= s->idle_timeout_ms) {
      Finish(s.get(), "idle", "", false);
    }
  }
}

void TlsRelayEngine::Run() {
  epoll_event events[128];
  while (!stopping_) {
    int n = epoll_wait(epoll_fd_, events, 128, !rerun_.empty() ? 0 : sessions_.empty() ? -1 : 250);
    if (n < 0 && errno != EINTR) break;
    int64_t now = NowMs();
    for (int i = 0; i < n; i++) {
      uint64_t token = events[i].data.u64;
      if (token == kWakeToken) {
        uint64_t v;
        while (read(wake_fd_, &v, sizeof(v)) > 0) {}
        continue;
      }
      auto it = sessions_.find(token >> 1);
      if (it == sessions_.end() || it->second->finished) continue;
      Session* s = it->second.get();
      if (s->state == Session::State::kHandshake) Handshake(s);
      else { s->last_active_ms = now; Relay(s, static_cast<int>(token & 1), events[i].events); }
    }
    std::vector<uint64_t> rerun;
    rerun.swap(rerun_);
    for (uint64_t id : rerun) {
      auto it = sessions_.find(id);
      if (it != sessions_.end() && !it->second->finished) Relay(it->second.get(), -1, 0);
    }
    TakeCommands(now);
    Expire(now);
    for (uint64_t id : dead_) sessions_.erase(id);
    dead_.clear();
  }
}

}  // namespace weir
