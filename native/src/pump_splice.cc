// The splice side of the pump engine: taking over a pair of connected
// sockets (Start), moving their bytes through a pipe per direction
// (RunPump) and ending a pump (Finish). The thread, its loop and its
// command queue live in pump.cc; pumps that dial their upstream themselves
// in pump_connect.cc.
#include "pump.h"

#include "pump_state.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace weir {

using namespace pump_internal;

namespace {

// Bytes one pump may move per direction before the thread looks at the
// others: a bulk stream must not starve 999 interactive ones.
constexpr uint64_t kRoundBudget = 4u << 20;
constexpr unsigned kSpliceFlags = SPLICE_F_MOVE | SPLICE_F_NONBLOCK;
// A pipe-less flow's copy buffer (on the pump thread's stack). A read that
// fills it means bulk data: the flow takes a pipe and splices.
constexpr size_t kCopyBytes = 16 << 10;

// The peer of this socket aborted the connection: pass it on as an abort.
bool IsResetErrno(int err) { return err == ECONNRESET || err == EPIPE || err == ECONNABORTED; }

// Closing with SO_LINGER {1, 0} makes the kernel send RST instead of FIN.
void ResetAndClose(int* fd) {
  if (*fd < 0) return;
  linger lg{1, 0};
  setsockopt(*fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  CloseFd(fd);
}

std::optional<Failure> CheckTcpSocket(int fd, const char* name, struct stat* st) {
  std::string what = std::string(name) + " (" + std::to_string(fd) + ")";
  if (fstat(fd, st) != 0) return ErrnoFailure(what, errno);
  if (!S_ISSOCK(st->st_mode)) return Failure{what + " is not a socket", "ENOTSOCK"};
  int type = 0, protocol = 0;
  socklen_t len = sizeof(type);
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) return ErrnoFailure(what + ": SO_TYPE", errno);
  len = sizeof(protocol);
  if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &protocol, &len) != 0) return ErrnoFailure(what + ": SO_PROTOCOL", errno);
  if (type != SOCK_STREAM || protocol != IPPROTO_TCP) return Failure{what + " is not a TCP socket", "EPROTOTYPE"};
  sockaddr_storage peer{};
  len = sizeof(peer);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) != 0) {
    int err = errno;
    return Failure{what + " is not connected: " + std::strerror(err), err == ENOTCONN ? "ENOTCONN" : "EINVAL"};
  }
  return std::nullopt;
}

}  // namespace

std::optional<Failure> PumpEngine::TakePipe(Flow* flow, int pipe_size) {
  // From the pool when one is waiting (no syscall), else a new pipe.
  PipeEnds ends;
  if (auto f = pool_.Take(&ends)) return f;
  flow->pipe_r = ends.r;
  flow->pipe_w = ends.w;
  // A bigger pipe means fewer syscalls and wakeups per MiB, but the resize
  // costs ~3 µs per pipe (measured here as uid 1337: pipe2+close 6.4 µs,
  // with F_SETPIPE_SZ 1 MiB 9.3 µs), which short connections would pay
  // for nothing: RunPump grows a pipe when a read fills it.
  flow->capacity = flow->created_capacity = ends.capacity;
  flow->target_capacity = pipe_size > 0 ? static_cast<size_t>(pipe_size) : flow->capacity;
  if (flow->target_capacity < flow->capacity) {
    // Smaller than the default was asked for (tests of backpressure): do it now.
    if (fcntl(flow->pipe_w, F_SETPIPE_SZ, pipe_size) > 0) flow->capacity = static_cast<size_t>(fcntl(flow->pipe_w, F_GETPIPE_SZ));
    flow->target_capacity = flow->capacity;
  }
  return std::nullopt;
}

