// A bounded pool of empty pipes for the splice pump. Every pump needs two
// pipes (one per direction); creating them (pipe2 + F_GETPIPE_SZ) and
// closing them afterwards is four syscalls per pipe, paid on the JS thread
// for every short connection. A pipe that comes back empty and at the size
// it was created with is as good as a new one, so it is kept for the next
// pump instead.
//
// Bounded two ways, so idle pipes never pile up: at most `max_idle` pipes
// wait in the pool (more are closed at once), and a pipe that waited longer
// than `idle_ms` is closed by Trim (the pump thread calls it), so after a
// burst of connections the process's fd count goes back to what it was.
// Thread-safe: Take runs on the JS thread (PumpEngine::Start), Give and
// Trim on the pump thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>

#include "netns_thread.h"

namespace weir {

struct PipeEnds {
  int r = -1;
  int w = -1;
  size_t capacity = 0;  // F_GETPIPE_SZ when created (what a pooled pipe is reset to)
};

struct PipePoolStats {
  uint64_t idle = 0;     // pipes waiting in the pool now
  uint64_t reused = 0;   // Take served from the pool
  uint64_t created = 0;  // Take had to create a pipe
  uint64_t closed = 0;   // pipes closed instead of pooled (pool full, not empty, trimmed)
};

class PipePool {
 public:
  static constexpr size_t kDefaultMaxIdle = 128;
  static constexpr int64_t kDefaultIdleMs = 5000;

  PipePool() = default;
  ~PipePool();
  PipePool(const PipePool&) = delete;
  PipePool& operator=(const PipePool&) = delete;

  // A pipe (non-blocking, close-on-exec, empty), pooled or new.
  std::optional<Failure> Take(PipeEnds* out);
  // Hands a pipe back. `empty` = the caller knows no byte is left in it. A
  // pipe that was resized is shrunk back to its creation size first (one
  // fcntl instead of a new pipe); if that fails, or the pipe is not empty,
  // or the pool is full, it is closed. Either way the caller's ends are -1.
  void Give(PipeEnds* pipe, size_t current_capacity, bool empty, int64_t now_ms);
  // Closes pipes idle since before now_ms - idle_ms. Returns the time the
  // next pooled pipe comes due (ms, CLOCK_MONOTONIC), or -1 if none waits.
  int64_t Trim(int64_t now_ms);
  // max_idle 0 disables pooling (every pipe is closed on Give).
  void Configure(size_t max_idle, int64_t idle_ms);
  size_t MaxIdle() const;
  int64_t IdleMs() const;
  PipePoolStats Stats() const;

 private:
  struct Idle {
    PipeEnds ends;
    int64_t since_ms;
  };
  static void Close(PipeEnds* p);
  int64_t NextDeadlineLocked() const;

  mutable std::mutex mu_;
  std::deque<Idle> idle_;  // front = longest idle; Take and Give use the back (warm pipes first)
  size_t max_idle_ = kDefaultMaxIdle;
  int64_t idle_ms_ = kDefaultIdleMs;
  uint64_t reused_ = 0, created_ = 0, closed_ = 0;
};

}  // namespace weir
