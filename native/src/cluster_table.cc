#include "cluster_table.h"

#include <arpa/inet.h>

#include <cstring>
#include <random>

namespace weir {
namespace {

// Per-thread generator: picks happen on several threads, none may share state.
uint64_t NextRandom() {
  thread_local std::mt19937_64 rng{std::random_device{}() ^ reinterpret_cast<uintptr_t>(&rng)};
  return rng();
}

std::string LoadKey(const std::string& ip, int port) { return ip + "|" + std::to_string(port); }

}  // namespace

std::optional<LbPolicy> ParseLbPolicy(const std::string& name) {
  if (name == "LEAST_REQUEST" || name == "LEAST_CONN" || name.empty()) return LbPolicy::kLeastRequest;
  if (name == "ROUND_ROBIN") return LbPolicy::kRoundRobin;
  if (name == "RANDOM") return LbPolicy::kRandom;
  return std::nullopt;
}

std::optional<Failure> SetEndpointAddress(const std::string& ip, int port, ClusterEndpoint* ep) {
  if (port < 1 || port > 65535) return Failure{"endpoint port must be an integer in [1, 65535] (bad value: " + std::to_string(port) + ")", "EINVAL"};
  std::memset(&ep->addr, 0, sizeof(ep->addr));
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ep->addr);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ep->addr);
  if (inet_pton(AF_INET, ip.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    ep->addr_len = sizeof(sockaddr_in);
  } else if (inet_pton(AF_INET6, ip.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    ep->addr_len = sizeof(sockaddr_in6);
  } else {
    return Failure{"endpoint ip must be a numeric IPv4 or IPv6 address (bad value: \"" + ip + "\")", "EINVAL"};
  }
  ep->ip = ip;
  ep->port = port;
  return std::nullopt;
}

Cluster::Cluster(ClusterSpec spec) : spec_(std::move(spec)) {
  for (const ClusterEndpoint& e : spec_.endpoints) {
    if (e.weight != spec_.endpoints.front().weight) uniform_weights_ = false;
  }
}

int Cluster::Pick(uint64_t tried) const {
  const size_t n = spec_.endpoints.size();
  auto untried = [tried](size_t i) { return i >= 64 || (tried & (uint64_t{1} << i)) == 0; };
  std::vector<int> candidates;
  candidates.reserve(n);
  for (size_t i = 0; i < n; i++) {
    const ClusterEndpoint& e = spec_.endpoints[i];
    if (untried(i) && e.healthy && !e.ejected) candidates.push_back(static_cast<int>(i));
  }
  // Panic: nothing healthy is left, so any endpoint beats failing outright.
  if (candidates.empty()) {
    for (size_t i = 0; i < n; i++) if (untried(i)) candidates.push_back(static_cast<int>(i));
  }
  if (candidates.empty()) return -1;
  if (candidates.size() == 1) return candidates[0];
  switch (spec_.policy) {
    case LbPolicy::kLeastRequest:
      return PickLeastRequest(candidates);
    case LbPolicy::kRoundRobin:
      return PickWeighted(candidates, rr_cursor_.fetch_add(1, std::memory_order_relaxed));
    case LbPolicy::kRandom:
      return PickWeighted(candidates, NextRandom());
  }
  return candidates[0];
}

// Two distinct random candidates, the less loaded wins (Envoy's default
// choice_count 2). With unequal weights the load is scaled by weight, so a
// weight-2 endpoint carries about twice the in-flight count of a weight-1 one.
int Cluster::PickLeastRequest(const std::vector<int>& candidates) const {
  const size_t n = candidates.size();
  size_t a = NextRandom() % n;
  size_t b = NextRandom() % (n - 1);
  if (b >= a) b++;
  const ClusterEndpoint& ea = spec_.endpoints[candidates[a]];
  const ClusterEndpoint& eb = spec_.endpoints[candidates[b]];
  const double la = ea.load->active.load(std::memory_order_relaxed);
  const double lb = eb.load->active.load(std::memory_order_relaxed);
  if (uniform_weights_) return la <= lb ? candidates[a] : candidates[b];
  return (la + 1) / ea.weight <= (lb + 1) / eb.weight ? candidates[a] : candidates[b];
}

// The candidate whose cumulative weight range holds ticket mod total weight:
// a steadily increasing ticket gives weighted round robin, a random one
// weighted random.
int Cluster::PickWeighted(const std::vector<int>& candidates, uint64_t ticket) const {
  uint64_t total = 0;
  for (int i : candidates) total += spec_.endpoints[i].weight;
  uint64_t at = ticket % total;
  for (int i : candidates) {
    uint64_t w = spec_.endpoints[i].weight;
    if (at < w) return i;
    at -= w;
  }
  return candidates.back();
}

EndpointLease::EndpointLease(std::shared_ptr<EndpointLoad> load) : load_(std::move(load)) {
  if (load_) load_->active.fetch_add(1, std::memory_order_relaxed);
}

EndpointLease& EndpointLease::operator=(EndpointLease&& o) noexcept {
  if (this != &o) {
    Release();
    load_ = std::move(o.load_);
  }
  return *this;
}

void EndpointLease::Release() {
  if (load_) load_->active.fetch_sub(1, std::memory_order_relaxed);
  load_.reset();
}

EndpointLease Acquire(const Cluster& cluster, int index) {
  if (index < 0 || static_cast<size_t>(index) >= cluster.size()) return EndpointLease();
  const auto& load = cluster.endpoint(index).load;
  load->picked.fetch_add(1, std::memory_order_relaxed);
  return EndpointLease(load);
}

std::shared_ptr<const Cluster> ClusterTable::Build(ClusterSpec spec, const Snapshot& old) const {
  auto prev = old.find(spec.name);
  std::unordered_map<std::string, std::shared_ptr<EndpointLoad>> loads;
  if (prev != old.end()) {
    for (const ClusterEndpoint& e : prev->second->spec().endpoints) loads[LoadKey(e.ip, e.port)] = e.load;
  }
  for (ClusterEndpoint& e : spec.endpoints) {
    auto it = loads.find(LoadKey(e.ip, e.port));
    e.load = it != loads.end() ? it->second : std::make_shared<EndpointLoad>();
  }
  return std::make_shared<const Cluster>(std::move(spec));
}

void ClusterTable::Publish(std::shared_ptr<const Snapshot> next) {
  std::lock_guard<std::mutex> lock(mutex_);
  current_ = std::move(next);
  version_.fetch_add(1, std::memory_order_release);
}

void ClusterTable::Replace(std::vector<ClusterSpec> clusters) {
  std::lock_guard<std::mutex> writer(write_mutex_);
  std::shared_ptr<const Snapshot> old = Current();
  auto next = std::make_shared<Snapshot>();
  for (ClusterSpec& c : clusters) {
    std::string name = c.name;
    (*next)[name] = Build(std::move(c), *old);
  }
  Publish(std::move(next));
}

void ClusterTable::Upsert(ClusterSpec cluster) {
  std::lock_guard<std::mutex> writer(write_mutex_);
  std::shared_ptr<const Snapshot> old = Current();
  auto next = std::make_shared<Snapshot>(*old);
  std::string name = cluster.name;
  (*next)[name] = Build(std::move(cluster), *old);
  Publish(std::move(next));
}

void ClusterTable::Remove(const std::string& name) {
  std::lock_guard<std::mutex> writer(write_mutex_);
  std::shared_ptr<const Snapshot> old = Current();
  if (old->find(name) == old->end()) return;
  auto next = std::make_shared<Snapshot>(*old);
  next->erase(name);
  Publish(std::move(next));
}

std::shared_ptr<const ClusterTable::Snapshot> ClusterTable::Current() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return current_;
}

std::shared_ptr<const Cluster> ClusterTable::Find(const std::string& name) const {
  std::shared_ptr<const Snapshot> snap = Current();
  auto it = snap->find(name);
  return it == snap->end() ? nullptr : it->second;
}

ClusterTable& GlobalClusterTable() {
  static ClusterTable* table = new ClusterTable();  // never destroyed: threads may still read it at exit
  return *table;
}

}  // namespace weir