std::optional<Failure> PumpEngine::Start(const PumpSpec& spec, uint64_t* id, std::shared_ptr<PumpCounters>* counters) {
  if (stopping_.load()) return Failure{"pump engine is stopped (environment shutting down)", "ESHUTDOWN"};
  struct stat st_a {}, st_b {};
  if (auto f = CheckTcpSocket(spec.fd_a, "fdA", &st_a)) return f;
  if (auto f = CheckTcpSocket(spec.fd_b, "fdB", &st_b)) return f;
  if (st_a.st_ino == st_b.st_ino && st_a.st_dev == st_b.st_dev) return Failure{"fdA and fdB are the same socket", "EINVAL"};

  auto pump = std::make_unique<Pump>();
  const int source[2] = {spec.fd_a, spec.fd_b};
  for (int side = 0; side < 2; side++) {
    pump->fd[side] = fcntl(source[side], F_DUPFD_CLOEXEC, 0);
    if (pump->fd[side] < 0) return ErrnoFailure(std::string("dup fd") + (side == 0 ? "A" : "B"), errno);
    // O_NONBLOCK lives on the open file description, shared with the
    // caller's fd (libuv set it already); make sure either way.
    int flags = fcntl(pump->fd[side], F_GETFL);
    if (flags < 0 || fcntl(pump->fd[side], F_SETFL, flags | O_NONBLOCK) != 0) return ErrnoFailure("fcntl O_NONBLOCK", errno);
    // A relay forwards what it has as soon as it has it: with Nagle on, a
    // small write behind unacknowledged data waits for the peer's delayed
    // ACK (up to 40 ms) — latency the endpoints did not ask for. Whatever
    // batching the sender wanted, it did itself (its own Nagle, MSG_MORE);
    // bulk data leaves in large splices anyway. Best effort.
    int one = 1;
    setsockopt(pump->fd[side], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
  // Pumps handed both sockets (long-lived JavaScript relays) splice from the start.
  for (Flow& flow : pump->flow) {
    if (auto f = TakePipe(&flow, spec.pipe_size)) return f;
  }
  pump->flow[0].initial = spec.initial_a_to_b;
  pump->flow[1].initial = spec.initial_b_to_a;
  pump->idle_timeout_ms = spec.idle_timeout_ms;
  pump->started_ms = NowMsPrecise();
  pump->last_activity_ms = NowMs();
  pump->counters = std::make_shared<PumpCounters>();
  pump->id = next_id_.fetch_add(1);
  *id = pump->id;
  *counters = pump->counters;
  started_.fetch_add(1);
  active_.fetch_add(1);
  if (Enqueue(Command{Command::Kind::kStart, std::move(pump), 0, false, {}, nullptr})) Wake();
  return std::nullopt;
}

void PumpEngine::Service(Pump* p, uint32_t side, uint32_t events) {
  if (p->done) return;
  if (events & (EPOLLRDHUP | EPOLLHUP)) p->rdhup[side] = true;
  if (p->phase != Pump::Phase::kPumping) {
    // Until the upstream is connected only its connect result matters; the
    // client's bytes wait in its socket (RunPump reads them once connected).
    // A peeking inbound connection looks at its client's first byte.
    if (side == 0 && p->phase == Pump::Phase::kPeeking) return TryPeek(p);
    if (side == 1 && p->phase == Pump::Phase::kConnecting) CompleteConnect(p, events);
    return;
  }
  if (events & EPOLLERR) {
    // A reset can arrive while nothing is being read or written on that
    // socket (its direction already finished): without this check the
    // other peer would wait for the idle timeout instead of seeing RST.
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(p->fd[side], SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err != 0) {
      std::string what = std::string(SideName(side)) + ": " + ErrnoText(err);
      if (IsResetErrno(err)) Finish(p, side == 0 ? "reset-by-a" : "reset-by-b", what, side == 1, side == 0);
      else Finish(p, "error", what, true, true);
      return;
    }
  }
  RunPump(p);
}

void PumpEngine::RunPump(Pump* p) {
  if (p->done) return;
  bool moved = false;
  bool over_budget = false;
  // A failed syscall on `side`: a reset there becomes a reset of the other
  // peer; anything else ends the pump with both peers reset (an abrupt end
  // must not look like a clean end of stream).
  auto fail = [&](int side, const char* op, int err) {
    std::string what = std::string(SideName(side)) + ": " + op + ": " + ErrnoText(err);
    if (IsResetErrno(err)) Finish(p, side == 0 ? "reset-by-a" : "reset-by-b", what, side == 1, side == 0);
    else Finish(p, "error", what, true, true);
  };
  for (int d = 0; d < 2 && !p->done; d++) {
    Flow& f = p->flow[d];
    const int in_side = d, out_side = 1 - d;
    const int in = p->fd[in_side], out = p->fd[out_side];
    std::atomic<uint64_t>& counter = d == 0 ? p->counters->a_to_b : p->counters->b_to_a;
    uint64_t budget = kRoundBudget;
    bool drained = false;
    char copy[kCopyBytes];
    for (;;) {
      bool progress = false;
      if (f.initial_sent < f.initial.size()) {
        ssize_t n = send(out, f.initial.data() + f.initial_sent, f.initial.size() - f.initial_sent, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
          f.initial_sent += static_cast<size_t>(n);
          counter.fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
          progress = true;
        } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
          return fail(out_side, "send", errno);
        }
      }
      const bool initial_done = f.initial_sent == f.initial.size();
      if (initial_done && f.in_pipe > 0) {
        ssize_t n = splice(f.pipe_r, nullptr, out, nullptr, f.in_pipe, kSpliceFlags);
        if (n > 0) {
          f.in_pipe -= static_cast<size_t>(n);
          counter.fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
          budget = budget > static_cast<uint64_t>(n) ? budget - static_cast<uint64_t>(n) : 0;
          progress = true;
        } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
          return fail(out_side, "splice write", errno);
        }
      }
      if (!f.eof && !drained && f.pipe_r < 0 && initial_done) {
        // Copy: read only when nothing is left unsent (the bound on what a slow reader makes us hold).
        const size_t want = p->pipe_size > 0 ? std::min(kCopyBytes, static_cast<size_t>(p->pipe_size)) : kCopyBytes;
        ssize_t n = recv(in, copy, want, MSG_DONTWAIT);
        if (n > 0) {
          ssize_t sent = send(out, copy, static_cast<size_t>(n), MSG_NOSIGNAL | MSG_DONTWAIT);
          if (sent < 0 && errno != EAGAIN && errno != EINTR) return fail(out_side, "send", errno);
          sent = std::max<ssize_t>(sent, 0);
          counter.fetch_add(static_cast<uint64_t>(sent), std::memory_order_relaxed);
          if (sent < n) {
            f.initial.assign(copy + sent, static_cast<size_t>(n - sent));
            f.initial_sent = 0;
          }
          progress = true;
          if (static_cast<size_t>(n) == want) {
            if (auto e = TakePipe(&f, p->pipe_size)) return Finish(p, "error", e->message, true, true);
          } else if (!p->rdhup[in_side]) {
            // A short read emptied the socket; anything arriving later is a
            // new edge. (A FIN already queued is not: rdhup says so, and the
            // next recv returns the end of stream.)
            drained = true;
          }
        } else if (n == 0) {
          f.eof = true;
          progress = true;
        } else if (errno != EAGAIN && errno != EINTR) {
          return fail(in_side, "recv", errno);
        }
      }
      // Read only while the pipe has room: that, and a reader that waits
      // for the writer, is the whole backpressure story.
      if (!f.eof && f.pipe_r >= 0 && f.in_pipe < f.capacity) {
        ssize_t n = splice(in, nullptr, f.pipe_w, nullptr, f.capacity - f.in_pipe, kSpliceFlags);
        if (n > 0) {
          f.in_pipe += static_cast<size_t>(n);
          progress = true;
          // One read filled the pipe: this flow carries bulk data. Grow the
          // pipe once (refusal by the kernel keeps the current size).
          if (f.in_pipe >= f.capacity && f.target_capacity > f.capacity) {
            int grown = fcntl(f.pipe_w, F_SETPIPE_SZ, static_cast<int>(f.target_capacity));
            f.capacity = grown > 0 ? static_cast<size_t>(grown) : f.capacity;
            f.target_capacity = f.capacity;
          }
        } else if (n == 0) {
          f.eof = true;
          progress = true;
        } else if (errno != EAGAIN && errno != EINTR) {
          return fail(in_side, "splice read", errno);
        }
      }
      // Half-close: the FIN is passed on only after every byte before it.
      if (f.eof && !f.shut && initial_done && f.in_pipe == 0) {
        // The last direction to end needs no shutdown: both sockets are
        // closed right after (Finish), both read to their end of stream, so
        // close() sends this FIN itself — one syscall less per connection.
        if (!p->flow[1 - d].shut && shutdown(out, SHUT_WR) != 0) return fail(out_side, "shutdown", errno);
        f.shut = true;
      }
      if (!progress) break;
      moved = true;
      if (budget == 0) {
        over_budget = true;
        break;
      }
    }
  }
  if (p->done) return;
  if (moved) p->last_activity_ms = NowMs();
  if (p->flow[0].shut && p->flow[1].shut) {
    Finish(p, "closed", "", false, false);
  } else if (over_budget) {
    unfinished_.push_back(p->id);
  }
}

