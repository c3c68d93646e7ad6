// The upstream side of the native HTTP/1.1 path: pick an endpoint per
// request (LEAST_REQUEST from the process's cluster table, cluster_table.h;
// endpoints a retry already tried are skipped while others remain), take
// an idle keep-alive connection to it or dial a new one, parse and relay
// the response, and apply the retry rules the JS chain has: connect
// failures and 503s retried on another endpoint while the route's budget
// lasts (Istio's default: 2 outbound, none inbound), and one retry on a
// fresh connection when a reused one closed before any response byte
// (Envoy's "503 UC" race with an app's shorter keep-alive).
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "h1_conn.h"
#include "h1_headers.h"
#include "../cluster_table.h"

namespace weir {
namespace h1 {

Up* Engine::TakePooled(const std::string& key) {
  auto it = pool_.find(key);
  if (it == pool_.end()) return nullptr;
  while (!it->second.empty()) {
    Up* u = it->second.back();
    it->second.pop_back();
    if (!u->dead && !u->io.eof && !u->io.failed) return u;
  }
  return nullptr;
}

bool PickEndpoint(Exchange* ex, const std::string& dst_ip, Endpoint* picked, const Endpoint** ep) {
  *ep = &ex->direct;
  if (ex->route < 0) return true;
  const Route& r = ex->cfg->routes[ex->route];
  if (r.headless) {
    // Headless: the pod the client resolved and dialled, if it is one of the service's (no balancing).
    for (const Endpoint& e : r.endpoints)
      if (e.ip == dst_ip) *ep = &e;
    return *ep != &ex->direct;
  }
  // LEAST_REQUEST over the cluster table's endpoints (cluster_table.h: shared with the L4 path, in-flight
  // counts kept across registry pushes); endpoints this request already tried are skipped while others remain.
  if (!ex->cluster) ex->cluster = GlobalClusterTable().Find(r.cluster);
  int i = ex->cluster ? ex->cluster->Pick(ex->tried_mask) : -1;
  if (i < 0 && ex->cluster) i = ex->cluster->Pick(0);
  if (i < 0) return false;
  if (i < 64) ex->tried_mask |= uint64_t{1} << i;
  const ClusterEndpoint& ce = ex->cluster->endpoint(static_cast<size_t>(i));
  picked->ip = ce.ip;
  picked->port = ce.port;
  picked->addr = ce.addr;
  picked->addr_len = ce.addr_len;
  picked->key = ce.ip.find(':') != std::string::npos ? "[" + ce.ip + "]:" + std::to_string(ce.port) : ce.ip + ":" + std::to_string(ce.port);
  ex->lease = Acquire(*ex->cluster, i);
  *ep = picked;
  return true;
}

void Engine::Attempt(Down* d, bool fresh_only) {
  Exchange* ex = d->ex.get();
  const Config& c = *ex->cfg;
  const Endpoint* ep = &ex->direct;
  Endpoint picked;
  if (!PickEndpoint(ex, d->dst_ip, &picked, &ep)) {
    LocalReply(d, 503, "UH", "no healthy upstream", false);
    return;
  }
  ex->endpoint = ep->key;
  ex->attempts++;
  Up* u = fresh_only ? nullptr : TakePooled(ep->key);
  if (u) {
    counters_.upstream_reused++;
    u->owner = d;
    u->reused = true;
    u->got_bytes = false;
    u->deadline = 0;
    ex->up = u;
    u->io.out = ex->sent;
    u->io.out_off = 0;
    FlushUp(u);
    return;
  }
  int fd = OpenUpstreamSocket(*ep, d->inbound, c);
  if (fd < 0) {
    LocalReply(d, 503, "UF", "upstream connect error or disconnect/reset before headers. reset reason: connection failure", false);
    return;
  }
  auto owned = std::make_unique<Up>();
  u = owned.get();
  u->io.fd = fd;
  u->key = ep->key;
  u->owner = d;
  u->deadline = NowMs() + c.connect_timeout_ms;
  ups_.emplace(u, std::move(owned));
  ex->up = u;
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.ptr = &u->handle;
  epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev);
  int r = connect(fd, reinterpret_cast<const sockaddr*>(&ep->addr), ep->addr_len);
  if (r == 0) UpConnected(u);
  else if (errno != EINPROGRESS) UpFailed(u, std::strerror(errno), true);
}

void Engine::UpEvent(Up* u, uint32_t ev) {
  if (u->connecting) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(u->io.fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) { UpFailed(u, std::strerror(err), true); return; }
    if (!(ev & EPOLLOUT)) return;
    UpConnected(u);
    return;
  }
  if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) u->io.readable = true;
  if (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) u->io.rdhup = true;
  if (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR)) u->io.writable = true;
  if (!u->owner) {
    // Idle in the pool: readable means the server closed it (or sent what it must not): it is gone.
    // (A late EPOLLOUT edge — ACKs freeing send buffer — means nothing.)
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) CloseUp(u);
    return;
  }
  Down* d = u->owner;
  if (d->phase == Down::Phase::kTunnel) {
    // Upstream → client, flushed as it goes (see the client side in h1_down.cc).
    for (;;) {
      if (d->io.OutLen() >= kHighWater) FlushDown(d);
      if (d->dead || u->dead) return;
      if (d->io.OutLen() >= kHighWater) break;
      u->io.ReadSome(kHighWater);
      if (u->io.InLen() == 0) break;
      d->io.out.append(u->io.InPtr(), u->io.InLen());
      u->io.Consume(u->io.InLen());
    }
    bool end = u->io.eof || u->io.failed;
    FlushDown(d);
    if (d->dead) return;
    if (end) {
      d->ex->up = nullptr;
      CloseUp(u);
      d->phase = Down::Phase::kClosing;
      FlushDown(d);
      return;
    }
    FlushUp(u);
    if (!d->dead && !u->dead) Advance(d);  // the upstream may have drained: the client side goes on
    return;
  }
  FlushUp(u);
  if (u->dead || d->dead) return;
  ProcessResponse(d);
  if (!d->dead && d->ex && d->ex->up == u) ForwardRequestBody(d);
}

