// Header lists of the native HTTP/2 path. The rules are the HTTP/1.1
// path's (h1_headers: hop-by-hop headers, x-request-id, x-forwarded-proto,
// B3/traceparent rewritten, weir's exchange headers), applied by building
// the HTTP/1.1 head those functions produce and reading it back as an h2
// header list — one implementation of the rules for both codecs.
#include <cstdlib>
#include <string_view>

#include "h2_codec.h"

namespace weir {
namespace h2 {
namespace {

// "name: value\r\n" lines after the first line of an HTTP/1.1 head, as name/value pairs.
template <typename F>
void Lines(const std::string& head, F each) {
  size_t at = head.find("\r\n");
  while (at != std::string::npos) {
    at += 2;
    size_t end = head.find("\r\n", at);
    if (end == std::string::npos || end == at) return;
    size_t colon = head.find(':', at);
    if (colon == std::string::npos || colon > end) return;
    size_t v = colon + 1;
    while (v < end && head[v] == ' ') v++;
    each(std::string_view(head).substr(at, colon - at), std::string_view(head).substr(v, end - v));
    at = end;
  }
}

h1::Head AsHead(const NvList& l) {
  h1::Head h;
  h.headers.reserve(l.size());
  for (const auto& [n, v] : l) h.headers.push_back({n, v});
  return h;
}

}  // namespace

void UpstreamRequest(const Stream& st, const h1::Config& c, NvList* out, h1::RequestFacts* facts) {
  h1::Head h = AsHead(st.req_headers);
  h.method = st.method;
  h.target = st.path;
  std::string host = st.authority;
  if (!host.empty()) h.headers.push_back({"host", host});
  std::string head;
  h1::BuildRequestHead(h, c, st.ex.mesh_peer, false, false, st.ex.dst_key, &head, facts);
  // :authority is not a header of the HTTP/1.1 head: BuildRequestHead counted it as "host" (4 bytes less than the JS chain's ":authority").
  out->clear();
  out->emplace_back(":method", st.method);
  out->emplace_back(":scheme", "http");
  out->emplace_back(":path", st.path);
  Lines(head, [&](std::string_view n, std::string_view v) {
    if (n == "host") out->emplace(out->begin() + 2, ":authority", std::string(v));
    else if (n == "x-weir-downstream-protocol") out->emplace_back(std::string(n), "h2");
    else out->emplace_back(std::string(n), std::string(v));
  });
}

void DownstreamResponse(int status, const NvList& in, const std::string* me, NvList* out, std::string* peer_out, uint64_t* header_bytes) {
  h1::Head h = AsHead(in);
  h.status = status;
  h.reason = "-";
  std::string head;
  h1::BuildResponseHead(h, false, false, false, me, &head, peer_out, header_bytes);
  out->clear();
  out->emplace_back(":status", std::to_string(status));
  Lines(head, [&](std::string_view n, std::string_view v) { out->emplace_back(std::string(n), std::string(v)); });
}

std::vector<nghttp2_nv> Nv(const NvList& l) {
  std::vector<nghttp2_nv> v;
  v.reserve(l.size());
  for (const auto& [n, val] : l)
    v.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(n.data())), reinterpret_cast<uint8_t*>(const_cast<char*>(val.data())), n.size(),
                 val.size(), NGHTTP2_NV_FLAG_NONE});
  return v;
}

int64_t GrpcTimeoutMs(const std::string& v) {
  if (v.size() < 2 || v.size() > 9) return -1;
  for (size_t i = 0; i + 1 < v.size(); i++)
    if (v[i] < '0' || v[i] > '9') return -1;
  double n = std::strtod(v.substr(0, v.size() - 1).c_str(), nullptr);
  switch (v.back()) {
    case 'H': return static_cast<int64_t>(n * 3600000);
    case 'M': return static_cast<int64_t>(n * 60000);
    case 'S': return static_cast<int64_t>(n * 1000);
    case 'm': return static_cast<int64_t>(n);
    case 'u': return static_cast<int64_t>(n / 1000);
    case 'n': return static_cast<int64_t>(n / 1000000);
    default: return -1;
  }
}

}  // namespace h2
}  // namespace weir
