// Istio's default outbound retries on the native HTTP/2 path, as the JS
// chain applies them (src/proxy/http/retry-policy.ts): the route's budget
// (2), another endpoint preferred (h1::PickEndpoint skips the exchange's
// tried endpoints while others remain), and Envoy's backoff between tries —
// full jitter over 25 ms × 2^(n-1), at most 250 ms. The request is replayed
// from the stream's replay buffer (its DATA kept while they fit in 64 KiB,
// h2_down.cc); a bigger request is not retried. What is retried (h2_up.cc):
// connect failure, refused stream, a 503 head and a trailers-only gRPC
// status 14 (unavailable) or 1 (cancelled), all before anything went to
// the client.
#include <algorithm>
#include <cmath>
#include <random>

#include "h2_codec.h"

namespace weir {
namespace h2 {
namespace {

constexpr double kBackoffBaseMs = 25;  // Envoy's default base_interval, as retry-policy.ts's backoffBaseMs

double BackoffMs(int n) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  double ceiling = std::min(kBackoffBaseMs * std::pow(2.0, std::max(0, n - 1)), kBackoffBaseMs * 10);
  return std::uniform_real_distribution<double>(0, ceiling)(rng);
}

}  // namespace

bool Codec::RetryLater(Stream* st) {
  h1::Exchange& ex = st->ex;
  if (ex.retries_left <= 0 || !st->replayable || st->resp_submitted) return false;
  ex.retries_left--;
  CountRetry();
  Detach(st, true);
  // The buffer still holds every request byte: the next upstream stream reads it from the start.
  st->req.off = 0;
  st->req.deferred = false;
  st->resp_headers.clear();
  st->up_status = 0;
  st->retry_at = NowMsPrecise() + BackoffMs(ex.attempts);
  if (next_retry_ == 0 || st->retry_at < next_retry_) next_retry_ = st->retry_at;
  return true;
}

void Codec::DropReplay(Stream* st) {
  if (!st->replayable) return;
  Pipe& p = st->req;
  st->replayable = false;
  st->req_erased += p.off;
  p.buf.erase(0, p.off);
  p.off = 0;
}

int Codec::WaitMs(int cap) const {
  if (next_retry_ == 0) return cap;
  double left = next_retry_ - NowMsPrecise();
  return left <= 0 ? 0 : std::min(cap, static_cast<int>(std::ceil(left)));
}

void Codec::RunDue() {
  if (next_retry_ == 0 || NowMsPrecise() < next_retry_) return;
  // A scan, not a list of stream pointers: a stream that closed while it waited (client reset, deadline, its
  // connection gone) is simply no longer found.
  double now = NowMsPrecise();
  std::vector<Stream*> due;
  next_retry_ = 0;
  for (auto& [p, s] : sessions_) {
    if (s->dead || !s->server) continue;
    for (auto& [id, st] : s->streams) {
      if (st->retry_at == 0) continue;
      if (st->retry_at <= now) due.push_back(st.get());
      else if (next_retry_ == 0 || st->retry_at < next_retry_) next_retry_ = st->retry_at;
    }
  }
  for (Stream* st : due) {
    st->retry_at = 0;
    Attempt(st);
  }
  FlushDirty();
}

}  // namespace h2
}  // namespace weir
