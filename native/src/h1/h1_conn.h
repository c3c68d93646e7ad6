// Per-connection and per-request state of the native HTTP/1.1 path,
// shared by h1_engine.cc (loop), h1_down.cc (client side) and h1_up.cc
// (upstream side). Engine-thread only.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../cluster_table.h"
#include "../mono_clock.h"
#include "h1_engine.h"

namespace weir {
namespace h1 {

constexpr size_t kMaxRequestHead = 60 * 1024;   // Envoy's and the JS chain's limit (431 beyond)
constexpr size_t kMaxResponseHead = 96 * 1024;
constexpr size_t kReplayLimit = 64 * 1024;      // request bytes kept for a retry (as http/body.ts)
constexpr size_t kHighWater = 256 * 1024;       // stop reading a side while the other has this much queued

// A socket's buffers: reads append to `in` (consumed from in_off), writes
// leave from `out` (sent up to out_off). Edge-triggered epoll: `readable`
// stays true until a read saw EAGAIN.
struct Io {
  int fd = -1;
  std::string in;
  size_t in_off = 0;
  std::string out;
  size_t out_off = 0;
  bool readable = true;
  bool writable = true;
  bool eof = false;     // the peer sent FIN (a read returned 0)
  bool rdhup = false;   // epoll said the peer closed: read on to the 0, a short read is not the end
  bool failed = false;  // reset or other socket error
  int error = 0;

  size_t InLen() const { return in.size() - in_off; }
  const char* InPtr() const { return in.data() + in_off; }
  void Consume(size_t n) {
    in_off += n;
    if (in_off == in.size()) { in.clear(); in_off = 0; }
    else if (in_off > 64 * 1024) { in.erase(0, in_off); in_off = 0; }
  }
  size_t OutLen() const { return out.size() - out_off; }
  // Reads until EAGAIN, EOF, error or `cap` bytes buffered.
  void ReadSome(size_t cap);
  // Writes what it can; false on a write error.
  bool WriteSome();
};

// Counts gRPC length-prefixed messages (1 flag byte, 4 length bytes, the message) in a DATA byte stream.
struct GrpcMessages {
  uint64_t count = 0;
  uint64_t left = 0;  // bytes of the current message's body still to come
  int prefix = 0;     // prefix bytes seen of the next message (0-5)
  uint32_t len = 0;
  void Feed(const char* p, size_t n) {
    while (n > 0) {
      if (left > 0) {
        size_t take = static_cast<size_t>(std::min<uint64_t>(left, n));
        left -= take; p += take; n -= take;
        continue;
      }
      if (prefix >= 1) len = (len << 8) | static_cast<unsigned char>(*p);
      p++; n--;
      if (++prefix == 5) { count++; left = len; prefix = 0; len = 0; }
    }
  }
};

struct Exchange {
  std::shared_ptr<const Config> cfg;
  int route = -1;            // -1: passthrough / inbound hand-off
  Endpoint direct;           // the target when route < 0
  bool mesh_peer = false;
  int retries_left = 0;
  bool fresh_retry_used = false;
  std::shared_ptr<const Cluster> cluster;  // the route's cluster (cluster_table.h), looked up once per request
  uint64_t tried_mask = 0;                 // endpoints this request tried (bit = index)
  EndpointLease lease;                     // the current attempt's in-flight count
  std::string endpoint;      // key of the current attempt
  Up* up = nullptr;
  int attempts = 0;

  // Request
  std::string head;          // the upstream request head
  bool head_request = false;
  bool upgrade = false;
  bool client_10 = false;
  bool client_close = false;
  Framing req_framing;
  ChunkScanner req_chunks;
  uint64_t req_left = 0;
  bool req_done = false;
  std::string sent;          // head + body forwarded so far, while replayable
  bool replayable = true;
  uint64_t req_body_bytes = 0;
  uint64_t req_header_bytes = 0;
  std::string peer_in;       // x-weir-peer the request carried (inbound)

  // Response
  bool resp_started = false;  // a response byte went to the client
  bool resp_head_done = false;
  bool resp_done = false;
  bool up_reusable = true;
  bool decode_chunks = false;  // chunked upstream → HTTP/1.0 client
  Framing resp_framing;
  ChunkScanner resp_chunks;
  uint64_t resp_left = 0;
  int code = 0;
  std::string flags = "-";
  std::string peer_out;       // x-weir-peer the response carried (outbound)
  uint64_t resp_header_bytes = 0;
  uint64_t resp_body_bytes = 0;
  double t0 = 0;
  std::string dst_key;        // "ip:port" dialled (inbound: which service port)
  std::string authority;      // outbound passthrough: destination_service is the Host
  const char* protocol = "http";  // request_protocol: "http" or "grpc"
  std::string grpc_status;    // grpc_response_status (gRPC only)
  GrpcMessages req_messages, resp_messages;  // gRPC only (the HTTP/2 codec counts them)
};

// Routing shared by both codecs: Host/authority + dialled port → route (or the original destination, or the
// inbound app); fills route, direct, retries_left, mesh_peer, authority, dst_key.
void RouteExchange(const Config& c, bool inbound, const std::string& dst_ip, int dst_port, const std::string* host, Exchange* ex);
// The endpoint of the next attempt: LEAST_REQUEST over the route's cluster (skipping tried endpoints while others
// remain), the dialled pod (headless) or ex->direct. Takes the lease. false: no healthy upstream.
bool PickEndpoint(Exchange* ex, const std::string& dst_ip, Endpoint* picked, const Endpoint** ep);

// Both codecs' socket set-up, one place each: an adopted client socket made
// non-blocking with TCP_NODELAY; an upstream socket (non-blocking,
// close-on-exec, TCP_NODELAY) that, inbound over IPv4, is bound to
// `inbound_source_v4` (127.0.0.6: the app sees the hand-off from there, as
// with Istio, and the capture rules exempt it). -1 if socket() failed.
void PrepareAdopted(int fd);
int OpenUpstreamSocket(const Endpoint& ep, bool inbound, const Config& c);

struct Down {
  Engine::Handle handle{Engine::Handle::Kind::kDown, this};
  uint64_t id = 0;
  Io io;
  bool inbound = false;
  std::string dst_ip;
  int dst_port = 0;
  std::string peer_ip;
  enum class Phase { kHead, kExchange, kTunnel, kClosing } phase = Phase::kHead;
  std::unique_ptr<Exchange> ex;
  int64_t deadline = 0;  // header timeout (kHead) or keep-alive idle
  bool dead = false;
  ~Down() { if (io.fd >= 0) close(io.fd); }
};

struct Up {
  Engine::Handle handle{Engine::Handle::Kind::kUp, this};
  Io io;
  std::string key;
  bool connecting = true;
  bool reused = false;
  bool got_bytes = false;  // any response byte on this attempt
  Down* owner = nullptr;   // null while idle in the pool
  int64_t deadline = 0;    // connect timeout, or idle timeout in the pool
  bool dead = false;
  ~Up() { if (io.fd >= 0) close(io.fd); }
};

}  // namespace h1
}  // namespace weir
