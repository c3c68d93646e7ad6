// Aggregated telemetry of native connections (L4RouteTable::aggregate):
// instead of an L4Record per opened, progressing and closed connection —
// each one a string-laden object converted for JavaScript, a cross-thread
// wakeup and a pass through the outcome handler — the pump thread adds the
// connection's counts to its series (L4SeriesTable), and JavaScript folds
// the few series there are into the istio_tcp_* counters once a second and
// before every scrape (src/proxy/native-l4/series.ts), computing each
// series' labels once. Used when nothing needs each connection (no access log).
#include <string>

#include "pump.h"
#include "pump_state.h"

namespace weir {

namespace {

// The connection's series key up to (not including) its end: see l4_native.h.
std::string ConnectionKey(const NativeConn& n, bool with_upstream) {
  constexpr char kSep = '\x01';
  std::string k;
  k.reserve(128);
  k.append("c").append(1, kSep).append(n.direction).append(1, kSep).append(n.cluster_name).append(1, kSep);
  k.append(n.dst_ip).append(1, kSep).append(std::to_string(n.dst_port)).append(1, kSep).append(n.peer_ip).append(1, kSep);
  if (with_upstream) k.append(n.upstream_ip).append(1, kSep).append(std::to_string(n.upstream_port)).append(1, kSep);
  else k.append(2, kSep);
  k.append(n.detect_reason).append(1, kSep).append(n.cluster ? "0" : "1").append(1, kSep);
  return k;
}

}  // namespace

void L4SeriesTable::Add(const std::string& key, const L4Series& d) {
  std::lock_guard<std::mutex> lock(mutex_);
  L4Series& s = series_[key];
  s.opened += d.opened;
  s.closed += d.closed;
  s.failed += d.failed;
  s.connect_failures += d.connect_failures;
  s.retries += d.retries;
  s.a_to_b += d.a_to_b;
  s.b_to_a += d.b_to_a;
}

std::unordered_map<std::string, L4Series> L4SeriesTable::Take() {
  std::lock_guard<std::mutex> lock(mutex_);
  std::unordered_map<std::string, L4Series> out;
  out.swap(series_);
  return out;
}

void PumpEngine::AggregateEvent(Pump* p, const PumpOutcome& event) {
  NativeConn* n = p->native.get();
  L4Series d;
  switch (event.kind) {
    case PumpOutcome::Kind::kConnected:
      n->series = ConnectionKey(*n, true);
      d.opened = 1;
      return l4_series_.Add(n->series, d);
    case PumpOutcome::Kind::kConnectFailed:
      d.connect_failures = 1;
      d.retries = n->cluster && n->attempts < n->max_attempts ? 1 : 0;
      return l4_series_.Add(std::string("f\x01") + n->direction + "\x01" + event.code, d);
    case PumpOutcome::Kind::kDone:
      break;
  }
  if (!n->opened) {
    d.failed = 1;
    return l4_series_.Add(ConnectionKey(*n, false) + "failed", d);
  }
  d.closed = 1;
  d.a_to_b = event.a_to_b - n->counted_a;
  d.b_to_a = event.b_to_a - n->counted_b;
  l4_series_.Add(n->series + event.reason, d);
}

// An open connection's bytes so far go to its open series (as the per-record
// path's kProgress does), so a long-lived connection's bytes show before it ends.
void PumpEngine::AggregateProgress(Pump* p) {
  NativeConn* n = p->native.get();
  const uint64_t a = p->counters->a_to_b.load(std::memory_order_relaxed);
  const uint64_t b = p->counters->b_to_a.load(std::memory_order_relaxed);
  if (a == n->counted_a && b == n->counted_b) return;
  L4Series d;
  d.a_to_b = a - n->counted_a;
  d.b_to_a = b - n->counted_b;
  n->counted_a = a;
  n->counted_b = b;
  l4_series_.Add(n->series, d);
}

}  // namespace weir
