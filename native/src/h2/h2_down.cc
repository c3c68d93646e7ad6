// The client side of the native HTTP/2 path: nghttp2 server callbacks.
// A request's HEADERS start an Exchange (routed as on the HTTP/1.1 path),
// its DATA go into the stream's request pipe for the upstream session to
// take, and the upstream's response is submitted back with a data provider
// reading the response pipe. Cancellation both ways (a client RST_STREAM
// cancels the upstream stream), the rapid-reset guard, grpc-timeout, and
// the telemetry record when the client's stream closes.
#include <cstring>

#include "h2_codec.h"

namespace weir {
namespace h2 {
namespace {

Session* S(void* user_data) { return static_cast<Session*>(user_data); }

Stream* StreamOf(Session* s, int32_t id) {
  return static_cast<Stream*>(nghttp2_session_get_stream_user_data(s->ng, id));
}

int OnBeginHeaders(nghttp2_session* ng, const nghttp2_frame* f, void* ud) {
  Session* s = S(ud);
  if (s->dead || f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  auto st = std::make_unique<Stream>();
  st->down = s;
  st->id = f->hd.stream_id;
  nghttp2_session_set_stream_user_data(ng, st->id, st.get());
  s->streams[st->id] = std::move(st);
  s->opened++;
  return 0;
}

int OnHeader(nghttp2_session*, const nghttp2_frame* f, const uint8_t* name, size_t nlen, const uint8_t* value, size_t vlen, uint8_t, void* ud) {
  Session* s = S(ud);
  if (s->dead) return 0;
  Stream* st = StreamOf(s, f->hd.stream_id);
  if (!st) return 0;
  st->header_bytes += nlen + vlen + 4;
  if (st->header_bytes > kMaxHeaderList) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  // the stream is reset
  std::string n(reinterpret_cast<const char*>(name), nlen), v(reinterpret_cast<const char*>(value), vlen);
  if (f->headers.cat != NGHTTP2_HCAT_REQUEST) {
    st->req.trailers.emplace_back(std::move(n), std::move(v));
    return 0;
  }
  if (n == ":method") st->method = std::move(v);
  else if (n == ":path") st->path = std::move(v);
  else if (n == ":authority") st->authority = std::move(v);
  else if (n[0] != ':') st->req_headers.emplace_back(std::move(n), std::move(v));
  return 0;
}

int OnFrameRecv(nghttp2_session*, const nghttp2_frame* f, void* ud) {
  Session* s = S(ud);
  if (s->dead) return 0;
  Codec* c = CodecOf(s);
  Stream* st = f->hd.stream_id ? StreamOf(s, f->hd.stream_id) : nullptr;
  if (!st) return 0;
  bool end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  switch (f->hd.type) {
    case NGHTTP2_HEADERS:
      if (end) st->req.end = true;
      if (f->headers.cat == NGHTTP2_HCAT_REQUEST) c->StartStream(st);
      else c->Resume(st->up, st->up_id, &st->req);  // request trailers
      break;
    case NGHTTP2_DATA:
      if (end) {
        st->req.end = true;
        c->Resume(st->up, st->up_id, &st->req);
      }
      break;
    case NGHTTP2_RST_STREAM:
      st->client_reset = true;
      break;
  }
  return 0;
}

int OnDataChunk(nghttp2_session* ng, uint8_t, int32_t id, const uint8_t* data, size_t len, void* ud) {
  Session* s = S(ud);
  if (s->dead) return 0;
  Stream* st = StreamOf(s, id);
  if (!st) return 0;
  st->ex.req_body_bytes += len;
  if (st->ex.protocol[0] == 'g') st->ex.req_messages.Feed(reinterpret_cast<const char*>(data), len);
  if (!st->up && st->retry_at == 0) {
    // Answered locally (or not routed yet): the body is not wanted; its window goes back at once.
    nghttp2_session_consume(ng, id, len);
    return 0;
  }
  st->req.buf.append(reinterpret_cast<const char*>(data), len);
  st->req_unconsumed += len;
  // Too big to keep for a replay (as the HTTP/1.1 path): no retry from here on.
  if (st->req.buf.size() > h1::kReplayLimit) Codec::DropReplay(st);
  CodecOf(s)->Resume(st->up, st->up_id, &st->req);
  return 0;
}

int OnStreamClose(nghttp2_session*, int32_t id, uint32_t code, void* ud) {
  Session* s = S(ud);
  if (s->dead) return 0;
  Stream* st = StreamOf(s, id);
  if (st) CodecOf(s)->StreamClosed(st, code);
  return 0;
}

// Reads a pipe for the session sending it; what it takes is consumed on the session that received it.
ssize_t ReadPipe(nghttp2_session* ng, int32_t id, uint8_t* buf, size_t length, uint32_t* flags, nghttp2_data_source* src, void* ud) {
  Session* s = S(ud);
  auto* st = static_cast<Stream*>(src->ptr);
  if (s->dead || !st) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  bool request = !s->server;  // an upstream session sends the request pipe
  // A retried stream's earlier upstream stream (being cancelled) must not read the replay buffer on.
  if (request && (st->up != s || st->up_id != id)) return NGHTTP2_ERR_DEFERRED;
  Pipe& p = request ? st->req : st->resp;
  size_t n = std::min(length, p.Len());
  if (n > 0) {
    std::memcpy(buf, p.buf.data() + p.off, n);
    p.off += n;
    size_t give = n;
    if (request) {
      // A replay re-reads bytes whose window the client has back already.
      uint64_t upto = st->req_erased + p.off;
      give = upto > st->req_given_back ? static_cast<size_t>(upto - st->req_given_back) : 0;
      st->req_given_back = std::max(st->req_given_back, upto);
    }
    if (p.off == p.buf.size() && !(request && st->replayable)) {
      if (request) st->req_erased += p.buf.size();
      p.buf.clear();
      p.off = 0;
    }
    Codec* c = CodecOf(s);
    // The other side's window: given back now that this side took the bytes.
    Session* from = request ? st->down : st->up;
    int32_t from_id = request ? st->id : st->up_id;
    uint64_t& held = request ? st->req_unconsumed : st->resp_unconsumed;
    give = std::min<uint64_t>(give, held);
    if (from && !from->dead && from_id > 0 && give > 0) {
      nghttp2_session_consume(from->ng, from_id, give);
      held -= give;
      c->MarkDirty(from);
    }
  }
  if (p.Len() == 0) {
    if (!p.end) {
      if (n > 0) return static_cast<ssize_t>(n);
      p.deferred = true;
      return NGHTTP2_ERR_DEFERRED;
    }
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    if (!p.trailers.empty()) {
      *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
      std::vector<nghttp2_nv> nv = Nv(p.trailers);
      nghttp2_submit_trailer(ng, id, nv.data(), nv.size());
    }
  }
  return static_cast<ssize_t>(n);
}

bool IsGrpc(const NvList& h) {
  for (const auto& [n, v] : h)
    if (n == "content-type") return v.compare(0, 16, "application/grpc") == 0;
  return false;
}

const std::string* Get(const NvList& h, const char* name) {
  for (const auto& [n, v] : h)
    if (n == name) return &v;
  return nullptr;
}

}  // namespace

void InstallDownCallbacks(nghttp2_session_callbacks* cbs) {
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, OnBeginHeaders);
  nghttp2_session_callbacks_set_on_header_callback(cbs, OnHeader);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, OnFrameRecv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, OnDataChunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, OnStreamClose);
}

nghttp2_data_provider Codec::Provider(Stream* st, bool) {
  nghttp2_data_provider p{};
  p.source.ptr = st;
  p.read_callback = ReadPipe;
  return p;
}

void Codec::StartStream(Stream* st) {
  Session* s = st->down;
  h1::Exchange& ex = st->ex;
  ex.cfg = e_->cfg_;
  ex.t0 = NowMsPrecise();
  s->deadline = 0;
  h1::RouteExchange(*ex.cfg, s->inbound, s->dst_ip, s->dst_port, st->authority.empty() ? nullptr : &st->authority, &ex);
  if (IsGrpc(st->req_headers)) {
    ex.protocol = "grpc";
    if (const std::string* t = Get(st->req_headers, "grpc-timeout")) {
      int64_t ms = GrpcTimeoutMs(*t);
      if (ms >= 0) st->deadline = NowMs() + ms;
    }
  }
  h1::RequestFacts facts;
  UpstreamRequest(*st, *ex.cfg, &st->up_headers, &facts);
  ex.req_header_bytes = facts.header_bytes;
  ex.peer_in = facts.peer_in;
  if (st->method.empty() || st->path.empty() || st->method == "CONNECT") {
    e_->counters_.rejected++;
    ResetDown(st, NGHTTP2_PROTOCOL_ERROR);
    return;
  }
  Attempt(st);
}

void Codec::Respond(Stream* st, bool end_stream) {
  h1::Exchange& ex = st->ex;
  NvList out;
  const std::string* me = st->down->inbound && !ex.peer_in.empty() ? &ex.cfg->peer_header : nullptr;
  DownstreamResponse(st->up_status, st->resp_headers, me, &out, &ex.peer_out, &ex.resp_header_bytes);
  if (ex.protocol[0] == 'g')
    if (const std::string* gs = Get(st->resp_headers, "grpc-status")) ex.grpc_status = *gs;
  ex.code = st->up_status;
  st->resp_headers.clear();
  std::vector<nghttp2_nv> nv = Nv(out);
  nghttp2_data_provider prd = Provider(st, false);
  st->resp_submitted = true;
  DropReplay(st);  // a response is under way: no retry now (a long request stream keeps no 64 KiB for nothing)
  nghttp2_submit_response(st->down->ng, st->id, nv.data(), nv.size(), end_stream ? nullptr : &prd);
  MarkDirty(st->down);
}

void Codec::LocalReply(Stream* st, int code, const char* flags, const std::string& text) {
  h1::Exchange& ex = st->ex;
  st->retry_at = 0;
  if (st->up) Detach(st, true);
  if (ex.flags == "-" || std::strcmp(flags, "-") != 0) ex.flags = flags;
  if (st->resp_submitted) { ResetDown(st, NGHTTP2_INTERNAL_ERROR); return; }
  st->resp_submitted = true;
  st->resp = Pipe();
  if (ex.protocol[0] == 'g' && code >= 400) {
    // gRPC clients read the status from a trailers-only response, not the HTTP code (the JS chain's mapping).
    const char* gs = code == 504 ? "4" : code == 400 ? "13" : code == 403 ? "7" : code == 404 ? "12" : code == 502 || code == 503 || code == 429 ? "14" : "2";
    ex.code = 200;
    ex.grpc_status = gs;
    std::string msg;
    for (char ch : text) {
      if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.') msg += ch;
      else { char b[4]; snprintf(b, sizeof b, "%%%02X", static_cast<unsigned char>(ch)); msg += b; }
    }
    NvList h{{":status", "200"}, {"content-type", "application/grpc"}, {"grpc-status", gs}, {"grpc-message", msg}};
    std::vector<nghttp2_nv> nv = Nv(h);
    nghttp2_submit_response(st->down->ng, st->id, nv.data(), nv.size(), nullptr);
  } else {
    ex.code = code;
    ex.resp_body_bytes = text.size();
    st->resp.buf = text;
    st->resp.end = true;
    NvList h{{":status", std::to_string(code)}, {"content-type", "text/plain"}, {"content-length", std::to_string(text.size())}};
    std::vector<nghttp2_nv> nv = Nv(h);
    nghttp2_data_provider prd = Provider(st, false);
    nghttp2_submit_response(st->down->ng, st->id, nv.data(), nv.size(), &prd);
  }
  MarkDirty(st->down);
}

void Codec::ResetDown(Stream* st, uint32_t code) {
  st->retry_at = 0;
  if (st->up) Detach(st, true);
  nghttp2_submit_rst_stream(st->down->ng, NGHTTP2_FLAG_NONE, st->id, code);
  MarkDirty(st->down);
}

void Codec::StreamClosed(Stream* st, uint32_t code) {
  Session* s = st->down;
  if (st->up) Detach(st, true);  // the client cancelled (or the stream ended early): so does the upstream stream
  if (st->req_unconsumed > 0 && !s->dead) {
    // Request bytes nobody will send on: the client's connection window gets them back (the stream's is gone).
    nghttp2_session_consume_connection(s->ng, st->req_unconsumed);
    st->req_unconsumed = 0;
    MarkDirty(s);
  }
  if (st->client_reset && !st->resp_submitted) {
    // Rapid reset (CVE-2023-44487), the JS chain's rule: too many streams reset before a response → GOAWAY(ENHANCE_YOUR_CALM).
    s->premature++;
    int64_t now = NowMs();
    if (now - s->window_start > 1000) { s->window_start = now; s->in_window = 0; }
    s->in_window++;
    if (s->in_window > kResetsPerSecond || (s->opened >= kMinStreams && s->premature * 2 >= s->opened)) {
      nghttp2_session_terminate_session(s->ng, NGHTTP2_ENHANCE_YOUR_CALM);
      MarkDirty(s);
    }
  }
  if (!st->recorded && !st->method.empty() && st->ex.cfg) {
    st->recorded = true;
    bool complete = st->resp_submitted && st->resp.end && st->resp.Len() == 0 && code == NGHTTP2_NO_ERROR;
    if (!complete && st->ex.flags == "-") st->ex.flags = "DC";
    e_->Record(s->inbound, s->peer_ip, &st->ex);
  }
  st->ex.lease.Release();
  nghttp2_session_set_stream_user_data(s->ng, st->id, nullptr);
  auto it = s->streams.find(st->id);
  if (it != s->streams.end()) {
    Bury(std::move(it->second));
    s->streams.erase(it);
  }
  if (s->streams.empty()) s->deadline = NowMs() + cfg().idle_timeout_ms;
}

}  // namespace h2
}  // namespace weir
