// What JavaScript pushes down to the native HTTP/1.1 path (h1_engine):
// routes (one per service port, or the inbound hand-off), the Host table
// that picks them, and the per-proxy constants (identity header, retry
// budget, timeouts, histogram bounds). Immutable once built: the engine
// thread swaps in a new one between requests, and a request keeps the one
// it started with (shared_ptr), so a config push never changes a request
// half-way. Nothing here is protocol-specific: an h2 codec routes with the
// same tables (docs/architecture.md, "Native HTTP path").
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace weir {
namespace h1 {

struct Endpoint {
  std::string ip;
  int port = 0;
  std::string key;  // "ip:port" ("[v6]:port"): metrics records and the in-flight counters
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
};

struct Route {
  // The cluster in the process's cluster table (cluster_table.h) whose
  // endpoints a request is balanced over: outbound|port||fqdn.
  std::string cluster;
  // Headless services only: the pods, one of which the client dialled.
  std::vector<Endpoint> endpoints;
  // Headless service: only the pod the client dialled (Istio's ORIGINAL_DST).
  bool headless = false;
  // The upstream is a weir proxy: send it this proxy's x-weir-peer.
  bool mesh_peer = false;
  int retries = 0;
};

struct Config {
  uint64_t generation = 0;
  std::vector<Route> routes;
  // "host|port" → route index, every name Istio gives a service port
  // (name, name.ns, name.ns.svc, FQDN, ClusterIP), lower-case.
  std::unordered_map<std::string, int> hosts;
  // Pod IPs of the mesh: passthrough to one of them still gets x-weir-peer.
  std::unordered_set<std::string> mesh_pods;
  std::string peer_header;  // this proxy's encoded identity (x-weir-peer value)
  int passthrough_retries = 2;
  double sampling_percent = 1.0;
  int64_t idle_timeout_ms = 60 * 60 * 1000;
  int64_t connect_timeout_ms = 10000;
  int64_t header_timeout_ms = 60000;
  std::string inbound_source_v4;  // 127.0.0.6: the app sees the proxy's hand-off from here
  std::vector<double> duration_bounds;  // istio_request_duration_milliseconds
  std::vector<double> size_bounds;      // istio_request_bytes / istio_response_bytes
};

// Fills addr/addr_len/key from ip and port; false if ip is not an address.
bool ResolveEndpoint(Endpoint* e);

}  // namespace h1
}  // namespace weir
