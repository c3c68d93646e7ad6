// The client side of the native HTTP/1.1 path: read and parse a request
// head, route it (Host + port → route, else the original destination),
// stream its body to the upstream attempt (kept for a replay while it fits
// in 64 KiB), write the response back, then keep the connection for the
// next request or close it. One request at a time per connection: bytes
// of a pipelined next request wait in the buffer until this one is done.
#include <sys/epoll.h>
#include <sys/socket.h>

#include <cstdio>
#include <cstdlib>

#include "h1_conn.h"
#include "h1_headers.h"

namespace weir {
namespace h1 {
namespace {

// "Host:port", "[v6]:port" → lower-cased host (trailing dot dropped) and port (0 = none).
void SplitAuthority(const std::string& a, std::string* host, int* port) {
  std::string s;
  for (char c : a) s += (c >= 'A' && c <= 'Z') ? static_cast<char>(c | 0x20) : c;
  *port = 0;
  auto digits = [](const std::string& p) {
    if (p.empty() || p.size() > 5) return -1;
    int v = 0;
    for (char c : p) {
      if (c < '0' || c > '9') return -1;
      v = v * 10 + (c - '0');
    }
    return v;
  };
  if (!s.empty() && s[0] == '[') {
    size_t end = s.find(']');
    *host = s.substr(1, end == std::string::npos ? std::string::npos : end - 1);
    if (end != std::string::npos && end + 1 < s.size() && s[end + 1] == ':') *port = std::max(0, digits(s.substr(end + 2)));
    return;
  }
  size_t colon = s.rfind(':');
  if (colon != std::string::npos && s.find(':') == colon) {
    int p = digits(s.substr(colon + 1));
    if (p >= 0) *port = p;
    s = s.substr(0, colon);
  } else if (colon != std::string::npos) {
    *host = s;  // bare IPv6
    return;
  }
  if (!s.empty() && s.back() == '.') s.pop_back();
  *host = s;
}

}  // namespace

void RouteExchange(const Config& c, bool inbound, const std::string& dst_ip, int dst_port, const std::string* host, Exchange* ex) {
  ex->dst_key = dst_ip.find(':') != std::string::npos ? "[" + dst_ip + "]:" + std::to_string(dst_port) : dst_ip + ":" + std::to_string(dst_port);
  if (inbound) {
    // To the app on the dialled port, from 127.0.0.6 (the inbound hand-off).
    ex->direct.ip = dst_ip.find(':') != std::string::npos ? "::1" : "127.0.0.1";
    ex->direct.port = dst_port;
    ResolveEndpoint(&ex->direct);
    ex->retries_left = 0;
    return;
  }
  std::string hostname;
  int port = 0;
  SplitAuthority(host ? *host : ex->dst_key, &hostname, &port);
  auto it = c.hosts.find(hostname + "|" + std::to_string(port ? port : dst_port));
  if (it != c.hosts.end() && it->second >= 0 && static_cast<size_t>(it->second) < c.routes.size()) {
    ex->route = it->second;
    ex->retries_left = c.routes[ex->route].retries;
    ex->mesh_peer = c.routes[ex->route].mesh_peer;
    return;
  }
  // Unknown host: on to the original destination, still as HTTP (Istio's PassthroughCluster).
  ex->direct.ip = dst_ip;
  ex->direct.port = dst_port;
  ResolveEndpoint(&ex->direct);
  ex->retries_left = c.passthrough_retries;
  ex->mesh_peer = c.mesh_pods.count(dst_ip) != 0;
  ex->authority = host ? *host : std::string();
  for (char& ch : ex->authority)
    if (ch == '|') ch = '_';  // the series key's separator
}

void Engine::DownEvent(Down* d, uint32_t ev) {
  if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) d->io.readable = true;
  if (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) d->io.rdhup = true;
  if (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR)) d->io.writable = true;
  FlushDown(d);
  if (d->dead) return;
  if (d->phase == Down::Phase::kExchange && d->ex && d->ex->up && !d->ex->up->connecting) ProcessResponse(d);
  if (d->dead) return;
  Advance(d);
}

void Engine::FlushDown(Down* d) {
  if (d->dead) return;
  if (!d->io.WriteSome()) {
    if (d->ex) d->ex->flags = d->ex->resp_started ? "DC" : d->ex->flags;
    CloseDown(d);
    return;
  }
  if (d->phase == Down::Phase::kClosing && d->io.OutLen() == 0) {
    shutdown(d->io.fd, SHUT_WR);
    CloseDown(d);
  }
}

