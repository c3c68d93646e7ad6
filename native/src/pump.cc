// The pump engine's thread: its epoll loop, the command queue other threads
// talk to it through, timers (idle pumps, pooled pipes) and shutdown. What
// happens to one pump's bytes is in pump_splice.cc; dialling in
// pump_connect.cc; the native accept path in l4_accept.cc.
#include "pump.h"

#include "pump_state.h"

#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace weir {

using namespace pump_internal;

namespace {

// epoll data of the wakeup eventfd; pump sockets use (id << 1) | side.
constexpr uint64_t kWakeToken = ~uint64_t{0};

int64_t NowNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
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
    // What native connections did goes to JavaScript in one batch: this turn's end for a handoff, else within a few ms.
    FlushRecords(now_ms);
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
      ev.events = kPumpSocketEvents;
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
    if (p->phase == Pump::Phase::kPeeking) {
      if (p->connect_deadline_ms <= now_ms) PeekTimedOut(p);
      continue;  // a peek deadline is queued once and never moves
    }
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
  if (l4_batch_ && !l4_batch_->empty() && (due < 0 || l4_batch_due_ms_ < due)) due = l4_batch_due_ms_;
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
