// The monotonic clock every native thread times with (timeouts, idle timers,
// durations reported to JavaScript): one definition, so the pump, the TLS
// relay, the HTTP/1.1 engine and the DNS fast path agree on what "now" is.
#pragma once

#include <time.h>

#include <cstdint>

namespace weir {

inline int64_t NowMs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

inline double NowMsPrecise() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

}  // namespace weir