void Engine::Advance(Down* d) {
  while (!d->dead) {
    if (d->phase == Down::Phase::kHead) {
      if (d->io.InLen() <= kMaxRequestHead) d->io.ReadSome(kMaxRequestHead + 1);
      if (d->io.failed) { CloseDown(d); return; }
      if (d->io.InLen() == 0) {
        if (d->io.eof) CloseDown(d);
        return;
      }
      Head head;
      std::string why;
      ParseStatus st = ParseHead(d->io.InPtr(), d->io.InLen(), true, kMaxRequestHead, &head, &why);
      if (st == ParseStatus::kIncomplete) {
        if (d->io.eof) CloseDown(d);
        return;
      }
      if (st == ParseStatus::kTooLarge || st == ParseStatus::kBad) {
        counters_.rejected++;
        LocalReply(d, st == ParseStatus::kTooLarge ? 431 : 400, "-", st == ParseStatus::kTooLarge ? "Request Header Fields Too Large" : "Bad Request", true);
        return;
      }
      if (!StartRequest(d, head)) return;
      d->io.Consume(head.size);
      if (d->io.OutLen() > 0) FlushDown(d);  // 100 Continue
      if (d->dead) return;
      Attempt(d, false);
      continue;
    }
    if (d->phase == Down::Phase::kExchange) {
      ForwardRequestBody(d);
      return;
    }
    if (d->phase == Down::Phase::kTunnel) {
      Up* u = d->ex ? d->ex->up : nullptr;
      if (!u) { CloseDown(d); return; }
      // Client → upstream until the client's socket is drained or the upstream pushes back (flushed first).
      for (;;) {
        if (u->io.OutLen() >= kHighWater) FlushUp(u);
        if (d->dead || u->dead) return;
        if (u->io.OutLen() >= kHighWater) break;
        d->io.ReadSome(kHighWater);
        if (d->io.InLen() == 0) break;
        u->io.out.append(d->io.InPtr(), d->io.InLen());
        d->io.Consume(d->io.InLen());
      }
      FlushUp(u);
      if (d->dead || u->dead) return;
      if (d->io.eof || d->io.failed) {
        // One side is done: what is queued goes out, then both close (no half-open tunnels).
        u->io.WriteSome();
        CloseUp(u);
        d->ex->up = nullptr;
        CloseDown(d);
      }
      return;
    }
    return;  // kClosing: waiting for the flush
  }
}

bool Engine::StartRequest(Down* d, const Head& h) {
  auto ex = std::make_unique<Exchange>();
  ex->cfg = cfg_;
  const Config& c = *cfg_;
  ex->t0 = NowMsPrecise();
  std::string why;
  if (!RequestFraming(h, &ex->req_framing, &why)) {
    counters_.rejected++;
    LocalReply(d, 400, "-", "Bad Request", true);
    return false;
  }
  ex->client_10 = h.minor == 0;
  ex->head_request = IEquals(h.method, "HEAD");
  const Header* conn = Find(h, "connection");
  ex->client_close = ex->client_10 || (conn && HasToken(conn->value, "close"));
  ex->upgrade = !ex->client_10 && conn && HasToken(conn->value, "upgrade") && Find(h, "upgrade") != nullptr;
  const Header* host = Find(h, "host");
  std::string host_value = host ? std::string(host->value) : std::string();
  RouteExchange(c, d->inbound, d->dst_ip, d->dst_port, host ? &host_value : nullptr, ex.get());
  const std::string& fallback = ex->dst_key;
  RequestFacts facts;
  BuildRequestHead(h, c, ex->mesh_peer, ex->req_framing.kind == Framing::Kind::kChunked, ex->upgrade, fallback, &ex->head, &facts);
  ex->req_header_bytes = facts.header_bytes;
  ex->peer_in = facts.peer_in;
  ex->sent = ex->head;
  ex->req_left = ex->req_framing.length;
  ex->req_done = ex->req_framing.kind == Framing::Kind::kNone;
  const Header* expect = Find(h, "expect");
  if (expect && HasToken(expect->value, "100-continue") && !ex->client_10 && !ex->req_done) {
    // As Node's server does for the JS chain: the proxy itself tells the client to send the body.
    d->io.out += "HTTP/1.1 100 Continue\r\n\r\n";
  }
  d->ex = std::move(ex);
  d->phase = Down::Phase::kExchange;
  d->deadline = 0;
  return true;
}

