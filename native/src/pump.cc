#include "pump.h"

#include "pump_state.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>

namespace weir {

using namespace pump_internal;

namespace {

// epoll data of the wakeup eventfd; pump sockets use (id << 1) | side.
constexpr uint64_t kWakeToken = ~uint64_t{0};
// Bytes one pump may move per direction before the thread looks at the
// others: a bulk stream must not starve 999 interactive ones.
constexpr uint64_t kRoundBudget = 4u << 20;
constexpr unsigned kSpliceFlags = SPLICE_F_MOVE | SPLICE_F_NONBLOCK;

int64_t NowNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

const char* SideName(int side) { return side == 0 ? "a" : "b"; }

std::string ErrnoText(int err) {
  const char* name = strerrorname_np(err);
  return std::string(std::strerror(err)) + " (" + (name != nullptr ? name : "EUNKNOWN") + ")";
}

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

std::optional<Failure> PumpEngine::Create(OnDone on_done, std::unique_ptr<PumpEngine>* out) {
  std::unique_ptr<PumpEngine> engine(new PumpEngine());
  engine->on_done_ = std::move(on_done);
  engine->epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  if (engine->epoll_fd_ < 0) return ErrnoFailure("pump: epoll_create1", errno);
  engine->wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (engine->wake_fd_ < 0) {
    int err = errno;
    CloseFd(&engine->epoll_fd_);
    return ErrnoFailure("pump: eventfd", err);
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kWakeToken;
  if (epoll_ctl(engine->epoll_fd_, EPOLL_CTL_ADD, engine->wake_fd_, &ev) != 0) {
    int err = errno;
    CloseFd(&engine->wake_fd_);
    CloseFd(&engine->epoll_fd_);
    return ErrnoFailure("pump: epoll_ctl", err);
  }
  // Signals stay with the process's own threads: blocking them all here
  // keeps JavaScript signal handlers off this thread, and a SIGPIPE from a
  // splice into a reset socket (Node ignores it anyway) cannot kill us.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  PumpEngine* raw = engine.get();
  try {
    engine->thread_ = std::thread([raw] {
      // Named, so per-thread CPU (/proc/PID/task/*/comm, top -H) tells it from Node's own threads.
      pthread_setname_np(pthread_self(), "weir-pump");
      raw->Run();
    });
  } catch (const std::system_error& e) {
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    CloseFd(&engine->wake_fd_);
    CloseFd(&engine->epoll_fd_);
    return Failure{std::string("pump: cannot start thread: ") + e.what(), "EAGAIN"};
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  *out = std::move(engine);
  return std::nullopt;
}

PumpEngine::~PumpEngine() { Stop(); }

std::optional<Failure> PumpEngine::TakePipes(Pump* pump, int pipe_size) {
  for (Flow& flow : pump->flow) {
    // From the pool when one is waiting (no syscall), else a new pipe.
    PipeEnds ends;
    if (auto f = pool_.Take(&ends)) return f;
    flow.pipe_r = ends.r;
    flow.pipe_w = ends.w;
    // A bigger pipe means fewer syscalls and wakeups per MiB, but the resize
    // costs ~3 µs per pipe (measured here as uid 1337: pipe2+close 6.4 µs,
    // with F_SETPIPE_SZ 1 MiB 9.3 µs), which short connections would pay
    // for nothing: RunPump grows a pipe when a read fills it.
    flow.capacity = flow.created_capacity = ends.capacity;
    flow.target_capacity = pipe_size > 0 ? static_cast<size_t>(pipe_size) : flow.capacity;
    if (flow.target_capacity < flow.capacity) {
      // Smaller than the default was asked for (tests of backpressure): do it now.
      if (fcntl(flow.pipe_w, F_SETPIPE_SZ, pipe_size) > 0) flow.capacity = static_cast<size_t>(fcntl(flow.pipe_w, F_GETPIPE_SZ));
      flow.target_capacity = flow.capacity;
    }
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
  if (auto f = TakePipes(pump.get(), spec.pipe_size)) return f;
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

void PumpEngine::Abort(uint64_t id, bool reset) {
  if (Enqueue(Command{Command::Kind::kAbort, nullptr, id, reset, {}, nullptr})) Wake();
}

bool PumpEngine::Enqueue(Command command) {
  std::lock_guard<std::mutex> lock(commands_mutex_);
  // Only the first command of a batch needs a wakeup: the thread takes the
  // whole queue at once, and it cannot have taken this batch yet (it swaps
  // the queue out, leaving it empty, after consuming the wakeup).
  const bool first = commands_.empty();
  commands_.push_back(std::move(command));
  return first;
}

void PumpEngine::Wake() {
  uint64_t one = 1;
  // EAGAIN only if the counter is saturated, i.e. a wakeup is pending anyway.
  ssize_t ignored = write(wake_fd_, &one, sizeof(one));
  (void)ignored;
}

PumpEngineStats PumpEngine::Stats() const {
  return PumpEngineStats{active_.load(), started_.load(), finished_.load(), polled_batches_.load(), blocked_batches_.load(), spin_ns_.load(), pool_.Stats()};
}

void PumpEngine::SetBusyPoll(int64_t micros) {
  busy_poll_ns_.store(std::max<int64_t>(micros, 0) * 1000, std::memory_order_relaxed);
}

void PumpEngine::Stop() {
  std::lock_guard<std::mutex> lock(stop_mutex_);
  if (stopped_) return;
  stopped_ = true;
  stopping_.store(true);
  if (thread_.joinable()) {
    Wake();
    thread_.join();
  }
  // The thread is gone: what it still owned is closed here, without
  // reporting (there is nobody left to report to).
  uint64_t dropped = pumps_.size();
  pumps_.clear();
  {
    std::lock_guard<std::mutex> commands_lock(commands_mutex_);
    for (Command& c : commands_) {
      if (c.pump) dropped++;
    }
    commands_.clear();
  }
  active_.fetch_sub(std::min(dropped, active_.load()));
  if (l4_batch_) {
    for (L4Record& r : *l4_batch_) CloseFd(&r.fd);  // handoffs nobody will take
    l4_batch_.reset();
  }
  pool_.Configure(0, pool_.IdleMs());  // closes every pooled pipe
  CloseFd(&wake_fd_);
  CloseFd(&epoll_fd_);
}

void PumpEngine::Run() {
  std::vector<epoll_event> events(256);
  std::vector<std::unique_ptr<Pump>> graveyard;
  // End of the current busy-poll window (CLOCK_MONOTONIC ns); 0 = none.
  int64_t poll_until = 0;
  int64_t spin_started = 0;
  while (!stopping_.load()) {
    const int timeout = NextTimeoutMs(NowMs());
    int n;
    // Spin only inside a window opened by recent activity, and only when
    // we would otherwise sleep (timeout != 0): an idle engine blocks.
    const int64_t now_ns = poll_until != 0 ? NowNs() : 0;
    if (poll_until != 0 && timeout != 0 && now_ns < poll_until) {
      if (spin_started == 0) spin_started = now_ns;
      n = epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()), 0);
      if (n == 0) {
        // Let a runnable thread on this CPU (the app, the other proxy
        // thread) go first: spinning must not delay the very peers whose
        // reply we are waiting for.
        sched_yield();
        continue;
      }
      if (n > 0) polled_batches_.fetch_add(1, std::memory_order_relaxed);
    } else {
      if (spin_started != 0) {
        spin_ns_.fetch_add(static_cast<uint64_t>((now_ns != 0 ? now_ns : NowNs()) - spin_started), std::memory_order_relaxed);
        spin_started = 0;
      }
      // timeout 0 (a pump owed another round) does not sleep: the window stays.
      if (timeout != 0) poll_until = 0;
      n = epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()), timeout);
      if (n > 0) blocked_batches_.fetch_add(1, std::memory_order_relaxed);
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      break;  // EBADF/EINVAL: the engine is being torn down
    }
    if (n > 0) {
      const int64_t window = busy_poll_ns_.load(std::memory_order_relaxed);
      if (window > 0) {
        const int64_t t = NowNs();
        if (spin_started != 0) {
          spin_ns_.fetch_add(static_cast<uint64_t>(t - spin_started), std::memory_order_relaxed);
          spin_started = 0;
        }
        poll_until = t + window;
      } else {
        poll_until = 0;
      }
    }
    // Pumps that used up their budget last round have no new edge coming:
    // give them their next round now.
    std::vector<uint64_t> again;
    again.swap(unfinished_);
    for (uint64_t id : again) {
      auto it = pumps_.find(id);
      if (it != pumps_.end()) RunPump(it->second.get());
    }
    for (int i = 0; i < n; i++) {
      uint64_t token = events[i].data.u64;
      if (token == kWakeToken) {
        uint64_t count;
        ssize_t ignored = read(wake_fd_, &count, sizeof(count));
        (void)ignored;
        TakeCommands();
        continue;
      }
      if (token >= kListenTokenBase) {
        const int lid = static_cast<int>(token - kListenTokenBase);
        for (auto& l : listeners_) {
          if (l->id == lid) AcceptOn(l.get(), NowMs());
        }
        continue;
      }
      auto it = pumps_.find(token >> 1);
      if (it != pumps_.end()) Service(it->second.get(), static_cast<uint32_t>(token & 1), events[i].events);
    }
    const int64_t now_ms = NowMs();
    ResumeListeners(now_ms);
    ReportProgress(now_ms);
    ExpireIdle(now_ms);
    pool_deadline_ms_ = pool_.Trim(now_ms);
    // Finished pumps are freed only here, after the whole batch: a later
    // event of the same batch may still name them (it then finds nothing).
    for (uint64_t id : done_ids_) {
      auto it = pumps_.find(id);
      if (it == pumps_.end()) continue;
      graveyard.push_back(std::move(it->second));
      pumps_.erase(it);
    }
    done_ids_.clear();
    graveyard.clear();
    // What native connections did this turn goes to JavaScript in one batch.
    FlushRecords();
  }
  CloseListeners();
}

void PumpEngine::TakeCommands() {
  std::vector<Command> commands;
  {
    std::lock_guard<std::mutex> lock(commands_mutex_);
    commands.swap(commands_);
  }
  for (Command& c : commands) {
    if (c.kind == Command::Kind::kAbort) {
      auto it = pumps_.find(c.id);
      if (it != pumps_.end() && !it->second->done) Finish(it->second.get(), "aborted", "", c.reset, c.reset);
      continue;
    }
    if (c.kind == Command::Kind::kDial) {
      auto it = pumps_.find(c.id);
      if (it != pumps_.end()) Redialled(it->second.get(), c.dial);
      continue;
    }
    if (c.kind == Command::Kind::kListen) {
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u64 = kListenTokenBase + static_cast<uint64_t>(c.listener->id);
      if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, c.listener->fd, &ev) == 0) listeners_.push_back(std::move(c.listener));
      else CloseFd(&c.listener->fd);
      continue;
    }
    if (c.kind == Command::Kind::kUnlisten) {
      for (auto it = listeners_.begin(); it != listeners_.end(); ++it) {
        if ((*it)->id != static_cast<int>(c.id)) continue;
        epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, (*it)->fd, nullptr);
        CloseFd(&(*it)->fd);
        listeners_.erase(it);
        break;
      }
      continue;
    }
    if (c.kind == Command::Kind::kAbortNative) {
      for (auto& [id, pump] : pumps_) {
        if (pump->native && !pump->done) Finish(pump.get(), "aborted", "", c.reset, c.reset);
      }
      continue;
    }
    Pump* p = c.pump.get();
    uint64_t id = p->id;
    pumps_.emplace(id, std::move(c.pump));
    if (p->phase == Pump::Phase::kConnecting && !AdoptClient(p)) continue;
    for (int side = 0; side < 2; side++) {
      if (p->fd[side] < 0) continue;  // B of a pump that dials it: registered once connected
      // Edge-triggered: RunPump always goes on until the kernel says
      // EAGAIN (or the pipe is full and the reader blocked), so every
      // later change of state brings a fresh edge.
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLOUT | EPOLLET;
      ev.data.u64 = (id << 1) | static_cast<uint64_t>(side);
      if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, p->fd[side], &ev) != 0) {
        Finish(p, "error", std::string("epoll_ctl ") + SideName(side) + ": " + ErrnoText(errno), true, true);
        break;
      }
    }
    if (p->done) continue;
    if (p->phase == Pump::Phase::kConnecting) {
      BeginDial(p);
      continue;
    }
    if (p->idle_timeout_ms > 0) {
      idle_heap_.emplace_back(p->last_activity_ms + p->idle_timeout_ms, id);
      std::push_heap(idle_heap_.begin(), idle_heap_.end(), EarlierDeadline);
    }
    RunPump(p);
  }
}