void Engine::UpConnected(Up* u) {
  u->connecting = false;
  u->deadline = 0;
  counters_.upstream_connects++;
  Down* d = u->owner;
  u->io.out = d->ex->sent;
  u->io.out_off = 0;
  FlushUp(u);
  if (!u->dead && !d->dead) ForwardRequestBody(d);
}

void Engine::FlushUp(Up* u) {
  if (u->dead || u->connecting) return;
  if (!u->io.WriteSome() && u->owner) {
    // A write error before any response: the same as a reset before the response.
    UpFailed(u, std::strerror(u->io.error), true);
  }
}

void Engine::UpFailed(Up* u, const char* why, bool) {
  Down* d = u->owner;
  Exchange* ex = d ? d->ex.get() : nullptr;
  bool connect_failure = u->connecting;
  bool reused = u->reused;
  bool got = u->got_bytes;
  if (ex && ex->up == u) {
    ex->up = nullptr;
    ex->lease.Release();
  }
  CloseUp(u);
  if (!ex || d->dead) return;
  if (got || ex->resp_started) {
    // The response broke off half-way: nothing to answer with, the client connection goes too.
    ex->flags = "UPE";
    CloseDown(d);
    return;
  }
  if (connect_failure) {
    if (ex->retries_left > 0 && ex->replayable) {
      ex->retries_left--;
      counters_.retries++;
      Attempt(d, false);
      return;
    }
    LocalReply(d, 503, ex->attempts > 1 ? "URX,UF" : "UF",
               std::string("upstream connect error or disconnect/reset before headers. reset reason: connection failure, transport failure reason: ") + why, false);
    return;
  }
  if (reused && !ex->fresh_retry_used && ex->replayable) {
    ex->fresh_retry_used = true;
    counters_.retries++;
    ex->tried_mask = 0;  // the same endpoint may be picked again: the connection was at fault, not the endpoint
    Attempt(d, true);
    return;
  }
  LocalReply(d, 503, "UC", "upstream connect error or disconnect/reset before headers. reset reason: connection termination", false);
}