void Engine::ForwardRequestBody(Down* d) {
  Exchange* ex = d->ex.get();
  while (!d->dead && ex && !ex->req_done) {
    Up* u = ex->up;
    bool connected = u && !u->connecting;
    size_t room;
    if (connected) {
      // Edge-triggered: a full buffer is flushed here, not left for an event that will not come
      // (the client's socket was not drained to EAGAIN and the upstream may already be writable).
      if (u->io.OutLen() >= kHighWater) FlushUp(u);
      if (u->dead || d->dead || ex->up != u) return;
      if (u->io.OutLen() >= kHighWater) break;
      room = kHighWater;
    } else {
      // Not connected yet: the body waits in the replay buffer, as far as it fits.
      if (!ex->replayable || ex->sent.size() >= ex->head.size() + kReplayLimit) break;
      room = ex->head.size() + kReplayLimit - ex->sent.size();
    }
    if (d->io.InLen() == 0) d->io.ReadSome(kHighWater);
    if (d->io.InLen() == 0) {
      if (d->io.eof || d->io.failed) {
        ex->flags = "DC";  // the client left mid-request
        CloseDown(d);
      }
      break;
    }
    size_t n = std::min(d->io.InLen(), room);
    const char* p = d->io.InPtr();
    size_t used = n;
    if (ex->req_framing.kind == Framing::Kind::kLength) {
      used = static_cast<size_t>(std::min<uint64_t>(n, ex->req_left));
      ex->req_left -= used;
      ex->req_body_bytes += used;
      if (ex->req_left == 0) ex->req_done = true;
    } else {
      auto r = ex->req_chunks.Feed(p, n, &used, [&](const char*, size_t len) { ex->req_body_bytes += len; });
      if (r == ChunkScanner::Result::kBad) {
        counters_.rejected++;
        if (ex->up) { CloseUp(ex->up); ex->up = nullptr; ex->lease.Release(); }
        if (ex->resp_started) CloseDown(d);
        else LocalReply(d, 400, "-", "Bad Request", true);
        return;
      }
      if (r == ChunkScanner::Result::kDone) ex->req_done = true;
    }
    if (ex->replayable) {
      if (ex->sent.size() + used <= ex->head.size() + kReplayLimit) ex->sent.append(p, used);
      else { ex->replayable = false; ex->sent.clear(); ex->sent.shrink_to_fit(); }
    }
    if (connected) u->io.out.append(p, used);
    d->io.Consume(used);
  }
  if (!d->dead && ex && ex->up && !ex->up->connecting) FlushUp(ex->up);
}

void Engine::LocalReply(Down* d, int code, const char* flags, const std::string& body, bool close) {
  Exchange* ex = d->ex.get();
  if (ex && !ex->req_done) close = true;
  if (ex && ex->client_close) close = true;
  d->io.out += LocalResponse(code, body, close);
  if (ex) {
    ex->code = code;
    ex->flags = flags;
    ex->resp_header_bytes = 0;
    ex->resp_body_bytes = body.size();
    Record(d, ex);
    d->ex.reset();
  }
  d->phase = close ? Down::Phase::kClosing : Down::Phase::kHead;
  d->deadline = NowMs() + cfg_->idle_timeout_ms;
  FlushDown(d);
}

void Engine::FinishExchange(Down* d) {
  Exchange* ex = d->ex.get();
  Record(d, ex);
  bool keep = !ex->client_close && ex->req_done && !ex->decode_chunks && ex->resp_framing.kind != Framing::Kind::kUntilClose;
  if (ex->up) {
    Up* u = ex->up;
    ex->up = nullptr;
    ex->lease.Release();
    ReleaseUp(u, ex->up_reusable && ex->req_done);
  }
  d->ex.reset();
  if (!keep) {
    d->phase = Down::Phase::kClosing;
    FlushDown(d);
    return;
  }
  d->phase = Down::Phase::kHead;
  d->deadline = NowMs() + cfg_->idle_timeout_ms;
  FlushDown(d);
  if (!d->dead) Advance(d);  // a pipelined request, or the FIN of a client that half-closed after its request
}

void Engine::CloseDown(Down* d) {
  if (d->dead) return;
  d->dead = true;
  if (Exchange* ex = d->ex.get()) {
    if (ex->up) {
      ex->lease.Release();
      CloseUp(ex->up);
      ex->up = nullptr;
    }
    if (!ex->resp_done && d->phase != Down::Phase::kTunnel) {
      if (ex->flags == "-") ex->flags = "DC";
      Record(d, ex);
    }
  }
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, d->io.fd, nullptr);
  counters_.active_connections--;
  auto it = downs_.find(d->id);
  if (it != downs_.end()) {
    dead_downs_.push_back(std::move(it->second));
    downs_.erase(it);
  }
}

}  // namespace h1
}  // namespace weir
