// The HTTP/2 side of the native HTTP engine (h1_engine's epoll thread):
// h2c client connections JS handed over (prior knowledge or a sniffed
// preface, on ports whose upstream speaks h2) are served with nghttp2 —
// node's own copy, resolved from the node process at load time as the TLS
// relay does with OpenSSL (one nghttp2 in the process; Debian's
// libnghttp2-dev gives the header; JS hands no h2 connection over when
// node's nghttp2 is older than it — native-h2.ts). Each client stream is an h1::Exchange (routing, LEAST_REQUEST pick,
// lease, retries, telemetry are the HTTP/1.1 path's), relayed over one
// multiplexed h2c session per upstream endpoint (weir peers and h2 apps).
//
// Flow control end to end: neither session acknowledges DATA by itself
// (no automatic WINDOW_UPDATE); bytes a stream received are consumed —
// their window handed back — only when the other side's session has taken
// them for sending, so a stream never buffers more than its window.
#pragma once

#include <nghttp2/nghttp2.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../h1/h1_conn.h"
#include "../h1/h1_headers.h"

namespace weir {
namespace h2 {

using NvList = std::vector<std::pair<std::string, std::string>>;

constexpr int32_t kStreamWindow = 1 << 20;      // as the JS chain's node:http2 server (initialWindowSize)
constexpr int32_t kConnectionWindow = 2 << 20;
constexpr size_t kMaxHeaderList = 60 * 1024;    // as the HTTP/1.1 path and the JS chain (maxHeaderListSize)
constexpr int kResetsPerSecond = 200;           // rapid reset (CVE-2023-44487): as src/proxy/http/h2-guard.ts
constexpr uint64_t kMinStreams = 500;

// Bytes one side received that the other side's session has not taken yet.
struct Pipe {
  std::string buf;
  size_t off = 0;
  bool end = false;       // END_STREAM received
  bool deferred = false;  // the reading provider said DEFERRED: resume it when bytes or the end arrive
  NvList trailers;
  size_t Len() const { return buf.size() - off; }
};

struct Session;

struct Stream {
  Session* down = nullptr;
  int32_t id = 0;
  h1::Exchange ex;
  NvList req_headers;  // as received, pseudo-headers apart
  std::string method, path, authority;
  size_t header_bytes = 0;
  NvList up_headers;   // the upstream request (kept for a retry)
  Session* up = nullptr;
  int32_t up_id = -1;
  Pipe req, resp;
  // Request DATA stay in req.buf (req.off rewound for a retry) while they fit in h1::kReplayLimit, as on the
  // HTTP/1.1 path; beyond, the taken bytes are dropped and no retry can follow.
  bool replayable = true;
  uint64_t req_erased = 0;       // request bytes dropped from req.buf's front
  uint64_t req_given_back = 0;   // request bytes whose window went back to the client (a replay gives none twice)
  // Bytes held for the other side whose window has not gone back yet: request bytes on the client's
  // connection, response bytes on the upstream's. When a side lets go of the stream (closed, reset,
  // detached) before the other side took them, they go back at connection level there — else each such
  // stream would shrink the shared connection window for good (a reused upstream connection then stalls).
  uint64_t req_unconsumed = 0, resp_unconsumed = 0;
  double retry_at = 0;           // a retry waits for its backoff until then (NowMsPrecise); 0: none pending
  NvList resp_headers;     // the upstream's response head being received
  int up_status = 0;
  bool resp_submitted = false;  // the client got a response HEADERS
  bool client_reset = false;
  bool recorded = false;
  int64_t deadline = 0;    // grpc-timeout
};

struct Session {
  h1::Engine::Handle handle;
  h1::Io io;
  nghttp2_session* ng = nullptr;
  bool server = false;  // a client connection (downstream); else an upstream session
  bool connecting = false;
  bool dead = false;
  bool dirty = false;
  bool out_armed = false;  // EPOLLOUT registered (a write is blocked, or the connect is pending)
  int64_t deadline = 0;  // idle (downstream without streams) or connect timeout (upstream)
  // Downstream
  bool inbound = false;
  std::string dst_ip, peer_ip;
  int dst_port = 0;
  std::unordered_map<int32_t, std::unique_ptr<Stream>> streams;
  uint64_t opened = 0, premature = 0;
  int64_t window_start = 0;
  int in_window = 0;
  Codec* codec = nullptr;
  // Upstream
  std::string key;
  std::unordered_map<int32_t, Stream*> up_streams;
  bool goaway = false;

