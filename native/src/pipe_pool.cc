#include "pipe_pool.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

namespace weir {

PipePool::~PipePool() {
  std::lock_guard<std::mutex> lock(mu_);
  for (Idle& i : idle_) Close(&i.ends);
  idle_.clear();
}

void PipePool::Close(PipeEnds* p) {
  if (p->r >= 0) close(p->r);
  if (p->w >= 0) close(p->w);
  p->r = p->w = -1;
}

std::optional<Failure> PipePool::Take(PipeEnds* out) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!idle_.empty()) {
      *out = idle_.back().ends;
      idle_.pop_back();
      reused_++;
      return std::nullopt;
    }
    created_++;
  }
  int p[2];
  if (pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0) return ErrnoFailure("pipe2", errno);
  int capacity = fcntl(p[1], F_GETPIPE_SZ);
  if (capacity <= 0) {
    int err = errno;
    close(p[0]);
    close(p[1]);
    return ErrnoFailure("F_GETPIPE_SZ", err);
  }
  *out = PipeEnds{p[0], p[1], static_cast<size_t>(capacity)};
  return std::nullopt;
}

void PipePool::Give(PipeEnds* pipe, size_t current_capacity, bool empty, int64_t now_ms) {
  if (pipe->r < 0 || pipe->w < 0) {
    Close(pipe);
    return;
  }
  bool keep = empty;
  // Shrinking an empty pipe cannot fail for lack of room; it can only be
  // refused (then the pipe is closed, not pooled at the wrong size).
  if (keep && current_capacity != pipe->capacity) {
    keep = fcntl(pipe->w, F_SETPIPE_SZ, static_cast<int>(pipe->capacity)) == static_cast<int>(pipe->capacity);
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (keep && idle_.size() < max_idle_) {
      idle_.push_back(Idle{*pipe, now_ms});
      pipe->r = pipe->w = -1;
      return;
    }
    closed_++;
  }
  Close(pipe);
}

int64_t PipePool::Trim(int64_t now_ms) {
  std::deque<Idle> expired;
  int64_t next;
  {
    std::lock_guard<std::mutex> lock(mu_);
    while (!idle_.empty() && idle_.front().since_ms + idle_ms_ <= now_ms) {
      expired.push_back(idle_.front());
      idle_.pop_front();
      closed_++;
    }
    next = NextDeadlineLocked();
  }
  // Closed outside the lock: Take on the JS thread never waits for close(2).
  for (Idle& i : expired) Close(&i.ends);
  return next;
}

int64_t PipePool::NextDeadlineLocked() const {
  return idle_.empty() ? -1 : idle_.front().since_ms + idle_ms_;
}

void PipePool::Configure(size_t max_idle, int64_t idle_ms) {
  std::deque<Idle> excess;
  {
    std::lock_guard<std::mutex> lock(mu_);
    max_idle_ = max_idle;
    idle_ms_ = idle_ms;
    while (idle_.size() > max_idle_) {
      excess.push_back(idle_.front());
      idle_.pop_front();
      closed_++;
    }
  }
  for (Idle& i : excess) Close(&i.ends);
}

size_t PipePool::MaxIdle() const {
  std::lock_guard<std::mutex> lock(mu_);
  return max_idle_;
}

int64_t PipePool::IdleMs() const {
  std::lock_guard<std::mutex> lock(mu_);
  return idle_ms_;
}

PipePoolStats PipePool::Stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return PipePoolStats{idle_.size(), reused_, created_, closed_};
}

}  // namespace weir
