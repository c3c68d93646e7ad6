#include "dns_fast.h"

#include "mono_clock.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <mutex>

namespace weir {
namespace {

constexpr size_t kHeader = 12;
constexpr uint16_t kTypeOpt = 41;
// Datagrams per recvmmsg/sendmmsg call: enough to amortise the syscall at
// saturation, small enough that the buffers stay in cache.
constexpr int kBatch = 32;
// A query larger than this is not one the fast path answers (it arrives
// with MSG_TRUNC and is counted as malformed, as the JS server would reject it).
constexpr size_t kMaxQuery = 4096;
// Batches read from one socket before the others get a turn.
constexpr int kRoundsPerWake = 64;

inline uint16_t Be16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
inline uint32_t Be32(const uint8_t* p) {
  return (static_cast<uint32_t>(p[0]) << 24) | (static_cast<uint32_t>(p[1]) << 16) | (static_cast<uint32_t>(p[2]) << 8) | p[3];
}
inline void PutBe32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}
inline uint8_t AsciiLower(uint8_t c) { return (c >= 'A' && c <= 'Z') ? static_cast<uint8_t>(c + 32) : c; }

// Skips a (possibly compressed) name in a response; false if malformed.
bool SkipName(const uint8_t* p, size_t n, size_t* off) {
  for (int labels = 0; labels < 128; labels++) {
    if (*off >= n) return false;
    uint8_t len = p[*off];
    if ((len & 0xC0) == 0xC0) {
      if (*off + 2 > n) return false;
      *off += 2;
      return true;
    }
    if (len & 0xC0) return false;  // the reserved label types
    *off += 1;
    if (len == 0) return true;
    *off += len;
  }
  return false;
}

}  // namespace

bool ParseFastQuery(const uint8_t* p, size_t n, std::string* key, FastQuery* q) {
  if (n < kHeader) return false;
  // QR, opcode and TC must be clear: responses, non-QUERY opcodes and odd
  // flags get the JavaScript server's full treatment (drop, NOTIMP, ...).
  if (p[2] & (0x80 | 0x78 | 0x02)) return false;
  if (Be16(p + 4) != 1 || Be16(p + 6) != 0 || Be16(p + 8) != 0) return false;
  uint16_t arcount = Be16(p + 10);
  if (arcount > 1) return false;

  key->clear();
  size_t off = kHeader;
  for (;;) {
    if (off >= n) return false;
    uint8_t len = p[off];
    if (len == 0) break;
    if (len > 63 || off + 1 + len > n || off + 1 + len - kHeader > 254) return false;
    key->push_back(static_cast<char>(len));
    for (size_t i = off + 1; i <= off + len; i++) key->push_back(static_cast<char>(AsciiLower(p[i])));
    off += 1 + len;
  }
  key->push_back('\0');
  off += 1;
  if (off + 4 > n) return false;
  q->qtype = Be16(p + off);
  key->append(reinterpret_cast<const char*>(p + off), 4);  // QTYPE, QCLASS
  off += 4;
  q->question_end = off;

  char edns = 0;
  q->udp_limit = 512;
  if (arcount == 1) {
    // OPT only: root owner, version 0, no extended rcode, no options.
    if (off + 11 != n || p[off] != 0 || Be16(p + off + 1) != kTypeOpt) return false;
    if (p[off + 5] != 0 || p[off + 6] != 0 || Be16(p + off + 9) != 0) return false;
    q->udp_limit = std::max<size_t>(512, Be16(p + off + 3));
    edns = (Be16(p + off + 7) & 0x8000) ? 2 : 1;
    off += 11;
  }
  if (off != n) return false;
  key->push_back(edns);
  key->push_back((p[3] & 0x10) ? 1 : 0);  // CD
  return true;
}

bool FindTtlOffsets(const uint8_t* p, size_t n, std::vector<uint32_t>* offsets) {
  if (n < kHeader) return false;
  size_t off = kHeader;
  for (uint16_t i = 0, qd = Be16(p + 4); i < qd; i++) {
    if (!SkipName(p, n, &off) || off + 4 > n) return false;
    off += 4;
  }
  uint32_t records = static_cast<uint32_t>(Be16(p + 6)) + Be16(p + 8) + Be16(p + 10);
  for (uint32_t i = 0; i < records; i++) {
    if (!SkipName(p, n, &off) || off + 10 > n) return false;
    if (Be16(p + off) != kTypeOpt) offsets->push_back(static_cast<uint32_t>(off + 4));
    off += 10 + Be16(p + off + 8);
    if (off > n) return false;
  }
  return true;
}

