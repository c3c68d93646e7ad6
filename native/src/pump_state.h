// The pump thread's per-connection state, shared by pump.cc (the splice
// loop) and pump_connect.cc (pumps that dial their upstream themselves).
// Internal to the engine: nothing outside PumpEngine touches these.
#pragma once

#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <utility>

#include "pump.h"
#include "mono_clock.h"
#include "pump_dial.h"

namespace weir {
namespace pump_internal {

// epoll data of native listeners (l4_accept.cc): kListenTokenBase + listener
// id, far above any pump socket's (id << 1) | side.
constexpr uint64_t kListenTokenBase = ~uint64_t{0} - (uint64_t{1} << 20);

// What a pump registers its sockets for. EPOLLRDHUP tells RunPump that a
// peer's FIN is already queued: after a short recv() it need not read again
// to learn that the socket is drained, unless this says an end of stream waits.
constexpr uint32_t kPumpSocketEvents = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;

inline void CloseFd(int* fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

inline const char* SideName(int side) { return side == 0 ? "a" : "b"; }

// "Connection reset by peer (ECONNRESET)": the text and the errno's name.
inline std::string ErrnoText(int err) {
  const char* name = strerrorname_np(err);
  return std::string(std::strerror(err)) + " (" + (name != nullptr ? name : "EUNKNOWN") + ")";
}

inline bool EarlierDeadline(const std::pair<int64_t, uint64_t>& x, const std::pair<int64_t, uint64_t>& y) {
  return x.first > y.first;  // std heap is a max-heap: invert for a min-heap
}

}  // namespace pump_internal

// One direction of a pump. A flow starts with no pipe (unless the pump was
// Started with both sockets): it copies with recv/send through a stack
// buffer, which for the few small writes of most connections costs fewer
// and cheaper syscalls than splicing through a pipe pair. The first read
// that fills the buffer marks the flow as bulk: it takes a pipe and splices
// from then on, and bytes read from `in` wait in the pipe until `out` takes
// them. Either way one bound holds what a slow reader can make the pump
// hold: the pipe's capacity, or one buffer's worth of unsent bytes.
struct Flow {
  int pipe_r = -1;
  int pipe_w = -1;
  size_t capacity = 0;
  size_t created_capacity = 0;  // what the pool resets the pipe to when it comes back
  size_t target_capacity = 0;  // grow to this once a read fills the pipe
  size_t in_pipe = 0;
  // Bytes to send before anything else: what the caller had already read
  // (PumpSpec::initial_*), or what a copy's send() did not take.
  std::string initial;
  size_t initial_sent = 0;
  bool eof = false;   // `in` reported end of stream
  bool shut = false;  // ... and it was passed on as shutdown(out, SHUT_WR)
};

struct PumpEngine::Pump {
  // kPumping: both sockets connected, bytes move. A pump made by
  // StartConnect begins in kConnecting (fd[1] is the socket being
  // connected); a failed connect parks it in kAwaitingDial (fd[1] = -1, the
  // client's socket still held) until JavaScript names the next endpoint
  // (Redial) or gives up (Abort). A native inbound connection may begin in
  // kPeeking: waiting for the client's first byte before it is dialled
  // (l4_inbound.cc); connect_deadline_ms is then the peek deadline.
  enum class Phase { kPumping, kConnecting, kAwaitingDial, kPeeking };

  uint64_t id = 0;
  int fd[2] = {-1, -1};  // 0 = A, 1 = B
  Flow flow[2];          // flow[0]: A -> B, flow[1]: B -> A
  int64_t idle_timeout_ms = 0;
  int64_t last_activity_ms = 0;
  double started_ms = 0;
  std::shared_ptr<PumpCounters> counters;
  bool done = false;
  Phase phase = Phase::kPumping;
  DialTarget dial;                  // the endpoint being (or last) dialled
  int64_t connect_deadline_ms = 0;  // kConnecting: ETIMEDOUT at this time
  int pipe_size = 0;                // PumpSpec::pipe_size, for pipes taken once a flow turns bulk
  bool rdhup[2] = {false, false};   // epoll said this side's peer half-closed (its FIN is queued)
  std::unique_ptr<NativeConn> native;  // set: accepted natively (l4_accept.cc); outcomes become L4Records

  ~Pump() {
    for (int& f : fd) pump_internal::CloseFd(&f);
    for (Flow& fl : flow) {
      pump_internal::CloseFd(&fl.pipe_r);
      pump_internal::CloseFd(&fl.pipe_w);
    }
  }
};

}  // namespace weir
