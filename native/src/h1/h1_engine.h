// The native HTTP/1.1 fast path: one epoll thread that owns client
// connections JavaScript handed over (after accept, original destination
// and protocol detection said "HTTP/1.x" and the route needs nothing the
// native path lacks), parses each request (h1_parse), routes it by
// Host + port with the tables JS pushed (h1_config), picks an endpoint per
// request, relays it over a keep-alive pool of upstream connections and
// streams the response back. Per request, nothing crosses into JS: the
// istio_* metrics are aggregated here per (route, endpoint, code, flags,
// peer) and JS takes them in batches (TakeStats).
//
// Its own thread, not the splice pump's: the pump's loop is built around
// splice pipes and fd pairs, this one around buffers that a parser reads;
// a separate loop keeps each simple, and an HTTP request never waits
// behind a bulk L4 flow's splice batch (and vice versa).
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "h1_config.h"
#include "h1_parse.h"

namespace weir {
namespace h1 {

// One aggregated series: what JS folds into istio_requests_total and the
// three histograms (bucket counts are per bound, not cumulative; the last
// slot is above every bound).
struct Series {
  uint64_t count = 0;
  std::vector<uint64_t> duration;
  double duration_sum = 0;
  std::vector<uint64_t> request_bytes;
  double request_bytes_sum = 0;
  std::vector<uint64_t> response_bytes;
  double response_bytes_sum = 0;
  uint64_t request_messages = 0;   // gRPC length-prefixed messages (istio_request_messages_total)
  uint64_t response_messages = 0;
};

struct EngineCounters {
  std::atomic<uint64_t> connections{0};
  std::atomic<uint64_t> active_connections{0};
  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> upstream_connects{0};
  std::atomic<uint64_t> upstream_reused{0};
  std::atomic<uint64_t> retries{0};
  std::atomic<uint64_t> rejected{0};  // 400/431 from the codec
  std::atomic<uint64_t> tunnels{0};
  std::atomic<uint64_t> h2_connections{0};  // client connections served by the HTTP/2 codec
};

struct AdoptSpec {
  int fd = -1;           // the caller's fd: duplicated, the caller closes its own
  bool inbound = false;
  std::string dst_ip;    // original destination
  int dst_port = 0;
  std::string peer_ip;   // the client's address (inbound source labels)
  std::string initial;   // bytes already read (protocol detection)
  bool h2 = false;       // h2c (prior knowledge or sniffed preface): the HTTP/2 codec (native/src/h2) serves it
};

struct Down;
struct Up;
struct Exchange;
}  // namespace h1
namespace h2 {
class Codec;
}
namespace h1 {

class Engine {
 public:
  static std::unique_ptr<Engine> Create(std::string* error);
  ~Engine();
  void Configure(std::shared_ptr<const Config> cfg);
  // Takes a duplicate of spec.fd; false (+ *error) if the fd is unusable.
  bool Adopt(const AdoptSpec& spec, std::string* error);
  // The series aggregated since the last call; keys are
  // "generation|route|endpoint|code|flags|source ip|dst|authority|peer header"
  // (source ip and dst inbound only, authority for outbound passthrough only).
  std::map<std::string, Series> TakeStats();
  // Closes idle client connections and pooled upstream connections.
  void Drain();
  void Stop();
  const EngineCounters& Counters() const { return counters_; }
  size_t Bounds(bool duration) const;

  // --- used by the connection code (engine thread only) ---
  struct Handle {
    enum class Kind { kWake, kDown, kUp, kH2Down, kH2Up } kind;
    void* ptr;
  };

 private:
  Engine() = default;
  void Run();
  void Wake();
  void TakeCommands();
  void Sweep(int64_t now);

  // h1_down.cc: the client side.
  void DownEvent(Down* d, uint32_t ev);
  void Advance(Down* d);
  bool StartRequest(Down* d, const Head& head);
  void ForwardRequestBody(Down* d);
  void LocalReply(Down* d, int code, const char* flags, const std::string& body, bool close);
  void FinishExchange(Down* d);
  void CloseDown(Down* d);
  void FlushDown(Down* d);
  void Record(Down* d, Exchange* ex);
  // The series key and histograms of one finished request (both codecs).
  void Record(bool inbound, const std::string& peer_ip, Exchange* ex);

  // h1_up.cc: the upstream side.
  void Attempt(Down* d, bool fresh_only);
  void UpEvent(Up* u, uint32_t ev);
  void UpConnected(Up* u);
  void UpFailed(Up* u, const char* why, bool before_response);
  void ProcessResponse(Down* d);
  void FlushUp(Up* u);
  void CloseUp(Up* u);
  void ReleaseUp(Up* u, bool reusable);
  Up* TakePooled(const std::string& key);

  friend struct Down;
  friend class h2::Codec;
  std::unique_ptr<h2::Codec> h2_;  // the HTTP/2 side (native/src/h2); null when node's nghttp2 is unusable
  std::shared_ptr<const Config> cfg_;  // engine thread's current config
  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  Handle wake_handle_{Handle::Kind::kWake, nullptr};
  std::thread thread_;
  std::atomic<bool> stopping_{false};

  std::mutex commands_mutex_;
  std::vector<AdoptSpec> adopts_;  // fds already duplicated
  std::shared_ptr<const Config> pending_cfg_;
  bool drain_ = false;

  std::mutex stats_mutex_;
  std::map<std::string, Series> stats_;
  size_t duration_bounds_ = 0, size_bounds_ = 0;

  EngineCounters counters_;
  std::unordered_map<uint64_t, std::unique_ptr<Down>> downs_;
  std::unordered_map<Up*, std::unique_ptr<Up>> ups_;
  std::unordered_map<std::string, std::vector<Up*>> pool_;  // idle upstream connections per endpoint key
  std::vector<std::unique_ptr<Down>> dead_downs_;  // freed after the event batch
  std::vector<std::unique_ptr<Up>> dead_ups_;
  uint64_t next_id_ = 1;
  uint64_t rng_ = 0;
  friend void EngineRandom(Engine*, uint8_t*, size_t);
};

}  // namespace h1
}  // namespace weir