bool AnswerTable::Put(const uint8_t* query, size_t qlen, const uint8_t* response, size_t rlen, int64_t lifetime_ms,
                      FastKind kind) {
  const int64_t now_ms = NowMs();
  std::string key;
  FastQuery q;
  if (lifetime_ms <= 0 || !ParseFastQuery(query, qlen, &key, &q)) return false;
  // Only complete answers to this very question: Answer() copies the
  // client's question over the stored one, so they must match byte for
  // byte apart from letter case.
  if (rlen > kFastMaxAnswer || rlen < q.question_end || !(response[2] & 0x80) || (response[2] & 0x02)) return false;
  if (Be16(response + 4) != 1) return false;
  for (size_t i = kHeader; i < q.question_end; i++) {
    if (AsciiLower(response[i]) != AsciiLower(query[i])) return false;
  }
  Entry e;
  if (kind == FastKind::kCached) {
    if (!FindTtlOffsets(response, rlen, &e.ttl_offsets)) return false;
    for (uint32_t o : e.ttl_offsets) e.ttls.push_back(Be32(response + o));
  }
  e.response.assign(reinterpret_cast<const char*>(response), rlen);
  e.stored_ms = now_ms;
  e.expires_ms = now_ms + lifetime_ms;
  e.kind = kind;
  std::unique_lock<std::shared_mutex> lock(mu_);
  entries_.erase(key);
  if (entries_.size() >= max_entries_) EvictLocked(now_ms);
  entries_.emplace(std::move(key), std::move(e));
  return true;
}

void AnswerTable::EvictLocked(int64_t now_ms) {
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (now_ms >= it->second.expires_ms) it = entries_.erase(it);
    else ++it;
  }
  // Still full: drop arbitrary entries (a dropped answer only costs one trip
  // through JavaScript, which still has it cached) down to 90 %, so the
  // sweep above runs once per tenth of the table, not on every put while a
  // flood of new names keeps it full.
  const size_t target = max_entries_ - std::max<size_t>(1, max_entries_ / 10);
  while (entries_.size() > target && !entries_.empty()) entries_.erase(entries_.begin());
}

size_t AnswerTable::Answer(const uint8_t* query, size_t qlen, uint8_t* out, int64_t now_ms, std::string* key,
                           FastKind* kind, uint16_t* qtype) {
  FastQuery q;
  if (!ParseFastQuery(query, qlen, key, &q)) return 0;
  std::shared_lock<std::shared_mutex> lock(mu_);
  auto it = entries_.find(*key);
  if (it == entries_.end()) return 0;
  const Entry& e = it->second;
  size_t len = e.response.size();
  if (now_ms >= e.expires_ms || len > q.udp_limit) return 0;
  std::memcpy(out, e.response.data(), len);
  if (e.kind == FastKind::kCached) {
    int64_t elapsed = (now_ms - e.stored_ms) / 1000;
    if (elapsed > 0) {
      for (size_t i = 0; i < e.ttl_offsets.size(); i++) {
        int64_t left = static_cast<int64_t>(e.ttls[i]) - elapsed;
        PutBe32(out + e.ttl_offsets[i], left > 0 ? static_cast<uint32_t>(left) : 0);
      }
    }
  }
  *kind = e.kind;
  lock.unlock();
  out[0] = query[0];
  out[1] = query[1];
  out[2] = static_cast<uint8_t>((out[2] & ~0x01) | (query[2] & 0x01));  // RD as asked
  std::memcpy(out + kHeader, query + kHeader, q.question_end - kHeader);  // the client's letter case
  *qtype = q.qtype;
  return len;
}

void AnswerTable::Clear(unsigned mask) {
  std::unique_lock<std::shared_mutex> lock(mu_);
  for (auto it = entries_.begin(); it != entries_.end();) {
    unsigned bit = it->second.kind == FastKind::kLocal ? 1u : 2u;
    if (mask & bit) it = entries_.erase(it);
    else ++it;
  }
}

size_t AnswerTable::Size() {
  std::shared_lock<std::shared_mutex> lock(mu_);
  return entries_.size();
}

