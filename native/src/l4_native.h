// The native L4 accept path: for connections the L4 route table marks as
// opaque TCP the pump thread accepts, reads SO_ORIGINAL_DST, routes, picks
// the endpoint from the cluster table (cluster_table.h), dials (next
// endpoint on connect failure) and pumps, all without JavaScript on the
// connection's critical path. JavaScript pushes the route table and gets
// what happened in batches (L4Record) for metrics and the access log.
// Whatever the table does not mark native is handed to JavaScript as the
// accepted fd (kHandoff), the connection intact.
#pragma once

#include <netinet/in.h>
#include <unistd.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "cluster_table.h"
#include "pump_dial.h"

namespace weir {

struct L4Route {
  enum class Kind {
    kJs,        // hand the connection to JavaScript
    kCluster,   // pick from `cluster` in the cluster table
    kOriginal,  // dial the original destination (passthrough)
    kInbound,   // inbound to the app on this port: loopback, from the inbound source address (l4_inbound.cc)
  };
  Kind kind = Kind::kJs;
  // kInbound: wait for the client's first byte (up to the table's
  // inbound_peek_timeout_ms) and hand a TLS record to JavaScript — the mesh
  // gate's job; plaintext (or silence: a server-first app) stays native.
  bool peek = false;
  std::string cluster;  // kCluster; kOriginal: the name reported (PassthroughCluster)
  std::string reason;   // protocol-selection reason JavaScript counts ("declared", "server_first_port")
};

// Pushed whole by JavaScript; read by the pump thread once per connection.
struct L4RouteTable {
  // "o|ip|port" (o = outbound listener, i = inbound) → route; ip as
  // inet_ntop writes it (IPv4 for v4-mapped clients).
  std::unordered_map<std::string, L4Route> exact;
  // "o|port" → route for destinations with no exact entry.
  std::unordered_map<std::string, L4Route> by_port;
  std::vector<int> own_ports;     // a connection to one of these has no redirect behind it: JavaScript refuses it
  uint64_t max_connections = 0;   // native connections at once; beyond: handed to JavaScript (it refuses)
  int64_t idle_timeout_ms = 0;
  int64_t passthrough_connect_timeout_ms = 10000;
  // kInbound routes: the app is dialled on loopback; IPv4 from this source
  // (127.0.0.6, as the JavaScript chain and Istio do), IPv6 from ::1.
  std::string inbound_source_v4;
  int64_t inbound_connect_timeout_ms = 10000;
  int64_t inbound_peek_timeout_ms = 5000;
  // Telemetry of native connections as aggregated series (L4SeriesTable)
  // instead of a record per connection event: JavaScript then folds a few
  // series a second instead of handling every connection. Off when
  // something needs each connection (the access log).
  bool aggregate = false;
};

// What native connections add up to, per series (l4_series.cc). Keys are
// fields joined by \x01 (not '|': Envoy's cluster names hold '|'):
//   c direction cluster dst-ip dst-port peer-ip upstream-ip upstream-port detect-reason passthrough(0/1) end
//     a connection series; end = "" while open (opened, bytes so far), the
//     pump's end reason once closed (closed, the rest of its bytes), or
//     "failed" for one that never opened (every attempt failed; no upstream);
//   f direction code: failed connect attempts (connect_failures, retries).
struct L4Series {
  uint64_t opened = 0, closed = 0, failed = 0, connect_failures = 0, retries = 0, a_to_b = 0, b_to_a = 0;
};

// Written by the pump thread, taken by JavaScript (once a second and before every scrape).
class L4SeriesTable {
 public:
  void Add(const std::string& key, const L4Series& delta);
  std::unordered_map<std::string, L4Series> Take();

 private:
  std::mutex mutex_;
  std::unordered_map<std::string, L4Series> series_;
};

// The process's route table (JavaScript is the only writer).
void SetL4Routes(std::shared_ptr<const L4RouteTable> table);
std::shared_ptr<const L4RouteTable> CurrentL4Routes();

// One thing that happened to a native connection (or a handoff), for JavaScript.
struct L4Record {
  enum class Kind {
    kHandoff,        // fd: JavaScript owns it now; dst/peer filled
    kOpened,         // upstream connected: dst, peer, cluster, upstream, local, start
    kConnectFailed,  // one attempt failed: upstream, code, message; retrying = another endpoint is being dialled
    kClosed,         // an opened connection ended: bytes, reason, error, duration
    kFailed,         // never opened: every attempt failed (or the client went first): all fields
    kProgress,       // an open connection's bytes so far (every 5 s while it moves bytes), like kClosed's
  };
  Kind kind = Kind::kHandoff;
  uint64_t id = 0;
  int fd = -1;
  const char* direction = "outbound";
  std::string dst_ip, peer_ip, cluster, upstream_ip, local_ip, code, message, reason, error, detect_reason;
  int dst_port = 0, peer_port = 0, upstream_port = 0, local_port = 0, attempts = 0;
  bool retrying = false;
  bool passthrough = false;
  uint64_t a_to_b = 0, b_to_a = 0;
  double start_wall_ms = 0;  // accept time, ms since the epoch
  double duration_ms = 0;
};

using L4Batch = std::vector<L4Record>;
// Called on the pump thread with every batch (at most one per loop turn); takes ownership.
using L4Sink = std::function<void(std::unique_ptr<L4Batch>)>;

// Per-connection state of a native pump (PumpEngine::Pump::native).
struct NativeConn {
  const char* direction = "outbound";
  std::shared_ptr<const Cluster> cluster;  // null: passthrough
  uint64_t tried = 0;
  int attempts = 0;
  int max_attempts = 1;
  int index = -1;
  EndpointLease lease;
  std::string cluster_name, detect_reason, dst_ip, peer_ip, upstream_ip, last_code, last_message;
  int dst_port = 0, peer_port = 0, upstream_port = 0;
  double start_wall_ms = 0;
  bool opened = false;
  uint64_t reported = 0;  // a_to_b + b_to_a at the last kProgress
  // Aggregated telemetry (the table's `aggregate` when accepted: a connection keeps the mode it began in).
  bool aggregate = false;
  std::string series;                        // its "c|…|" key without the end, once opened
  uint64_t counted_a = 0, counted_b = 0;     // bytes already added to a series
};

struct L4Listener {
  int id = 0;
  int fd = -1;
  const char* direction = "outbound";
  bool paused = false;  // EMFILE: off epoll until resume_ms
  int64_t resume_ms = 0;
  L4Listener() = default;
  L4Listener(const L4Listener&) = delete;
  L4Listener& operator=(const L4Listener&) = delete;
  ~L4Listener() {
    if (fd >= 0) close(fd);
  }
};

struct L4Stats {
  uint64_t accepted = 0;   // by native listeners
  uint64_t native = 0;     // of those, kept native
  uint64_t handed_off = 0; // of those, given to JavaScript
  uint64_t dropped = 0;    // gone before they could be handled (reset at once, no original dst)
  uint64_t retries = 0;
  uint64_t active = 0;     // native connections now
};

}  // namespace weir