void PumpEngine::Finish(Pump* p, const std::string& reason, const std::string& error, bool rst_a, bool rst_b) {
  if (p->done) return;
  p->done = true;
  done_ids_.push_back(p->id);
  const bool rst[2] = {rst_a, rst_b};
  for (int side = 0; side < 2; side++) {
    // Explicit removal: the caller's own fd may still share this file
    // description for a moment, and epoll registrations follow the
    // description, not the fd number. A native pump's sockets are its own
    // (accepted and dialled here, never duplicated): close() removes them.
    if (p->fd[side] >= 0 && !p->native) epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, p->fd[side], nullptr);
    if (rst[side]) ResetAndClose(&p->fd[side]);
    else CloseFd(&p->fd[side]);
  }
  // Both sockets are closed, so nothing writes into the pipes any more: an
  // empty one goes back to the pool for the next pump.
  const int64_t now_ms = NowMs();
  for (Flow& f : p->flow) {
    if (f.pipe_r < 0) continue;  // it copied, never took a pipe
    PipeEnds ends{f.pipe_r, f.pipe_w, f.created_capacity};
    pool_.Give(&ends, f.capacity, f.in_pipe == 0, now_ms);
    f.pipe_r = f.pipe_w = -1;
  }
  auto outcome = std::make_unique<PumpOutcome>();
  outcome->id = p->id;
  outcome->a_to_b = p->counters->a_to_b.load();
  outcome->b_to_a = p->counters->b_to_a.load();
  outcome->reason = reason;
  outcome->error = error;
  outcome->duration_ms = NowMsPrecise() - p->started_ms;
  active_.fetch_sub(1);
  finished_.fetch_add(1);
  if (p->native) return NativeEvent(p, std::move(outcome));
  on_done_(std::move(outcome));
}

}  // namespace weir
