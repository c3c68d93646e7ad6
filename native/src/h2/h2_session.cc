// The native HTTP/2 path's sessions: creation (nghttp2 options and
// SETTINGS of each side), socket I/O (reads fed to nghttp2, frames it
// produces written out, with the HTTP/1.1 path's high-water mark), the
// upstream session per endpoint, timers and teardown. Sessions touched by
// another session's callbacks are flushed once the event is done
// (MarkDirty), never from inside a callback.
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <cstring>

#include "h2_codec.h"

namespace weir {
namespace h2 {

Codec* CodecOf(Session* s) { return s->codec; }

std::unique_ptr<Codec> Codec::Create(h1::Engine* engine) {
  // Node's nghttp2 must be at least the header's (node does not export nghttp2_version: native-h2.ts compares
  // process.versions.nghttp2 with httpEngineNghttp2Header before it hands any h2 connection over).
  std::unique_ptr<Codec> c(new Codec(engine));
  nghttp2_session_callbacks_new(&c->down_cbs_);
  nghttp2_session_callbacks_new(&c->up_cbs_);
  InstallDownCallbacks(c->down_cbs_);
  InstallUpCallbacks(c->up_cbs_);
  nghttp2_option_new(&c->option_);
  // Windows are handed back only when the other side took the bytes (nghttp2_session_consume).
  nghttp2_option_set_no_auto_window_update(c->option_, 1);
  nghttp2_option_set_peer_max_concurrent_streams(c->option_, 100);
  // No closed-stream bookkeeping (priority only; a long-lived connection would keep thousands), and a bound on
  // queued SETTINGS/PING ACKs (a PING flood cannot grow the output queue).
  nghttp2_option_set_no_closed_streams(c->option_, 1);
  nghttp2_option_set_max_outbound_ack(c->option_, 1000);
  return c;
}

Codec::~Codec() {
  for (auto& [p, s] : sessions_) s->dead = true;  // nghttp2_session_del must not reach the callbacks' streams
  sessions_.clear();
  dead_.clear();
  dead_streams_.clear();
  if (down_cbs_) nghttp2_session_callbacks_del(down_cbs_);
  if (up_cbs_) nghttp2_session_callbacks_del(up_cbs_);
  if (option_) nghttp2_option_del(option_);
}

const h1::Config& Codec::cfg() const { return *e_->cfg_; }

namespace {
void Settings(nghttp2_session* ng, bool server) {
  nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, server ? 1000u : 100u},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, static_cast<uint32_t>(kStreamWindow)},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, static_cast<uint32_t>(kMaxHeaderList)},
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
  };
  // A server omits ENABLE_PUSH (the last entry): only a client may announce it.
  nghttp2_submit_settings(ng, NGHTTP2_FLAG_NONE, iv, server ? 3 : 4);
  nghttp2_session_set_local_window_size(ng, NGHTTP2_FLAG_NONE, 0, kConnectionWindow);
}
}  // namespace

void Codec::Adopt(h1::AdoptSpec a) {
  auto owned = std::make_unique<Session>(true);
  Session* s = owned.get();
  s->codec = this;
  s->io.fd = a.fd;
  s->inbound = a.inbound;
  s->dst_ip = a.dst_ip;
  s->dst_port = a.dst_port;
  s->peer_ip = a.peer_ip;
  s->io.in = std::move(a.initial);
  h1::PrepareAdopted(a.fd);
  if (nghttp2_session_server_new2(&s->ng, down_cbs_, s, option_) != 0) return;  // ~Session closes the fd
  Settings(s->ng, true);
  s->deadline = NowMs() + cfg().idle_timeout_ms;
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLRDHUP | EPOLLET;  // EPOLLOUT only while a write is blocked (WantWritable)
  ev.data.ptr = &s->handle;
  if (epoll_ctl(e_->epoll_fd_, EPOLL_CTL_ADD, a.fd, &ev) != 0) return;
  e_->counters_.connections++;
  e_->counters_.active_connections++;
  e_->counters_.h2_connections++;
  sessions_.emplace(s, std::move(owned));
  Pump(s);
  FlushDirty();
}

