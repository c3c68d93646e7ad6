// The native HTTP/1.1 path's loop: adoption of client fds, config swaps,
// the epoll loop, timers (header timeout, keep-alive idle, connect
// timeout, pool idle) and the per-series aggregation JS takes in batches.
#include "h1_engine.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "h1_conn.h"
#include "../h2/h2_codec.h"

namespace weir {
namespace h1 {

bool ResolveEndpoint(Endpoint* e) {
  std::memset(&e->addr, 0, sizeof e->addr);
  if (e->port <= 0 || e->port > 65535) return false;
  if (e->ip.find(':') != std::string::npos) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&e->addr);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(static_cast<uint16_t>(e->port));
    if (inet_pton(AF_INET6, e->ip.c_str(), &a->sin6_addr) != 1) return false;
    e->addr_len = sizeof(sockaddr_in6);
    e->key = "[" + e->ip + "]:" + std::to_string(e->port);
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&e->addr);
    a->sin_family = AF_INET;
    a->sin_port = htons(static_cast<uint16_t>(e->port));
    if (inet_pton(AF_INET, e->ip.c_str(), &a->sin_addr) != 1) return false;
    e->addr_len = sizeof(sockaddr_in);
    e->key = e->ip + ":" + std::to_string(e->port);
  }
  return true;
}

void Io::ReadSome(size_t cap) {
  // One scratch buffer per thread: a read appends only what arrived (no zero-filled growth of every
  // connection's buffer, which would also keep each one's capacity at the largest read it ever saw).
  thread_local char scratch[64 * 1024];
  while (readable && !eof && !failed && InLen() < cap) {
    size_t want = std::min(sizeof scratch, cap - InLen());
    ssize_t n = ::read(fd, scratch, want);
    if (n > 0) {
      in.append(scratch, static_cast<size_t>(n));
      if (static_cast<size_t>(n) < want && !rdhup) {
        // Short read: the socket is drained (saves the EAGAIN read); new bytes bring a new edge. Not after
        // RDHUP: the FIN's edge has come already, so the 0 must be read now or never.
        readable = false;
      }
      continue;
    }
    if (n == 0) { eof = true; break; }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) { readable = false; break; }
    failed = true;
    error = errno;
    break;
  }
}

bool Io::WriteSome() {
  while (OutLen() > 0 && writable) {
    ssize_t n = ::send(fd, out.data() + out_off, OutLen(), MSG_NOSIGNAL);
    if (n > 0) {
      out_off += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) { writable = false; break; }
    failed = true;
    error = errno;
    return false;
  }
  if (OutLen() == 0) { out.clear(); out_off = 0; }
  return true;
}

