// The native accept path (l4_native.h) inside the pump engine: accept on the
// pump thread, read the original destination, route by the table
// JavaScript pushed, pick an endpoint from the cluster table, dial it with
// the pump's own non-blocking connect (pump_connect.cc) and retry another
// endpoint on connect failure; every outcome becomes an L4Record, flushed
// to JavaScript once per loop turn. A connection the table does not mark
// native is handed over as its fd: nothing is read from it here, so
// JavaScript sees it exactly as its own listener would have.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "pump.h"
#include "pump_state.h"
#include "sockets.h"

namespace weir {

using namespace pump_internal;

namespace {

std::mutex routes_mutex;
std::shared_ptr<const L4RouteTable>& RoutesSlot() {
  static auto* slot = new std::shared_ptr<const L4RouteTable>(std::make_shared<L4RouteTable>());
  return *slot;
}

double WallMs() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

// Accepts per listener per loop turn: a connection storm must not starve
// the bytes of connections already open.
constexpr int kAcceptBudget = 64;
// How long telemetry records may wait for company before they go to JavaScript, and how many at most.
constexpr int64_t kRecordDelayMs = 4;
constexpr size_t kRecordBatchMax = 512;
constexpr int64_t kEmfilePauseMs = 100;

bool PeerOf(int fd, std::string* ip, int* port, bool* ipv4) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return false;
  char buf[INET6_ADDRSTRLEN] = {0};
  if (ss.ss_family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &a->sin_addr, buf, sizeof(buf));
    *port = ntohs(a->sin_port);
    *ipv4 = true;
  } else if (ss.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    *ipv4 = IN6_IS_ADDR_V4MAPPED(&a->sin6_addr);
    if (*ipv4) inet_ntop(AF_INET, &a->sin6_addr.s6_addr[12], buf, sizeof(buf));
    else inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof(buf));
    *port = ntohs(a->sin6_port);
  } else {
    return false;
  }
  *ip = buf;
  return true;
}

// What a connection's opened and failed records both carry: who it was
// from, where it was going, how it was routed (the istio_tcp_* labels and
// the access log are built from these).
void FillConnection(const NativeConn& n, L4Record* rec) {
  rec->dst_ip = n.dst_ip;
  rec->dst_port = n.dst_port;
  rec->peer_ip = n.peer_ip;
  rec->peer_port = n.peer_port;
  rec->cluster = n.cluster_name;
  rec->detect_reason = n.detect_reason;
  rec->passthrough = !n.cluster;
  rec->start_wall_ms = n.start_wall_ms;
  rec->attempts = n.attempts;
}

}  // namespace

void SetL4Routes(std::shared_ptr<const L4RouteTable> table) {
  std::lock_guard<std::mutex> lock(routes_mutex);
  RoutesSlot() = std::move(table);
}

std::shared_ptr<const L4RouteTable> CurrentL4Routes() {
  std::lock_guard<std::mutex> lock(routes_mutex);
  return RoutesSlot();
}

std::optional<Failure> PumpEngine::Listen(int fd, int listener_id, const char* direction, L4Sink sink) {
  if (stopping_.load()) return Failure{"pump engine is stopped (environment shutting down)", "ESHUTDOWN"};
  auto l = std::make_unique<L4Listener>();
  l->id = listener_id;
  l->fd = fd;
  l->direction = direction;
  Command c{Command::Kind::kListen, nullptr, 0, false, {}, nullptr};
  c.listener = std::move(l);
  {
    // Under the queue's lock: the thread reads l4_sink_ only after taking this command.
    std::lock_guard<std::mutex> lock(commands_mutex_);
    if (!l4_sink_) l4_sink_ = std::move(sink);
  }
  if (Enqueue(std::move(c))) Wake();
  return std::nullopt;
}

void PumpEngine::Unlisten(int listener_id) {
  if (Enqueue(Command{Command::Kind::kUnlisten, nullptr, static_cast<uint64_t>(listener_id), false, {}, nullptr})) Wake();
}

void PumpEngine::AbortNative(bool reset) {
  if (Enqueue(Command{Command::Kind::kAbortNative, nullptr, 0, reset, {}, nullptr})) Wake();
}

