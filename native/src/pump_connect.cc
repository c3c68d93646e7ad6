// Pumps that connect their upstream themselves (PumpEngine::StartConnect):
// the short-connection path of the L4 proxy. JavaScript accepts, routes and
// picks the endpoint; everything per-connection after that — the upstream
// socket, its non-blocking connect and timeout, the socket options of both
// sides, the pipes — happens here on the pump thread, and JavaScript hears
// only the outcome (connected with its local address, or failed with an
// errno code it can retry on, then done with the byte counts).
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "pump.h"
#include "pump_state.h"

namespace weir {

using namespace pump_internal;

std::optional<Failure> PumpEngine::StartConnect(const PumpSpec& spec, const DialTarget& dial, uint64_t* id,
                                                std::shared_ptr<PumpCounters>* counters) {
  if (stopping_.load()) return Failure{"pump engine is stopped (environment shutting down)", "ESHUTDOWN"};
  auto pump = std::make_unique<Pump>();
  // The caller's socket stays the caller's (Node closes its fd when the
  // socket is destroyed); the pump works on its own duplicate.
  pump->fd[0] = fcntl(spec.fd_a, F_DUPFD_CLOEXEC, 0);
  if (pump->fd[0] < 0) return ErrnoFailure("fdA (" + std::to_string(spec.fd_a) + ")", errno);
  pump->phase = Pump::Phase::kConnecting;
  pump->dial = dial;
  pump->pipe_size = spec.pipe_size;
  pump->flow[0].initial = spec.initial_a_to_b;
  pump->idle_timeout_ms = spec.idle_timeout_ms;
  pump->started_ms = NowMsPrecise();
  pump->counters = std::make_shared<PumpCounters>();
  pump->id = next_id_.fetch_add(1);
  *id = pump->id;
  *counters = pump->counters;
  started_.fetch_add(1);
  active_.fetch_add(1);
  if (Enqueue(Command{Command::Kind::kStart, std::move(pump), 0, false, {}, nullptr})) {
    if (spec.defer_wake) wake_owed_.store(true, std::memory_order_relaxed);
    else Wake();
  }
  return std::nullopt;
}

void PumpEngine::Flush() {
  if (wake_owed_.exchange(false)) Wake();
}

void PumpEngine::Redial(uint64_t id, const DialTarget& dial) {
  Command c{Command::Kind::kDial, nullptr, id, false, {}, nullptr};
  c.dial = dial;
  if (Enqueue(std::move(c))) Wake();
}

// The client socket's checks and options, here rather than on the caller's
// thread. False = the pump was finished (not a TCP socket).
bool PumpEngine::AdoptClient(Pump* p) {
  int protocol = 0;
  socklen_t len = sizeof(protocol);
  if (getsockopt(p->fd[0], SOL_SOCKET, SO_PROTOCOL, &protocol, &len) != 0 || protocol != IPPROTO_TCP) {
    Finish(p, "error", "fdA is not a TCP socket", false, false);
    return false;
  }
  // O_NONBLOCK lives on the open file description (shared with the
  // caller's fd, where libuv set it already): one ioctl makes sure.
  int one = 1;
  ioctl(p->fd[0], FIONBIO, &one);
  setsockopt(p->fd[0], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return true;
}

void PumpEngine::BeginDial(Pump* p) {
  int fd = -1;
  const int r = BeginConnect(p->dial, &fd);
  if (r != 0 && r != EINPROGRESS) {
    const std::string code = ErrnoCode(r);
    return ConnectFailed(p, code, "connect " + code + " " + p->dial.text);
  }
  p->fd[1] = fd;
  epoll_event ev{};
  ev.events = kPumpSocketEvents;
  ev.data.u64 = (p->id << 1) | 1;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    const int err = errno;
    CloseFd(&p->fd[1]);
    return ConnectFailed(p, ErrnoCode(err), std::string("epoll_ctl: ") + std::strerror(err));
  }
  if (r == 0) return Connected(p);
  p->connect_deadline_ms = NowMs() + p->dial.timeout_ms;
  idle_heap_.emplace_back(p->connect_deadline_ms, p->id);
  std::push_heap(idle_heap_.begin(), idle_heap_.end(), EarlierDeadline);
}

void PumpEngine::CompleteConnect(Pump* p, uint32_t events) {
  // Writable with no error or hang-up: connected. Only a failure needs SO_ERROR read.
  if ((events & (EPOLLERR | EPOLLHUP)) == 0) {
    if ((events & EPOLLOUT) != 0) Connected(p);
    return;
  }
  int err = 0;
  socklen_t len = sizeof(err);
  if (getsockopt(p->fd[1], SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  if (err == 0 && (events & EPOLLOUT) == 0) err = ECONNRESET;
  if (err != 0) {
    const std::string code = ErrnoCode(err);
    return ConnectFailed(p, code, "connect " + code + " " + p->dial.text);
  }
  Connected(p);
}

void PumpEngine::Connected(Pump* p) {
  auto event = std::make_unique<PumpOutcome>();
  event->kind = PumpOutcome::Kind::kConnected;
  // The upstream socket's own address is for the access log: aggregated telemetry has none to fill.
  if (!p->native || !p->native->aggregate) LocalAddressOf(p->fd[1], &event->local_address, &event->local_port);
  p->phase = Pump::Phase::kPumping;
  p->last_activity_ms = NowMs();
  if (p->idle_timeout_ms > 0) {
    idle_heap_.emplace_back(p->last_activity_ms + p->idle_timeout_ms, p->id);
    std::push_heap(idle_heap_.begin(), idle_heap_.end(), EarlierDeadline);
  }
  Report(p, std::move(event));
  RunPump(p);
}

void PumpEngine::ConnectFailed(Pump* p, const std::string& code, const std::string& message) {
  if (p->fd[1] >= 0) {
    epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, p->fd[1], nullptr);
    CloseFd(&p->fd[1]);
  }
  p->phase = Pump::Phase::kAwaitingDial;
  auto event = std::make_unique<PumpOutcome>();
  event->kind = PumpOutcome::Kind::kConnectFailed;
  event->code = code;
  event->error = message;
  Report(p, std::move(event));
}

void PumpEngine::Redialled(Pump* p, const DialTarget& dial) {
  if (p->done || p->phase != Pump::Phase::kAwaitingDial) return;
  p->dial = dial;
  p->phase = Pump::Phase::kConnecting;
  BeginDial(p);
}

void PumpEngine::Report(Pump* p, std::unique_ptr<PumpOutcome> event) {
  event->id = p->id;
  event->duration_ms = NowMsPrecise() - p->started_ms;
  if (p->native) return NativeEvent(p, std::move(event));
  on_done_(std::move(event));
}

}  // namespace weir