std::unique_ptr<Engine> Engine::Create(std::string* error) {
  std::unique_ptr<Engine> e(new Engine());
  e->epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  e->wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (e->epoll_fd_ < 0 || e->wake_fd_ < 0) {
    *error = std::string("http engine: ") + std::strerror(errno);
    return nullptr;
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = &e->wake_handle_;
  epoll_ctl(e->epoll_fd_, EPOLL_CTL_ADD, e->wake_fd_, &ev);
  uint64_t seed = 0;
  if (getentropy(&seed, sizeof seed) != 0) seed = static_cast<uint64_t>(NowMsPrecise() * 1000);
  e->rng_ = seed | 1;
  e->cfg_ = std::make_shared<Config>();
  e->h2_ = h2::Codec::Create(e.get());  // null: node's nghttp2 is older than the header (h2 connections stay on the JS chain)
  e->thread_ = std::thread([p = e.get()] { p->Run(); });
  return e;
}

Engine::~Engine() { Stop(); }

void Engine::Stop() {
  if (stopping_.exchange(true)) return;
  Wake();
  if (thread_.joinable()) thread_.join();
  h2_.reset();
  downs_.clear();
  ups_.clear();
  dead_downs_.clear();
  dead_ups_.clear();
  {
    std::lock_guard<std::mutex> lock(commands_mutex_);
    for (AdoptSpec& a : adopts_) close(a.fd);
    adopts_.clear();
  }
  if (epoll_fd_ >= 0) close(epoll_fd_);
  if (wake_fd_ >= 0) close(wake_fd_);
  epoll_fd_ = wake_fd_ = -1;
}

void Engine::Wake() {
  uint64_t one = 1;
  ssize_t r = write(wake_fd_, &one, sizeof one);
  (void)r;
}

void Engine::Configure(std::shared_ptr<const Config> cfg) {
  {
    std::lock_guard<std::mutex> lock(stats_mutex_);
    duration_bounds_ = cfg->duration_bounds.size();
    size_bounds_ = cfg->size_bounds.size();
  }
  std::lock_guard<std::mutex> lock(commands_mutex_);
  pending_cfg_ = std::move(cfg);
  Wake();
}

size_t Engine::Bounds(bool duration) const { return duration ? duration_bounds_ : size_bounds_; }

bool Engine::Adopt(const AdoptSpec& spec, std::string* error) {
  if (spec.h2 && !h2_) {
    *error = "http engine: no HTTP/2 codec (node's nghttp2 is older than the header this addon was built with)";
    return false;
  }
  int type = 0;
  socklen_t len = sizeof type;
  if (getsockopt(spec.fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM) {
    *error = "http engine: fd is not a stream socket";
    return false;
  }
  int fd = fcntl(spec.fd, F_DUPFD_CLOEXEC, 0);
  if (fd < 0) {
    *error = std::string("http engine: dup: ") + std::strerror(errno);
    return false;
  }
  AdoptSpec mine = spec;
  mine.fd = fd;
  std::lock_guard<std::mutex> lock(commands_mutex_);
  adopts_.push_back(std::move(mine));
  Wake();
  return true;
}

void Engine::Drain() {
  std::lock_guard<std::mutex> lock(commands_mutex_);
  drain_ = true;
  Wake();
}

std::map<std::string, Series> Engine::TakeStats() {
  std::lock_guard<std::mutex> lock(stats_mutex_);
  std::map<std::string, Series> out;
  out.swap(stats_);
  return out;
}

void Engine::TakeCommands() {
  std::vector<AdoptSpec> adopts;
  std::shared_ptr<const Config> cfg;
  bool drain = false;
  {
    std::lock_guard<std::mutex> lock(commands_mutex_);
    adopts.swap(adopts_);
    cfg = std::move(pending_cfg_);
    drain = drain_;
    drain_ = false;
  }
  if (cfg) cfg_ = std::move(cfg);
  for (AdoptSpec& a : adopts) {
    if (a.h2) {
      if (h2_) h2_->Adopt(std::move(a));
      else close(a.fd);
      continue;
    }
    auto d = std::make_unique<Down>();
    d->id = next_id_++;
    d->io.fd = a.fd;
    d->inbound = a.inbound;
    d->dst_ip = a.dst_ip;
    d->dst_port = a.dst_port;
    d->peer_ip = a.peer_ip;
    d->io.in = std::move(a.initial);
    PrepareAdopted(a.fd);
    d->deadline = NowMs() + cfg_->header_timeout_ms;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.ptr = &d->handle;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, a.fd, &ev) != 0) continue;  // ~Down closes the fd
    counters_.connections++;
    counters_.active_connections++;
    Down* raw = d.get();
    downs_.emplace(raw->id, std::move(d));
    Advance(raw);
  }
  if (drain) {
    std::vector<Down*> idle;
    for (auto& [id, d] : downs_)
      if (d->phase == Down::Phase::kHead && d->io.InLen() == 0) idle.push_back(d.get());
    for (Down* d : idle) CloseDown(d);
    std::vector<Up*> pooled;
    for (auto& [k, list] : pool_) pooled.insert(pooled.end(), list.begin(), list.end());
    for (Up* u : pooled) CloseUp(u);
    if (h2_) h2_->Drain();
  }
}