Session* Codec::UpFor(const h1::Endpoint& ep, bool inbound, bool* failed) {
  *failed = false;
  std::string key = (inbound ? "in|" : "out|") + ep.key;
  auto it = up_by_key_.find(key);
  if (it != up_by_key_.end() && !it->second->dead && !it->second->goaway) {
    e_->counters_.upstream_reused++;
    return it->second;
  }
  const h1::Config& c = cfg();
  int fd = h1::OpenUpstreamSocket(ep, inbound, c);
  if (fd < 0) { *failed = true; return nullptr; }
  auto owned = std::make_unique<Session>(false);
  Session* u = owned.get();
  u->codec = this;
  u->io.fd = fd;
  u->key = key;
  u->connecting = true;
  u->out_armed = true;  // EPOLLOUT says the connect finished
  u->deadline = NowMs() + c.connect_timeout_ms;
  if (nghttp2_session_client_new2(&u->ng, up_cbs_, u, option_) != 0) { *failed = true; return nullptr; }
  Settings(u->ng, false);
  sessions_.emplace(u, std::move(owned));
  up_by_key_[key] = u;
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.ptr = &u->handle;
  epoll_ctl(e_->epoll_fd_, EPOLL_CTL_ADD, fd, &ev);
  int r = connect(fd, reinterpret_cast<const sockaddr*>(&ep.addr), ep.addr_len);
  if (r == 0) UpConnected(u);
  else if (errno != EINPROGRESS) MarkDirty(u);  // the connect error surfaces on the first event (SO_ERROR)
  return u;
}

// Edge-triggered EPOLLOUT is asked for only while bytes wait for send buffer room: otherwise every ACK that frees
// room would wake the loop for nothing (a request-sized exchange would cost extra wake-ups per hop).
void Codec::WantWritable(Session* s, bool on) {
  if (s->out_armed == on || s->dead) return;
  s->out_armed = on;
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLRDHUP | EPOLLET | (on ? static_cast<uint32_t>(EPOLLOUT) : 0u);
  ev.data.ptr = &s->handle;
  epoll_ctl(e_->epoll_fd_, EPOLL_CTL_MOD, s->io.fd, &ev);
}

void Codec::UpConnected(Session* u) {
  u->connecting = false;
  WantWritable(u, false);
  u->deadline = 0;
  e_->counters_.upstream_connects++;
  MarkDirty(u);
}

void Codec::Event(h1::Engine::Handle* h, uint32_t ev) {
  Session* s = static_cast<Session*>(h->ptr);
  if (s->dead) return;
  if (s->connecting) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(s->io.fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0 || (ev & (EPOLLERR | EPOLLHUP))) { UpFailed(s, true); FlushDirty(); return; }
    if (!(ev & EPOLLOUT)) return;
    UpConnected(s);
  }
  if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) s->io.readable = true;
  if (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) s->io.rdhup = true;
  if (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR)) s->io.writable = true;
  Pump(s);
  FlushDirty();
}

void Codec::Pump(Session* s) {
  while (!s->dead) {
    if (s->io.InLen() == 0) s->io.ReadSome(256 * 1024);
    if (s->io.InLen() > 0) {
      ssize_t n = nghttp2_session_mem_recv(s->ng, reinterpret_cast<const uint8_t*>(s->io.InPtr()), s->io.InLen());
      if (s->dead) return;
      if (n < 0) {
        // A protocol error (bad preface, oversized frame, ...): nghttp2 queued a GOAWAY where it could; send it, then close.
        Flush(s);
        if (!s->dead) { if (s->server) Close(s); else UpFailed(s, false); }
        return;
      }
      s->io.Consume(static_cast<size_t>(n));
      continue;
    }
    break;
  }
  if (s->dead) return;
  Flush(s);
  if (s->dead) return;
  if (s->io.eof || s->io.failed) {
    // HTTP/2 has no half-closed connections: a peer that closed its side is gone (as the JS chain).
    if (s->server) Close(s);
    else UpFailed(s, false);
  }
}

void Codec::Flush(Session* s) {
  if (s->dead || s->connecting) return;
  for (;;) {
    while (s->io.OutLen() < h1::kHighWater) {
      const uint8_t* data = nullptr;
      ssize_t n = nghttp2_session_mem_send(s->ng, &data);
      if (s->dead) return;
      if (n < 0) { if (s->server) Close(s); else UpFailed(s, false); return; }
      if (n == 0) break;
      s->io.out.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
    }
    if (!s->io.WriteSome()) { if (s->server) Close(s); else UpFailed(s, false); return; }
    if (!(s->io.writable && s->io.OutLen() == 0 && nghttp2_session_want_write(s->ng))) break;
  }
  // Blocked: wake on room (re-arming an edge-triggered fd reports it at once if room came meanwhile). Drained: stop.
  if (s->io.OutLen() > 0) {
    s->io.writable = false;
    WantWritable(s, true);
  } else {
    WantWritable(s, false);
  }
  if (s->io.OutLen() == 0 && !nghttp2_session_want_read(s->ng) && !nghttp2_session_want_write(s->ng)) {
    // GOAWAY both ways and no stream left (drain, rapid-reset guard, protocol error): the connection is done.
    if (s->server) Close(s);
    else UpFailed(s, false);
  }
}

