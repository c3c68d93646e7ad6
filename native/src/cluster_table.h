// The native cluster table: cluster name → endpoints (address, weight,
// health and outlier-ejection flags, all decided in JavaScript), with the
// per-endpoint in-flight counters kept here so a native connection path
// (the L4 accept path now, the native HTTP path next) can pick an endpoint
// without asking JavaScript. Pure C++, no Node-API.
//
// Threading: JavaScript (or any one writer) calls Replace / Upsert / Remove;
// any number of threads call Snapshot() and then Pick / Acquire on what it
// returned. A snapshot is immutable and stays valid (and pickable) as long as
// the caller holds the shared_ptr, even after a Replace: a connection in
// flight keeps the endpoint list it was routed with. In-flight counters are
// shared between snapshots by (cluster name, endpoint address), so a table
// update does not reset least-request state.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "netns_thread.h"

namespace weir {

enum class LbPolicy {
  kLeastRequest,  // Istio's default: power of two choices on in-flight count (weighted when weights differ)
  kRoundRobin,    // weighted round robin (smooth, nginx-style)
  kRandom,        // weighted random
};

// "LEAST_REQUEST" | "ROUND_ROBIN" | "RANDOM" (also "LEAST_CONN", Istio's old name).
std::optional<LbPolicy> ParseLbPolicy(const std::string& name);

// In-flight connections/requests of one endpoint; outlives snapshots.
struct EndpointLoad {
  std::atomic<uint32_t> active{0};
  std::atomic<uint64_t> picked{0};  // total picks (for tests and the admin view)
};

struct ClusterEndpoint {
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  std::string ip;  // canonical text, as JavaScript gave it
  int port = 0;
  uint32_t weight = 1;   // 0 is refused by Parse*; 1..1<<24
  bool healthy = true;   // false: only used when no endpoint is healthy (panic)
  bool ejected = false;  // outlier detection: never picked while set (unless all are)
  std::shared_ptr<EndpointLoad> load;  // filled by the table
};

struct ClusterSpec {
  std::string name;
  LbPolicy policy = LbPolicy::kLeastRequest;
  int64_t connect_timeout_ms = 10000;
  // Connect attempts in total (first + retries on connect failure, each to
  // an endpoint not tried yet), Istio's TCP default being "retry on connect
  // failure to another host".
  int max_attempts = 3;
  std::vector<ClusterEndpoint> endpoints;
};

// Parses "ip" (numeric v4/v6) and port into ep->addr; a clear error names the field.
std::optional<Failure> SetEndpointAddress(const std::string& ip, int port, ClusterEndpoint* ep);

class Cluster {
 public:
  explicit Cluster(ClusterSpec spec);
  const std::string& name() const { return spec_.name; }
  const ClusterSpec& spec() const { return spec_; }
  size_t size() const { return spec_.endpoints.size(); }
  const ClusterEndpoint& endpoint(size_t i) const { return spec_.endpoints[i]; }

  // The next endpoint by the cluster's policy among those whose bit in
  // `tried` is clear (bit i = endpoint i; clusters over 64 endpoints treat
  // i >= 64 as never tried). Healthy, non-ejected endpoints first; if none
  // is left, any untried one (Envoy's panic mode). -1 = none left.
  // Thread-safe: counters are atomic, the round-robin cursor too.
  int Pick(uint64_t tried) const;

 private:
  friend class ClusterTable;
  ClusterSpec spec_;
  bool uniform_weights_ = true;
  mutable std::atomic<uint64_t> rr_cursor_{0};
  int PickLeastRequest(const std::vector<int>& candidates) const;
  int PickWeighted(const std::vector<int>& candidates, uint64_t ticket) const;
};

// An endpoint counted in flight until Release (or destruction). Movable.
class EndpointLease {
 public:
  EndpointLease() = default;
  explicit EndpointLease(std::shared_ptr<EndpointLoad> load);
  EndpointLease(EndpointLease&& o) noexcept : load_(std::move(o.load_)) {}
  EndpointLease& operator=(EndpointLease&& o) noexcept;
  EndpointLease(const EndpointLease&) = delete;
  EndpointLease& operator=(const EndpointLease&) = delete;
  ~EndpointLease() { Release(); }
  void Release();
  bool held() const { return load_ != nullptr; }

 private:
  std::shared_ptr<EndpointLoad> load_;
};

// Marks endpoint i of the cluster picked and in flight.
EndpointLease Acquire(const Cluster& cluster, int index);

class ClusterTable {
 public:
  using Snapshot = std::unordered_map<std::string, std::shared_ptr<const Cluster>>;

  // Replaces every cluster at once (atomically for readers). Load counters
  // of endpoints that stay (same cluster name, same ip:port) are kept.
  void Replace(std::vector<ClusterSpec> clusters);
  // One cluster added or replaced / removed; the rest unchanged.
  void Upsert(ClusterSpec cluster);
  void Remove(const std::string& name);

  // The current table; never null. Cheap (a mutex-guarded shared_ptr copy).
  std::shared_ptr<const Snapshot> Current() const;
  std::shared_ptr<const Cluster> Find(const std::string& name) const;
  uint64_t version() const { return version_.load(std::memory_order_acquire); }

 private:
  std::shared_ptr<const Cluster> Build(ClusterSpec spec, const Snapshot& old) const;
  void Publish(std::shared_ptr<const Snapshot> next);
  std::mutex write_mutex_;  // serialises writers (each builds on the last table)
  mutable std::mutex mutex_;  // guards current_ only, held for a pointer copy
  std::shared_ptr<const Snapshot> current_ = std::make_shared<Snapshot>();
  std::atomic<uint64_t> version_{0};
};

// The process's one table (the L4 accept path and the HTTP path share it).
ClusterTable& GlobalClusterTable();

}  // namespace weir
