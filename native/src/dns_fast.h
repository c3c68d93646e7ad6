// The DNS proxy's UDP fast path: threads that own the UDP sockets, read
// queries in batches (recvmmsg), answer the ones whose exact answer is in a
// table the JavaScript server fills, and send those answers in batches
// (sendmmsg), without entering JavaScript. Everything else (first queries,
// forwarding, odd packets) is handed to JavaScript, which answers through
// Send() and teaches the table what it may answer next time (Put()).
//
// Why: Node's dgram costs a libuv wakeup, a Buffer and an rinfo object, and
// one sendto per datagram; at DNS rates that, not weir's own code, decided
// the throughput. Pure C++ here; the Node-API glue is dns_fast_js.cc.
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "netns_thread.h"

namespace weir {

// Largest answer the fast path sends itself; larger ones go through
// JavaScript (which also truncates for the client's size).
constexpr size_t kFastMaxAnswer = 4096;

// What the fast path knows of one query: the table key and what an answer
// must be patched or checked with.
struct FastQuery {
  size_t question_end = 0;  // offset just past QTYPE/QCLASS
  size_t udp_limit = 512;   // the client's UDP payload size (EDNS, else 512)
  uint16_t qtype = 0;
};

// Parses a query the fast path may answer: standard query, one question of
// uncompressed labels, no answer/authority records, and at most an OPT
// record without options (cookies, client subnet and the like go through
// JavaScript, which forwards them faithfully). Fills `key` (the question
// in lower case, type, class, the EDNS/DO and CD bits) and `q`. False for
// anything else.
bool ParseFastQuery(const uint8_t* p, size_t n, std::string* key, FastQuery* q);

// Offsets of every TTL field in a response (all sections; OPT excluded, its
// TTL field holds flags). False if the response does not parse.
bool FindTtlOffsets(const uint8_t* p, size_t n, std::vector<uint32_t>* offsets);

enum class FastKind : uint8_t { kLocal = 0, kCached = 1 };

// Exact answers by question, shared by the socket threads (readers) and the
// JavaScript thread (the only writer).
class AnswerTable {
 public:
  explicit AnswerTable(size_t max_entries) : max_entries_(max_entries) {}

  // Stores `response` as the answer to questions like `query`, for
  // `lifetime_ms`. Cached kinds have their TTLs counted down as they age;
  // local answers (authoritative, fixed TTL) are served as they are. False
  // when the query or response is not one the fast path handles.
  bool Put(const uint8_t* query, size_t qlen, const uint8_t* response, size_t rlen, int64_t lifetime_ms, FastKind kind);

  // Writes the answer to `query` into `out` (capacity kFastMaxAnswer):
  // its ID, RD bit and question (the client's letter case) patched in, TTLs
  // aged. Returns its length, 0 on miss, expiry, or when it exceeds the
  // client's UDP size. `key` is scratch space (kept by the caller to avoid an
  // allocation per query).
  size_t Answer(const uint8_t* query, size_t qlen, uint8_t* out, int64_t now_ms, std::string* key, FastKind* kind,
                uint16_t* qtype);

  // Drops entries of the kinds in `mask` (bit 0 local, bit 1 cached).
  void Clear(unsigned mask);
  size_t Size();

 private:
  struct Entry {
    std::string response;
    std::vector<uint32_t> ttl_offsets;
    std::vector<uint32_t> ttls;  // as stored
    int64_t stored_ms = 0;
    int64_t expires_ms = 0;
    FastKind kind = FastKind::kLocal;
  };
  void EvictLocked(int64_t now_ms);

  const size_t max_entries_;
  std::shared_mutex mu_;
  std::unordered_map<std::string, Entry> entries_;
};

// Where the socket threads count what they answer: the layout of the
// JavaScript SharedQueryStats (src/dns/shared-stats.ts), one block of
// doubles per thread, written by that thread only.
struct FastStatsLayout {
  std::vector<uint8_t> qtype_index;  // 65536 entries: qtype → label index
  int outcomes = 0;               // number of outcome columns
  int local_outcome = 0;
  int cached_outcome = 0;
  int malformed_outcome = 0;
  int latency_base = 0;    // first latency slot
  int latency_stride = 0;  // slots per outcome: buckets, sum, count
  std::vector<double> bounds;
  size_t slots = 0;  // doubles per thread block
};

// A query the fast path did not answer, for JavaScript.
struct FastMiss {
  int socket = -1;  // index into the engine's sockets (for Send)
  sockaddr_storage peer{};
  socklen_t peer_len = 0;
  std::string packet;
};

struct DnsFastStats {
  uint64_t answered = 0;
  uint64_t missed = 0;
  uint64_t dropped = 0;  // misses JavaScript had no room for, failed sends
};

class DnsFastEngine {
 public:
  // Takes ownership of the fds (closed by Stop). `sockets_per_thread[i]`
  // are thread i's sockets; `stats[i]` its counter block. `on_miss` is
  // called on socket threads and returns false when it could not queue the
  // miss (the query is then dropped: the client retries).
  using MissSink = std::function<bool(std::unique_ptr<FastMiss>)>;
  static std::optional<Failure> Create(std::vector<std::vector<int>> sockets_per_thread, std::vector<double*> stats,
                                       FastStatsLayout layout, std::shared_ptr<AnswerTable> table, MissSink on_miss,
                                       std::unique_ptr<DnsFastEngine>* out);
  ~DnsFastEngine();

  // Sends an answer JavaScript made for a miss. False if stopped or the
  // kernel refused (a full socket buffer drops the answer, as for any UDP).
  bool Send(int socket, const sockaddr_storage& peer, socklen_t peer_len, const uint8_t* data, size_t len);
  // Wakes and joins the threads, then closes the sockets. Idempotent.
  void Stop();
  DnsFastStats Stats() const;

 private:
  DnsFastEngine() = default;
  void Run(size_t thread_index);
  void Record(double* block, uint16_t qtype, int outcome, double seconds) const;

  std::vector<std::vector<int>> thread_sockets_;  // fds per thread
  std::vector<int> sockets_;                      // all fds, by socket index
  std::vector<int> socket_base_;                  // first socket index of each thread
  std::vector<double*> stats_;
  FastStatsLayout layout_;
  std::shared_ptr<AnswerTable> table_;
  MissSink on_miss_;
  int wake_fd_ = -1;
  std::vector<std::thread> threads_;
  std::atomic<bool> stopped_{false};
  std::atomic<uint64_t> answered_{0};
  std::atomic<uint64_t> missed_{0};
  std::atomic<uint64_t> dropped_{0};
};

}  // namespace weir
