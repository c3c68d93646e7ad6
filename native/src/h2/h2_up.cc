// The upstream side of the native HTTP/2 path: one multiplexed h2c
// session per endpoint (weir peers, h2 apps; nghttp2 queues streams beyond
// the peer's SETTINGS_MAX_CONCURRENT_STREAMS), the pick per request
// (LEAST_REQUEST from the cluster table, h1's PickEndpoint), and what
// Istio's default retries on (h2_retry.cc does the retry): connect failure,
// refused stream (RST_STREAM REFUSED_STREAM, or above a GOAWAY's last
// stream), a 503 head and a trailers-only gRPC status 14 or 1 — while the
// budget lasts, nothing went to the client and the request fits the replay
// buffer.
#include <cstring>

#include "h2_codec.h"

namespace weir {
namespace h2 {
namespace {

Session* S(void* user_data) { return static_cast<Session*>(user_data); }

Stream* StreamOf(Session* s, int32_t id) {
  return static_cast<Stream*>(nghttp2_session_get_stream_user_data(s->ng, id));
}

int OnHeader(nghttp2_session*, const nghttp2_frame* f, const uint8_t* name, size_t nlen, const uint8_t* value, size_t vlen, uint8_t, void* ud) {
  Session* u = S(ud);
  if (u->dead || f->hd.type != NGHTTP2_HEADERS) return 0;
  Stream* st = StreamOf(u, f->hd.stream_id);
  if (!st) return 0;
  std::string n(reinterpret_cast<const char*>(name), nlen), v(reinterpret_cast<const char*>(value), vlen);
  if (st->resp_submitted) {
    if (n == "grpc-status") st->ex.grpc_status = v;
    st->resp.trailers.emplace_back(std::move(n), std::move(v));
    return 0;
  }
  if (n == ":status") st->up_status = std::atoi(v.c_str());
  else if (n[0] != ':') st->resp_headers.emplace_back(std::move(n), std::move(v));
  return 0;
}

// A response head Istio's default retryOn names: retriable-status-codes 503, and the gRPC statuses unavailable
// and cancelled of a trailers-only answer (a gRPC error before any message: HEADERS with END_STREAM).
bool RetriableHead(const Stream& st, bool end) {
  if (st.up_status == 503) return true;
  if (!end) return false;
  for (const auto& [n, v] : st.resp_headers)
    if (n == "grpc-status") return v == "14" || v == "1";
  return false;
}

int OnFrameRecv(nghttp2_session*, const nghttp2_frame* f, void* ud) {
  Session* u = S(ud);
  if (u->dead) return 0;
  Codec* c = CodecOf(u);
  if (f->hd.type == NGHTTP2_GOAWAY) {
    // No new streams here; those above last_stream_id close as REFUSED_STREAM (retried), the others finish.
    u->goaway = true;
    return 0;
  }
  Stream* st = f->hd.stream_id ? StreamOf(u, f->hd.stream_id) : nullptr;
  if (!st) return 0;
  bool end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  if (f->hd.type == NGHTTP2_HEADERS) {
    if (!st->resp_submitted) {
      if (st->up_status < 200) {  // 1xx: not relayed (the client's request needs no 100-continue on h2)
        st->resp_headers.clear();
        st->up_status = 0;
        return 0;
      }
      if (RetriableHead(*st, end)) {
        if (c->RetryLater(st)) return 0;
        if (st->ex.attempts > 1) st->ex.flags = "URX";  // retried, and the last try failed the same way (as the JS chain)
      }
      if (end) st->resp.end = true;
      c->Respond(st, end);
      return 0;
    }
    if (end) {  // trailers
      st->resp.end = true;
      c->Resume(st->down, st->id, &st->resp);
    }
    return 0;
  }
  if (f->hd.type == NGHTTP2_DATA && end) {
    st->resp.end = true;
    c->Resume(st->down, st->id, &st->resp);
  }
  return 0;
}

int OnDataChunk(nghttp2_session* ng, uint8_t, int32_t id, const uint8_t* data, size_t len, void* ud) {
  Session* u = S(ud);
  if (u->dead) return 0;
  Stream* st = StreamOf(u, id);
  if (!st || !st->resp_submitted) {
    nghttp2_session_consume(ng, id, len);  // nobody reads it: the window goes back at once
    return 0;
  }
  st->ex.resp_body_bytes += len;
  if (st->ex.protocol[0] == 'g') st->ex.resp_messages.Feed(reinterpret_cast<const char*>(data), len);
  st->resp.buf.append(reinterpret_cast<const char*>(data), len);
  st->resp_unconsumed += len;
  CodecOf(u)->Resume(st->down, st->id, &st->resp);
  return 0;
}

int OnStreamClose(nghttp2_session*, int32_t id, uint32_t code, void* ud) {
  Session* u = S(ud);
  if (u->dead) return 0;
  Stream* st = StreamOf(u, id);
  if (st) CodecOf(u)->UpStreamClosed(st, code);
  return 0;
}

}  // namespace

void InstallUpCallbacks(nghttp2_session_callbacks* cbs) {
  nghttp2_session_callbacks_set_on_header_callback(cbs, OnHeader);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, OnFrameRecv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, OnDataChunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, OnStreamClose);
}

void Codec::Attempt(Stream* st) {
  h1::Exchange& ex = st->ex;
  h1::Endpoint picked;
  const h1::Endpoint* ep = nullptr;
  if (!h1::PickEndpoint(&ex, st->down->dst_ip, &picked, &ep)) {
    LocalReply(st, 503, "UH", "no healthy upstream");
    return;
  }
  ex.endpoint = ep->key;
  ex.attempts++;
  bool failed = false;
  Session* u = UpFor(*ep, st->down->inbound, &failed);
  if (!u) {
    ex.lease.Release();
    LocalReply(st, 503, "UF", "upstream connect error or disconnect/reset before headers. reset reason: connection failure");
    return;
  }
  std::vector<nghttp2_nv> nv = Nv(st->up_headers);
  bool body = !(st->req.end && st->req.Len() == 0 && st->req.trailers.empty());
  nghttp2_data_provider prd = Provider(st, true);
  st->req.deferred = false;
  int32_t id = nghttp2_submit_request(u->ng, nullptr, nv.data(), nv.size(), body ? &prd : nullptr, st);
  if (id < 0) {
    ex.lease.Release();
    LocalReply(st, 503, "UF", std::string("upstream stream refused: ") + nghttp2_strerror(id));
    return;
  }
  st->up = u;
  st->up_id = id;
  u->up_streams[id] = st;
  u->deadline = u->connecting ? u->deadline : 0;
  MarkDirty(u);
}

void Codec::Detach(Stream* st, bool cancel) {
  Session* u = st->up;
  if (!u) return;
  st->up = nullptr;
  int32_t id = st->up_id;
  st->up_id = -1;
  st->ex.lease.Release();
  u->up_streams.erase(id);
  if (u->dead) return;
  if (st->resp_unconsumed > 0) {
    // Response bytes still waiting for the client (a gRPC response's trailers close the upstream stream
    // before its DATA reached the client): the reused connection's window gets them back now.
    nghttp2_session_consume_connection(u->ng, st->resp_unconsumed);
    st->resp_unconsumed = 0;
  }
  nghttp2_session_set_stream_user_data(u->ng, id, nullptr);
  if (cancel && nghttp2_session_get_stream_remote_close(u->ng, id) == 0) nghttp2_submit_rst_stream(u->ng, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
  if (u->up_streams.empty()) u->deadline = NowMs() + cfg().idle_timeout_ms;
  MarkDirty(u);
}

void Codec::UpStreamClosed(Stream* st, uint32_t code) {
  h1::Exchange& ex = st->ex;
  bool refused = code == NGHTTP2_REFUSED_STREAM;
  Detach(st, false);
  if (st->resp_submitted) {
    if (!st->resp.end) {
      // The upstream reset a response under way: so does the client's stream (a CANCEL stays a CANCEL).
      if (ex.flags == "-") ex.flags = code == NGHTTP2_CANCEL ? "-" : "UPE";
      ResetDown(st, code == NGHTTP2_NO_ERROR ? static_cast<uint32_t>(NGHTTP2_INTERNAL_ERROR) : code);
    }
    return;
  }
  if (refused && RetryLater(st)) return;
  LocalReply(st, 503, ex.attempts > 1 ? "URX,UC" : "UC", "upstream connect error or disconnect/reset before headers. reset reason: connection termination");
}

void Codec::UpFailed(Session* u, bool connect_failure) {
  if (u->dead) return;
  std::vector<Stream*> streams;
  for (auto& [id, st] : u->up_streams) streams.push_back(st);
  Close(u);
  for (Stream* st : streams) {
    st->up = nullptr;
    st->up_id = -1;
    st->ex.lease.Release();
    h1::Exchange& ex = st->ex;
    if (st->resp_submitted) {
      if (!st->resp.end) { ex.flags = "UPE"; ResetDown(st, NGHTTP2_INTERNAL_ERROR); }
      continue;
    }
    if (connect_failure && RetryLater(st)) continue;
    if (connect_failure)
      LocalReply(st, 503, ex.attempts > 1 ? "URX,UF" : "UF", "upstream connect error or disconnect/reset before headers. reset reason: connection failure");
    else
      LocalReply(st, 503, "UC", "upstream connect error or disconnect/reset before headers. reset reason: connection termination");
  }
}

}  // namespace h2
}  // namespace weir