L4Stats PumpEngine::NativeStats() const {
  return L4Stats{l4_accepted_.load(), l4_native_.load(), l4_handed_off_.load(), l4_dropped_.load(), l4_retries_.load(), l4_active_.load()};
}

void PumpEngine::AcceptOn(L4Listener* l, int64_t now_ms) {
  std::shared_ptr<const L4RouteTable> table = CurrentL4Routes();
  for (int i = 0; i < kAcceptBudget; i++) {
    const int fd = accept4(l->fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // Out of fds: stop listening for a moment rather than spin on a
        // listener that stays readable (the backlog keeps the clients).
        epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, l->fd, nullptr);
        l->paused = true;
        l->resume_ms = now_ms + kEmfilePauseMs;
      }
      return;  // EAGAIN, or a client gone before accept (ECONNABORTED): next edge
    }
    l4_accepted_.fetch_add(1, std::memory_order_relaxed);
    AcceptOne(l, fd, *table);
  }
}

void PumpEngine::ResumeListeners(int64_t now_ms) {
  for (auto& l : listeners_) {
    if (!l->paused || l->resume_ms > now_ms) continue;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kListenTokenBase + static_cast<uint64_t>(l->id);
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, l->fd, &ev) == 0) l->paused = false;
    else l->resume_ms = now_ms + kEmfilePauseMs;
  }
}

void PumpEngine::CloseListeners() {
  for (auto& l : listeners_) {
    epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, l->fd, nullptr);
    CloseFd(&l->fd);
  }
  listeners_.clear();
}

void PumpEngine::AcceptOne(L4Listener* l, int fd, const L4RouteTable& table) {
  L4Record rec;
  rec.direction = l->direction;
  rec.start_wall_ms = WallMs();
  bool ipv4 = false;
  if (!PeerOf(fd, &rec.peer_ip, &rec.peer_port, &ipv4)) {
    // Reset before we got to it: nothing to route, nobody to tell.
    l4_dropped_.fetch_add(1, std::memory_order_relaxed);
    close(fd);
    return;
  }
  Endpoint dst;
  const bool have_dst = !OriginalDst(fd, ipv4, &dst).has_value();
  const L4Route* route = nullptr;
  if (have_dst) {
    rec.dst_ip = dst.address;
    rec.dst_port = dst.port;
    const bool own = std::find(table.own_ports.begin(), table.own_ports.end(), dst.port) != table.own_ports.end();
    const std::string dir = l->direction[0] == 'o' ? "o|" : "i|";
    auto exact = table.exact.find(dir + dst.address + "|" + std::to_string(dst.port));
    if (exact != table.exact.end()) {
      route = &exact->second;
    } else {
      auto by_port = table.by_port.find(dir + std::to_string(dst.port));
      if (by_port != table.by_port.end()) route = &by_port->second;
    }
    if (own || l4_active_.load(std::memory_order_relaxed) >= table.max_connections) route = nullptr;
  }
  std::shared_ptr<const Cluster> cluster;
  if (route != nullptr && route->kind == L4Route::Kind::kCluster) {
    cluster = GlobalClusterTable().Find(route->cluster);
    // No such cluster or no endpoint: JavaScript's chain reports it (NR / UH) as it always has.
    if (!cluster || cluster->size() == 0) route = nullptr;
  }
  if (route == nullptr || route->kind == L4Route::Kind::kJs) {
    rec.kind = L4Record::Kind::kHandoff;
    rec.fd = fd;
    l4_handed_off_.fetch_add(1, std::memory_order_relaxed);
    return AddRecord(std::move(rec));
  }
  auto pump = std::make_unique<Pump>();
  pump->fd[0] = fd;
  pump->phase = Pump::Phase::kConnecting;
  pump->pipe_size = PumpSpec{}.pipe_size;
  pump->idle_timeout_ms = table.idle_timeout_ms;
  pump->started_ms = NowMsPrecise();
  pump->counters = std::make_shared<PumpCounters>();
  pump->id = next_id_.fetch_add(1);
  auto n = std::make_unique<NativeConn>();
  n->direction = l->direction;
  n->cluster = cluster;
  n->cluster_name = route->cluster;
  n->detect_reason = route->reason;
  n->dst_ip = rec.dst_ip;
  n->dst_port = rec.dst_port;
  n->peer_ip = rec.peer_ip;
  n->peer_port = rec.peer_port;
  n->start_wall_ms = rec.start_wall_ms;
  n->aggregate = table.aggregate;
  n->max_attempts = cluster ? std::max(1, std::min<int>(cluster->spec().max_attempts, static_cast<int>(cluster->size()))) : 1;
  const bool inbound = route->kind == L4Route::Kind::kInbound;
  const bool peek = inbound && route->peek;
  if (inbound) {
    if (!PrepareInbound(pump.get(), n.get(), dst, table)) {
      rec.kind = L4Record::Kind::kHandoff;
      rec.fd = fd;
      pump->fd[0] = -1;
      l4_handed_off_.fetch_add(1, std::memory_order_relaxed);
      return AddRecord(std::move(rec));
    }
  } else if (!cluster) {
    // Passthrough: the original destination, as the client meant it.
    if (ParseDialTarget(dst.address, dst.port, "", table.passthrough_connect_timeout_ms, &pump->dial)) {
      rec.kind = L4Record::Kind::kHandoff;
      rec.fd = fd;
      pump->fd[0] = -1;
      l4_handed_off_.fetch_add(1, std::memory_order_relaxed);
      return AddRecord(std::move(rec));
    }
    n->upstream_ip = dst.address;
    n->upstream_port = dst.port;
    n->attempts = 1;
  }
  pump->native = std::move(n);
  Pump* p = pump.get();
  pumps_.emplace(p->id, std::move(pump));
  started_.fetch_add(1);
  active_.fetch_add(1);
  // A peeking connection counts as native once the peek keeps it (l4_inbound.cc).
  if (!peek) l4_native_.fetch_add(1, std::memory_order_relaxed);
  l4_active_.fetch_add(1, std::memory_order_relaxed);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  epoll_event ev{};
  ev.events = kPumpSocketEvents;
  ev.data.u64 = p->id << 1;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    p->native->last_message = std::string("epoll_ctl: ") + std::strerror(errno);
    return Finish(p, "error", p->native->last_message, true, false);
  }
  if (p->native->cluster && !DialNext(p)) return Finish(p, "error", "no endpoint left to pick", true, false);
  if (peek) return BeginPeek(p);
  if (!p->native->cluster) BeginDial(p);
}