void PumpEngine::Service(Pump* p, uint32_t side, uint32_t events) {
  if (p->done) return;
  if (p->phase != Pump::Phase::kPumping) {
    // Until the upstream is connected only its connect result matters; the
    // client's bytes wait in its socket (RunPump reads them once connected).
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
      // Read only while the pipe has room: that, and a reader that waits
      // for the writer, is the whole backpressure story.
      if (!f.eof && f.in_pipe < f.capacity) {
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
        if (shutdown(out, SHUT_WR) != 0) return fail(out_side, "shutdown", errno);
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
    // description, not the fd number.
    if (p->fd[side] >= 0) epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, p->fd[side], nullptr);
    if (rst[side]) ResetAndClose(&p->fd[side]);
    else CloseFd(&p->fd[side]);
  }
  // Both sockets are closed, so nothing writes into the pipes any more: an
  // empty one goes back to the pool for the next pump.
  const int64_t now_ms = NowMs();
  for (Flow& f : p->flow) {
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

void PumpEngine::ExpireIdle(int64_t now_ms) {
  // Lazy deadlines: activity does not touch the heap; an entry that comes
  // due is checked against the pump's real last activity and re-queued.
  while (!idle_heap_.empty() && idle_heap_.front().first <= now_ms) {
    std::pop_heap(idle_heap_.begin(), idle_heap_.end(), EarlierDeadline);
    uint64_t id = idle_heap_.back().second;
    idle_heap_.pop_back();
    auto it = pumps_.find(id);
    if (it == pumps_.end() || it->second->done) continue;
    Pump* p = it->second.get();
    // One heap for both timers: a connecting pump's connect deadline, a
    // pumping one's idle deadline. An entry left over from another phase
    // is re-checked against the current one here.
    if (p->phase == Pump::Phase::kAwaitingDial) continue;  // JavaScript decides; Redial queues a new entry
    const bool connecting = p->phase == Pump::Phase::kConnecting;
    if (!connecting && p->idle_timeout_ms <= 0) continue;
    int64_t deadline = connecting ? p->connect_deadline_ms : p->last_activity_ms + p->idle_timeout_ms;
    if (deadline <= now_ms) {
      if (connecting) {
        ConnectFailed(p, "ETIMEDOUT", "connect to " + p->dial.text + " timed out after " + std::to_string(p->dial.timeout_ms) + " ms");
      } else {
        Finish(p, "idle", "", false, false);
      }
    } else {
      idle_heap_.emplace_back(deadline, id);
      std::push_heap(idle_heap_.begin(), idle_heap_.end(), EarlierDeadline);
    }
  }
}

int PumpEngine::NextTimeoutMs(int64_t now_ms) const {
  if (!unfinished_.empty()) return 0;
  // The earlier of the next idle pump's deadline and the next pooled pipe's.
  int64_t due = pool_deadline_ms_;
  for (const auto& l : listeners_) {
    if (l->paused && (due < 0 || l->resume_ms < due)) due = l->resume_ms;
  }
  if (l4_active_.load(std::memory_order_relaxed) > 0 && (due < 0 || next_progress_ms_ < due)) due = next_progress_ms_;
  if (!idle_heap_.empty() && (due < 0 || idle_heap_.front().first < due)) due = idle_heap_.front().first;
  if (due < 0) return -1;
  return static_cast<int>(std::clamp<int64_t>(due - now_ms, 0, 60000));
}

void PumpEngine::ConfigurePipePool(size_t max_idle, int64_t idle_ms) {
  pool_.Configure(max_idle, idle_ms);
  // The thread recomputes its timeout (and trims) on its next iteration.
  Wake();
}

}  // namespace weir