  explicit Session(bool is_server) : handle{is_server ? h1::Engine::Handle::Kind::kH2Down : h1::Engine::Handle::Kind::kH2Up, this}, server(is_server) {}
  ~Session() {
    if (ng) nghttp2_session_del(ng);
    if (io.fd >= 0) close(io.fd);
  }
};

class Codec {
 public:
  static std::unique_ptr<Codec> Create(h1::Engine* engine);
  ~Codec();
  void Adopt(h1::AdoptSpec spec);
  void Event(h1::Engine::Handle* h, uint32_t ev);
  void Sweep(int64_t now);
  void Drain();
  void Reap();  // frees what closed during the event batch

  // --- h2_down.cc: the client side ---
  void StartStream(Stream* st);
  void Respond(Stream* st, bool end_stream);  // the upstream's final response head → the client
  void LocalReply(Stream* st, int code, const char* flags, const std::string& text);
  void ResetDown(Stream* st, uint32_t code);
  void StreamClosed(Stream* st, uint32_t code);
  void Resume(Session* s, int32_t id, Pipe* p);
  // --- h2_up.cc: the upstream side ---
  void Attempt(Stream* st);
  void Detach(Stream* st, bool cancel);  // the stream leaves its upstream session (RST_STREAM(CANCEL) if asked)
  void UpStreamClosed(Stream* st, uint32_t code);
  void UpFailed(Session* u, bool connect_failure);
  // --- h2_retry.cc: Istio's default retries ---
  // Uses a retry if the budget and the replay buffer allow: the stream leaves its upstream and its next Attempt
  // waits for the backoff. false: the caller answers with what it has.
  bool RetryLater(Stream* st);
  int WaitMs(int cap) const;  // the event loop's epoll timeout: at most until the next pending retry
  void RunDue();              // starts the retries whose backoff passed
  static void DropReplay(Stream* st);  // no retry can follow: bytes an upstream took are freed from here on
  // --- h2_session.cc ---
  void MarkDirty(Session* s);
  void Close(Session* s);
  void CountRetry() { e_->counters_.retries++; }
  const h1::Config& cfg() const;
  nghttp2_data_provider Provider(Stream* st, bool request);

 private:
  explicit Codec(h1::Engine* e) : e_(e) {}
  void Pump(Session* s);
  void Flush(Session* s);
  void FlushDirty();
  void UpConnected(Session* u);
  void WantWritable(Session* s, bool on);
  Session* UpFor(const h1::Endpoint& ep, bool inbound, bool* failed);

  h1::Engine* e_;
  nghttp2_session_callbacks* down_cbs_ = nullptr;
  nghttp2_session_callbacks* up_cbs_ = nullptr;
  nghttp2_option* option_ = nullptr;
  std::unordered_map<Session*, std::unique_ptr<Session>> sessions_;
  std::unordered_map<std::string, Session*> up_by_key_;
  std::vector<std::unique_ptr<Session>> dead_;
  std::vector<std::unique_ptr<Stream>> dead_streams_;
  std::vector<Session*> dirty_;
  double next_retry_ = 0;  // earliest pending retry_at (0: none)
  friend struct DownCallbacks;
  friend struct UpCallbacks;
 public:
  void Bury(std::unique_ptr<Stream> st) { dead_streams_.push_back(std::move(st)); }
};

// The nghttp2 callbacks of each side (h2_down.cc, h2_up.cc); user_data is the Session.
void InstallDownCallbacks(nghttp2_session_callbacks* cbs);
void InstallUpCallbacks(nghttp2_session_callbacks* cbs);
Codec* CodecOf(Session* s);

// h2_headers.cc: the HTTP/1.1 path's header rules (h1_headers) applied to h2 header lists.
// The upstream request's header list (pseudo-headers first); *facts as BuildRequestHead's.
void UpstreamRequest(const Stream& st, const h1::Config& c, NvList* out, h1::RequestFacts* facts);
// The client's response header list for an upstream response (`me`: this proxy's x-weir-peer to add).
void DownstreamResponse(int status, const NvList& in, const std::string* me, NvList* out, std::string* peer_out, uint64_t* header_bytes);
std::vector<nghttp2_nv> Nv(const NvList& l);
// grpc-timeout ("100m", "5S", ...) in ms; -1 if absent or malformed.
int64_t GrpcTimeoutMs(const std::string& v);

}  // namespace h2
}  // namespace weir