// Picks the next untried endpoint and dials it. False: none left.
bool PumpEngine::DialNext(Pump* p) {
  NativeConn* n = p->native.get();
  const int i = n->cluster->Pick(n->tried);
  if (i < 0) return false;
  if (i < 64) n->tried |= uint64_t{1} << i;
  n->index = i;
  n->attempts++;
  n->lease = Acquire(*n->cluster, i);
  const ClusterEndpoint& e = n->cluster->endpoint(i);
  n->upstream_ip = e.ip;
  n->upstream_port = e.port;
  DialTarget d;
  std::memcpy(&d.addr, &e.addr, sizeof(d.addr));
  d.addr_len = e.addr_len;
  d.timeout_ms = n->cluster->spec().connect_timeout_ms;
  d.text = e.addr.ss_family == AF_INET6 ? "[" + e.ip + "]:" + std::to_string(e.port) : e.ip + ":" + std::to_string(e.port);
  p->dial = d;
  p->phase = Pump::Phase::kConnecting;
  BeginDial(p);
  return true;
}

void PumpEngine::NativeEvent(Pump* p, std::unique_ptr<PumpOutcome> event) {
  NativeConn* n = p->native.get();
  // Aggregated: the event's counts go to a series (l4_series.cc); no record.
  const bool aggregate = n->aggregate;
  if (aggregate) AggregateEvent(p, *event);
  L4Record rec;
  rec.id = p->id;
  rec.direction = n->direction;
  switch (event->kind) {
    case PumpOutcome::Kind::kConnected:
      n->opened = true;
      if (aggregate) return;
      rec.kind = L4Record::Kind::kOpened;
      FillConnection(*n, &rec);
      rec.upstream_ip = n->upstream_ip;
      rec.upstream_port = n->upstream_port;
      rec.local_ip = event->local_address;
      rec.local_port = event->local_port;
      return AddRecord(std::move(rec));
    case PumpOutcome::Kind::kConnectFailed: {
      n->lease.Release();
      n->last_code = event->code;
      n->last_message = event->error;
      const bool retry = n->cluster && n->attempts < n->max_attempts;
      if (!aggregate) {
        rec.kind = L4Record::Kind::kConnectFailed;
        rec.upstream_ip = n->upstream_ip;
        rec.upstream_port = n->upstream_port;
        rec.code = event->code;
        rec.message = event->error;
        rec.retrying = retry;
        AddRecord(std::move(rec));
      }
      if (retry) l4_retries_.fetch_add(1, std::memory_order_relaxed);
      if (retry && DialNext(p)) return;
      // Every attempt failed: the client gets a reset, as a refused connect would have given it.
      return Finish(p, "connect-failed", n->last_message, true, false);
    }
    case PumpOutcome::Kind::kDone:
      break;
  }
  l4_active_.fetch_sub(1, std::memory_order_relaxed);
  n->lease.Release();
  if (aggregate) return;
  rec.duration_ms = event->duration_ms;
  if (n->opened) {
    rec.kind = L4Record::Kind::kClosed;
    rec.a_to_b = event->a_to_b;
    rec.b_to_a = event->b_to_a;
    rec.reason = event->reason;
    rec.error = event->error;
    return AddRecord(std::move(rec));
  }
  rec.kind = L4Record::Kind::kFailed;
  FillConnection(*n, &rec);
  rec.code = n->last_code;
  rec.message = n->last_code.empty() ? "client went away" : n->last_message;
  rec.reason = event->reason;
  AddRecord(std::move(rec));
}