std::optional<Failure> DnsFastEngine::Create(std::vector<std::vector<int>> sockets_per_thread, std::vector<double*> stats,
                                             FastStatsLayout layout, std::shared_ptr<AnswerTable> table, MissSink on_miss,
                                             std::unique_ptr<DnsFastEngine>* out) {
  if (sockets_per_thread.empty() || stats.size() != sockets_per_thread.size()) {
    return Failure{"dnsFast: one stats block per thread is required", "EINVAL"};
  }
  for (const auto& fds : sockets_per_thread) {
    if (fds.empty()) return Failure{"dnsFast: every thread needs at least one socket", "EINVAL"};
    for (int fd : fds) {
      int type = 0;
      socklen_t len = sizeof(type);
      if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) return ErrnoFailure("dnsFast: socket " + std::to_string(fd), errno);
      if (type != SOCK_DGRAM) return Failure{"dnsFast: fd " + std::to_string(fd) + " is not a UDP socket", "EINVAL"};
    }
  }
  int wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake < 0) return ErrnoFailure("dnsFast: eventfd", errno);
  std::unique_ptr<DnsFastEngine> engine(new DnsFastEngine());
  engine->wake_fd_ = wake;
  engine->layout_ = std::move(layout);
  engine->stats_ = std::move(stats);
  engine->table_ = std::move(table);
  engine->on_miss_ = std::move(on_miss);
  for (auto& fds : sockets_per_thread) {
    engine->socket_base_.push_back(static_cast<int>(engine->sockets_.size()));
    for (int fd : fds) {
      // Bursts from many pods' resolvers: ride them out in the kernel
      // (best effort, capped by net.core.rmem_max).
      int size = 1 << 20;
      setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
      engine->sockets_.push_back(fd);
    }
  }
  engine->thread_sockets_ = std::move(sockets_per_thread);
  for (size_t i = 0; i < engine->thread_sockets_.size(); i++) {
    engine->threads_.emplace_back([e = engine.get(), i] { e->Run(i); });
  }
  *out = std::move(engine);
  return std::nullopt;
}

DnsFastEngine::~DnsFastEngine() { Stop(); }

void DnsFastEngine::Stop() {
  if (stopped_.exchange(true)) return;
  uint64_t one = 1;
  // The eventfd is non-blocking and starts at 0: this write cannot fail short.
  if (write(wake_fd_, &one, sizeof(one)) != sizeof(one)) {
  }
  for (auto& t : threads_) t.join();
  threads_.clear();
  for (int fd : sockets_) close(fd);
  close(wake_fd_);
}

bool DnsFastEngine::Send(int socket, const sockaddr_storage& peer, socklen_t peer_len, const uint8_t* data, size_t len) {
  // Send and Stop both run on the JavaScript thread, so a socket cannot be
  // closed (and its number reused) between this check and the sendto.
  if (stopped_.load() || socket < 0 || static_cast<size_t>(socket) >= sockets_.size()) return false;
  ssize_t n = sendto(sockets_[socket], data, len, MSG_DONTWAIT, reinterpret_cast<const sockaddr*>(&peer), peer_len);
  if (n != static_cast<ssize_t>(len)) {
    dropped_++;
    return false;
  }
  return true;
}

DnsFastStats DnsFastEngine::Stats() const {
  return DnsFastStats{answered_.load(), missed_.load(), dropped_.load()};
}

void DnsFastEngine::Record(double* block, uint16_t qtype, int outcome, double seconds) const {
  const FastStatsLayout& l = layout_;
  int q = l.qtype_index[qtype];
  block[q * l.outcomes + outcome] += 1;
  double* lat = block + l.latency_base + outcome * l.latency_stride;
  size_t nb = l.bounds.size();
  for (size_t i = 0; i < nb; i++) {
    if (seconds <= l.bounds[i]) {
      lat[i] += 1;
      break;
    }
  }
  lat[nb] += seconds;
  lat[nb + 1] += 1;
}