void Engine::ProcessResponse(Down* d) {
  Exchange* ex = d->ex.get();
  while (!d->dead && ex && ex->up && !ex->up->connecting) {
    Up* u = ex->up;
    if (d->io.OutLen() >= kHighWater) FlushDown(d);  // edge-triggered: flush here, not on an event that may not come
    if (d->dead || ex->up != u) return;
    if (d->io.OutLen() >= kHighWater) return;  // the client is slow: read on once it drained
    if (u->io.InLen() == 0) u->io.ReadSome(kHighWater);
    if (u->io.InLen() > 0) u->got_bytes = true;
    if (!ex->resp_head_done) {
      if (u->io.InLen() == 0) {
        if (u->io.eof || u->io.failed) UpFailed(u, "connection closed", true);
        return;
      }
      Head h;
      std::string why;
      ParseStatus st = ParseHead(u->io.InPtr(), u->io.InLen(), false, kMaxResponseHead, &h, &why);
      if (st == ParseStatus::kIncomplete) {
        if (u->io.eof || u->io.failed) UpFailed(u, "connection closed", true);
        return;
      }
      if (st != ParseStatus::kDone || !ResponseFraming(h, ex->head_request, &ex->resp_framing)) {
        ex->up = nullptr;
        ex->lease.Release();
        CloseUp(u);
        LocalReply(d, 502, "UPE", "upstream sent a malformed response", false);
        return;
      }
      if (h.status < 200 && h.status != 101) {  // 100 Continue and friends: the proxy answered the client itself
        u->io.Consume(h.size);
        continue;
      }
      if (h.status == 101 && !ex->upgrade) {
        ex->up = nullptr;
        ex->lease.Release();
        CloseUp(u);
        LocalReply(d, 502, "UPE", "upstream switched protocols unasked", false);
        return;
      }
      if (h.status == 503 && ex->retries_left > 0 && ex->replayable && ex->req_done) {
        ex->up = nullptr;
        ex->lease.Release();
        CloseUp(u);
        ex->retries_left--;
        counters_.retries++;
        Attempt(d, false);
        return;
      }
      const Header* uc = Find(h, "connection");
      if (h.minor == 0 || (uc && HasToken(uc->value, "close"))) ex->up_reusable = false;
      Framing::Kind k = ex->resp_framing.kind;
      bool until_close = k == Framing::Kind::kUntilClose;
      ex->decode_chunks = k == Framing::Kind::kChunked && ex->client_10;
      if (until_close) ex->up_reusable = false;
      bool close = ex->client_close || until_close || ex->decode_chunks || !ex->req_done;
      std::string head;
      const std::string* me = d->inbound && !ex->peer_in.empty() ? &ex->cfg->peer_header : nullptr;
      BuildResponseHead(h, h.status == 101, k == Framing::Kind::kChunked && !ex->client_10, close && h.status != 101, me, &head,
                        &ex->peer_out, &ex->resp_header_bytes);
      ex->code = h.status;
      d->io.out += head;
      u->io.Consume(h.size);
      ex->resp_head_done = true;
      ex->resp_started = true;
      ex->resp_left = ex->resp_framing.length;
      if (h.status == 101) {
        // WebSocket (any Upgrade): from here on a byte tunnel both ways; the upstream connection is the tunnel's.
        counters_.tunnels++;
        ex->resp_done = true;
        Record(d, ex);
        d->phase = Down::Phase::kTunnel;
        if (u->io.InLen() > 0) {
          d->io.out.append(u->io.InPtr(), u->io.InLen());
          u->io.Consume(u->io.InLen());
        }
        FlushDown(d);
        if (!d->dead) Advance(d);
        return;
      }
      if (k == Framing::Kind::kNone) {
        ex->resp_done = true;
        FlushDown(d);
        if (!d->dead) FinishExchange(d);
        return;
      }
      continue;
    }
    size_t n = u->io.InLen();
    if (n == 0) {
      if (u->io.eof || u->io.failed) {
        if (ex->resp_framing.kind == Framing::Kind::kUntilClose && !u->io.failed) {
          ex->resp_done = true;
          ex->up = nullptr;
          ex->lease.Release();
          CloseUp(u);
          FlushDown(d);
          if (!d->dead) FinishExchange(d);
        } else {
          UpFailed(u, "connection closed mid-response", false);
        }
      }
      return;
    }
    const char* p = u->io.InPtr();
    if (ex->resp_framing.kind == Framing::Kind::kLength) {
      size_t take = static_cast<size_t>(std::min<uint64_t>(n, ex->resp_left));
      d->io.out.append(p, take);
      ex->resp_body_bytes += take;
      ex->resp_left -= take;
      u->io.Consume(take);
      if (ex->resp_left == 0) ex->resp_done = true;
    } else if (ex->resp_framing.kind == Framing::Kind::kChunked) {
      size_t used = 0;
      auto r = ex->resp_chunks.Feed(p, n, &used, [&](const char* s, size_t len) {
        ex->resp_body_bytes += len;
        if (ex->decode_chunks) d->io.out.append(s, len);
      });
      if (r == ChunkScanner::Result::kBad) {
        ex->flags = "UPE";
        CloseDown(d);
        return;
      }
      if (!ex->decode_chunks) d->io.out.append(p, used);
      u->io.Consume(used);
      if (r == ChunkScanner::Result::kDone) ex->resp_done = true;
    } else {
      d->io.out.append(p, n);
      ex->resp_body_bytes += n;
      u->io.Consume(n);
    }
    FlushDown(d);
    if (d->dead) return;
    if (ex->resp_done) {
      if (u->io.InLen() > 0) ex->up_reusable = false;  // bytes after the response: not a connection to keep
      FinishExchange(d);
      return;
    }
  }
}

void Engine::ReleaseUp(Up* u, bool reusable) {
  u->owner = nullptr;
  if (!reusable || u->io.eof || u->io.failed || u->io.InLen() > 0 || u->io.OutLen() > 0 || u->dead) {
    CloseUp(u);
    return;
  }
  u->reused = true;
  u->deadline = NowMs() + cfg_->idle_timeout_ms;
  pool_[u->key].push_back(u);
}

void Engine::CloseUp(Up* u) {
  if (u->dead) return;
  u->dead = true;
  auto pit = pool_.find(u->key);
  if (pit != pool_.end()) {
    auto& v = pit->second;
    v.erase(std::remove(v.begin(), v.end(), u), v.end());
    if (v.empty()) pool_.erase(pit);
  }
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, u->io.fd, nullptr);
  auto it = ups_.find(u);
  if (it != ups_.end()) {
    dead_ups_.push_back(std::move(it->second));
    ups_.erase(it);
  }
}

}  // namespace h1
}  // namespace weir