void Codec::MarkDirty(Session* s) {
  if (s->dirty || s->dead) return;
  s->dirty = true;
  dirty_.push_back(s);
}

void Codec::FlushDirty() {
  while (!dirty_.empty()) {
    Session* s = dirty_.back();
    dirty_.pop_back();
    s->dirty = false;
    if (s->dead) continue;
    if (s->connecting && s->io.fd >= 0) {
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(s->io.fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) UpFailed(s, true);
      continue;
    }
    Flush(s);
  }
}

void Codec::Close(Session* s) {
  if (s->dead) return;
  s->dead = true;
  epoll_ctl(e_->epoll_fd_, EPOLL_CTL_DEL, s->io.fd, nullptr);
  if (s->server) {
    e_->counters_.active_connections--;
    for (auto& [id, st] : s->streams) {
      if (st->up) Detach(st.get(), true);
      if (!st->recorded) {
        st->recorded = true;
        if (st->ex.flags == "-") st->ex.flags = "DC";
        e_->Record(s->inbound, s->peer_ip, &st->ex);
      }
      st->ex.lease.Release();
    }
  } else {
    auto it = up_by_key_.find(s->key);
    if (it != up_by_key_.end() && it->second == s) up_by_key_.erase(it);
  }
  auto it = sessions_.find(s);
  if (it != sessions_.end()) {
    dead_.push_back(std::move(it->second));
    sessions_.erase(it);
  }
}

void Codec::Reap() {
  dead_.clear();  // sessions first: nghttp2_session_del may still name streams' user data (never dereferenced: dead)
  dead_streams_.clear();
}

void Codec::Sweep(int64_t now) {
  std::vector<Session*> idle;
  std::vector<Stream*> late;
  for (auto& [p, s] : sessions_) {
    if (s->dead) continue;
    if (s->connecting && now >= s->deadline) idle.push_back(s.get());
    else if (s->server && s->streams.empty() && s->deadline > 0 && now >= s->deadline) idle.push_back(s.get());
    else if (!s->server && !s->connecting && s->up_streams.empty() && s->deadline > 0 && now >= s->deadline) idle.push_back(s.get());
    if (s->server)
      for (auto& [id, st] : s->streams)
        if (st->deadline > 0 && now >= st->deadline) late.push_back(st.get());
  }
  for (Stream* st : late) {
    // grpc-timeout passed: the upstream stream is cancelled and the client gets DEADLINE_EXCEEDED (504 UT mapped, as the JS chain).
    st->deadline = 0;
    if (st->up) Detach(st, true);
    if (st->resp_submitted) ResetDown(st, NGHTTP2_CANCEL);
    else LocalReply(st, 504, "UT", "upstream request timeout");
  }
  for (Session* s : idle) {
    if (s->dead) continue;
    if (s->connecting) UpFailed(s, true);
    else if (s->server) {
      nghttp2_session_terminate_session(s->ng, NGHTTP2_NO_ERROR);  // keep-alive idle: GOAWAY, then close
      MarkDirty(s);
    } else Close(s);
  }
  FlushDirty();
}

void Codec::Drain() {
  for (auto& [p, s] : sessions_) {
    if (s->dead) continue;
    if (s->server) {
      // GOAWAY naming the last stream: those in flight finish, the client opens no more here.
      nghttp2_submit_goaway(s->ng, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(s->ng), NGHTTP2_NO_ERROR, nullptr, 0);
      MarkDirty(s.get());
    } else if (s->up_streams.empty()) {
      s->deadline = 1;  // closed by the next sweep
    }
  }
  FlushDirty();
}

void Codec::Resume(Session* s, int32_t id, Pipe* p) {
  if (!p->deferred || !s || s->dead) return;
  p->deferred = false;
  nghttp2_session_resume_data(s->ng, id);
  MarkDirty(s);
}

}  // namespace h2
}  // namespace weir