void DnsFastEngine::Run(size_t thread_index) {
  const std::vector<int>& fds = thread_sockets_[thread_index];
  double* block = stats_[thread_index];
  std::vector<uint8_t> in(static_cast<size_t>(kBatch) * kMaxQuery);
  std::vector<uint8_t> out(static_cast<size_t>(kBatch) * kFastMaxAnswer);
  mmsghdr rmsgs[kBatch];
  iovec riov[kBatch];
  sockaddr_storage peers[kBatch];
  mmsghdr smsgs[kBatch];
  iovec siov[kBatch];
  FastKind kinds[kBatch];
  uint16_t qtypes[kBatch];
  std::string key;
  key.reserve(300);

  std::vector<pollfd> pfds;
  for (int fd : fds) pfds.push_back(pollfd{fd, POLLIN, 0});
  pfds.push_back(pollfd{wake_fd_, POLLIN, 0});

  while (!stopped_.load(std::memory_order_relaxed)) {
    int r = poll(pfds.data(), pfds.size(), -1);
    if (r < 0) {
      if (errno == EINTR) continue;
      break;  // cannot happen with valid fds; leaving beats spinning
    }
    if (pfds.back().revents) break;
    for (size_t s = 0; s < fds.size(); s++) {
      if (!(pfds[s].revents & (POLLIN | POLLERR))) continue;
      int fd = fds[s];
      int socket_index = socket_base_[thread_index] + static_cast<int>(s);
      for (int round = 0; round < kRoundsPerWake; round++) {
        for (int k = 0; k < kBatch; k++) {
          riov[k] = iovec{in.data() + static_cast<size_t>(k) * kMaxQuery, kMaxQuery};
          std::memset(&rmsgs[k], 0, sizeof(rmsgs[k]));
          rmsgs[k].msg_hdr.msg_name = &peers[k];
          rmsgs[k].msg_hdr.msg_namelen = sizeof(peers[k]);
          rmsgs[k].msg_hdr.msg_iov = &riov[k];
          rmsgs[k].msg_hdr.msg_iovlen = 1;
        }
        int got = recvmmsg(fd, rmsgs, kBatch, MSG_DONTWAIT, nullptr);
        if (got <= 0) {
          if (got < 0 && errno == EINTR) continue;
          break;  // EAGAIN: drained; anything else (an ICMP error report) is per packet
        }
        auto t0 = std::chrono::steady_clock::now();
        const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(t0.time_since_epoch()).count();
        int nsend = 0;
        for (int k = 0; k < got; k++) {
          const uint8_t* pkt = in.data() + static_cast<size_t>(k) * kMaxQuery;
          size_t len = rmsgs[k].msg_len;
          if (rmsgs[k].msg_hdr.msg_flags & MSG_TRUNC) {
            Record(block, 0xFFFF, layout_.malformed_outcome, 0);
            continue;
          }
          uint8_t* dst = out.data() + static_cast<size_t>(nsend) * kFastMaxAnswer;
          size_t alen = table_->Answer(pkt, len, dst, now_ms, &key, &kinds[nsend], &qtypes[nsend]);
          if (alen > 0) {
            siov[nsend] = iovec{dst, alen};
            std::memset(&smsgs[nsend], 0, sizeof(smsgs[nsend]));
            smsgs[nsend].msg_hdr.msg_name = &peers[k];
            smsgs[nsend].msg_hdr.msg_namelen = rmsgs[k].msg_hdr.msg_namelen;
            smsgs[nsend].msg_hdr.msg_iov = &siov[nsend];
            smsgs[nsend].msg_hdr.msg_iovlen = 1;
            nsend++;
            continue;
          }
          auto miss = std::make_unique<FastMiss>();
          miss->socket = socket_index;
          miss->peer = peers[k];
          miss->peer_len = rmsgs[k].msg_hdr.msg_namelen;
          miss->packet.assign(reinterpret_cast<const char*>(pkt), len);
          if (on_miss_(std::move(miss))) missed_++;
          else dropped_++;
        }
        // Counted before sending, as the JavaScript server does: once a
        // client holds its answer, the counters already include it.
        double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        for (int k = 0; k < nsend; k++) {
          Record(block, qtypes[k], kinds[k] == FastKind::kLocal ? layout_.local_outcome : layout_.cached_outcome, seconds);
        }
        answered_ += nsend;
        int sent = 0;
        while (sent < nsend) {
          int n = sendmmsg(fd, smsgs + sent, nsend - sent, MSG_DONTWAIT);
          if (n < 0) {
            if (errno == EINTR) continue;
            dropped_ += nsend - sent;  // socket buffer full: dropped, like any UDP answer
            break;
          }
          sent += n;
        }
        if (got < kBatch) break;
      }
    }
  }
}

}  // namespace weir