// Long-lived connections report their bytes every 5 s, not only at close
// (as the JavaScript chain's flush does, and Istio).
void PumpEngine::ReportProgress(int64_t now_ms) {
  if (now_ms < next_progress_ms_) return;
  next_progress_ms_ = now_ms + 5000;
  for (auto& [id, p] : pumps_) {
    NativeConn* n = p->native.get();
    if (n == nullptr || !n->opened || p->done) continue;
    if (n->aggregate) {
      AggregateProgress(p.get());
      continue;
    }
    const uint64_t a = p->counters->a_to_b.load(std::memory_order_relaxed);
    const uint64_t b = p->counters->b_to_a.load(std::memory_order_relaxed);
    if (a + b == n->reported) continue;
    n->reported = a + b;
    L4Record rec;
    rec.kind = L4Record::Kind::kProgress;
    rec.id = id;
    rec.direction = n->direction;
    rec.a_to_b = a;
    rec.b_to_a = b;
    AddRecord(std::move(rec));
  }
}

void PumpEngine::AddRecord(L4Record record) {
  if (!l4_batch_) l4_batch_ = std::make_unique<L4Batch>();
  if (l4_batch_->empty()) l4_batch_due_ms_ = NowMs() + kRecordDelayMs;
  if (record.kind == L4Record::Kind::kHandoff) l4_batch_urgent_ = true;
  l4_batch_->push_back(std::move(record));
}

// A handoff goes at once (a connection waits on it); telemetry records wait
// up to kRecordDelayMs so that one JavaScript wakeup carries many
// connections' records instead of one or two (each wakeup is a cross-thread
// signal, a scheduling of the JS thread and a N-API call).
void PumpEngine::FlushRecords(int64_t now_ms) {
  if (!l4_batch_ || l4_batch_->empty()) return;
  if (!l4_batch_urgent_ && now_ms < l4_batch_due_ms_ && l4_batch_->size() < kRecordBatchMax) return;
  l4_batch_urgent_ = false;
  if (!l4_sink_) {
    for (L4Record& r : *l4_batch_) CloseFd(&r.fd);
    l4_batch_->clear();
    return;
  }
  l4_sink_(std::move(l4_batch_));
}

}  // namespace weir