void Engine::Sweep(int64_t now) {
  std::vector<Down*> expired;
  for (auto& [id, d] : downs_)
    if (d->phase == Down::Phase::kHead && d->deadline > 0 && now >= d->deadline) expired.push_back(d.get());
  for (Down* d : expired) CloseDown(d);  // slowloris or keep-alive idle: close, no answer (as Node's server)
  std::vector<Up*> late;
  for (auto& [p, u] : ups_)
    if (u->deadline > 0 && now >= u->deadline) late.push_back(u.get());
  for (Up* u : late) {
    if (u->dead) continue;
    if (u->owner) UpFailed(u, "connect timeout", true);
    else CloseUp(u);
  }
  if (h2_) h2_->Sweep(now);
}

void Engine::Run() {
  epoll_event events[128];
  int64_t next_sweep = NowMs() + 200;
  while (!stopping_.load()) {
    // A native HTTP/2 retry waiting for its backoff (tens of ms) wakes the loop on time, not at the next sweep.
    int n = epoll_wait(epoll_fd_, events, 128, h2_ ? h2_->WaitMs(200) : 200);
    for (int i = 0; i < n; i++) {
      auto* h = static_cast<Handle*>(events[i].data.ptr);
      if (h->kind == Handle::Kind::kWake) {
        uint64_t v;
        ssize_t r = read(wake_fd_, &v, sizeof v);
        (void)r;
        continue;
      }
      if (h->kind == Handle::Kind::kH2Down || h->kind == Handle::Kind::kH2Up) {
        h2_->Event(h, events[i].events);
      } else if (h->kind == Handle::Kind::kDown) {
        Down* d = static_cast<Down*>(h->ptr);
        if (!d->dead) DownEvent(d, events[i].events);
      } else {
        Up* u = static_cast<Up*>(h->ptr);
        if (!u->dead) UpEvent(u, events[i].events);
      }
    }
    TakeCommands();
    if (h2_) h2_->RunDue();
    int64_t now = NowMs();
    if (now >= next_sweep) {
      Sweep(now);
      next_sweep = now + 200;
    }
    dead_downs_.clear();
    dead_ups_.clear();
    if (h2_) h2_->Reap();
  }
}

namespace {
void Observe(std::vector<uint64_t>* buckets, double* sum, const std::vector<double>& bounds, double v) {
  if (buckets->empty()) buckets->assign(bounds.size() + 1, 0);
  size_t i = 0;
  while (i < bounds.size() && v > bounds[i]) i++;
  (*buckets)[i]++;
  *sum += v;
}
}  // namespace

void Engine::Record(Down* d, Exchange* ex) { Record(d->inbound, d->peer_ip, ex); }

void Engine::Record(bool inbound, const std::string& peer_ip, Exchange* ex) {
  counters_.requests++;
  const Config& c = *ex->cfg;
  std::string key;
  key.reserve(128);
  key += std::to_string(c.generation);
  key += '|';
  key += std::to_string(ex->route);
  key += '|';
  key += ex->endpoint;
  key += '|';
  key += std::to_string(ex->code);
  key += '|';
  key += ex->flags;
  key += '|';
  if (inbound) key += peer_ip;
  key += '|';
  if (inbound) key += ex->dst_key;
  key += '|';
  key += ex->authority;
  key += '|';
  key += ex->protocol;
  key += '|';
  key += ex->grpc_status;
  key += '|';
  key += inbound ? ex->peer_in : ex->peer_out;
  double ms = NowMsPrecise() - ex->t0;
  std::lock_guard<std::mutex> lock(stats_mutex_);
  Series& s = stats_[key];
  s.count++;
  Observe(&s.duration, &s.duration_sum, c.duration_bounds, ms);
  Observe(&s.request_bytes, &s.request_bytes_sum, c.size_bounds, static_cast<double>(ex->req_header_bytes + ex->req_body_bytes));
  Observe(&s.response_bytes, &s.response_bytes_sum, c.size_bounds, static_cast<double>(ex->resp_header_bytes + ex->resp_body_bytes));
  s.request_messages += ex->req_messages.count;
  s.response_messages += ex->resp_messages.count;
}

}  // namespace h1
}  // namespace weir
