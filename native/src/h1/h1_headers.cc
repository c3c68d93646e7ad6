// See h1_headers.h.
#include "h1_headers.h"

#include <sys/random.h>

#include <cstdio>
#include <cstring>
#include <string_view>

namespace weir {
namespace h1 {
namespace {

// CSPRNG bytes from a 4 KiB pool (one getrandom per ~200 requests).
void RandomBytes(uint8_t* out, size_t n) {
  thread_local uint8_t pool[4096];
  thread_local size_t at = sizeof pool;
  if (at + n > sizeof pool) {
    size_t got = 0;
    while (got < sizeof pool) {
      ssize_t r = getrandom(pool + got, sizeof pool - got, 0);
      if (r > 0) got += static_cast<size_t>(r);
    }
    at = 0;
  }
  std::memcpy(out, pool + at, n);
  at += n;
}

std::string Hex(size_t bytes) {
  uint8_t b[16];
  static const char* digits = "0123456789abcdef";
  for (;;) {
    RandomBytes(b, bytes);
    std::string s;
    bool zero = true;
    for (size_t i = 0; i < bytes; i++) {
      s += digits[b[i] >> 4];
      s += digits[b[i] & 15];
      zero = zero && b[i] == 0;
    }
    if (!zero) return s;
  }
}

std::string Uuid() {
  std::string h = Hex(16);
  h[12] = '4';
  h[16] = "89ab"[(h[16] >= 'a' ? h[16] - 'a' + 10 : h[16] - '0') & 3];
  return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) + "-" + h.substr(20);
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c | 0x20);
  return out;
}

bool IsHex(std::string_view s, size_t n1, size_t n2 = 0) {
  if (s.size() != n1 && (n2 == 0 || s.size() != n2)) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

bool AllZero(std::string_view s) { return s.find_first_not_of('0') == std::string_view::npos; }

// -1 = no decision, 0/1 = the caller's.
int SampledFrom(std::string_view v) {
  if (v == "1" || v == "true" || v == "d") return 1;
  if (v == "0" || v == "false") return 0;
  return -1;
}

struct TraceIn {
  std::string trace_id, parent;
  int sampled = -1;
  bool single = false;
};

// The incoming context, in the JS reader's order: B3 multi, B3 single, traceparent, bare sampled.
TraceIn ReadTrace(const Head& h) {
  auto get = [&](std::string_view n) -> std::string {
    const Header* x = Find(h, n);
    return x ? Lower(x->value) : std::string();
  };
  TraceIn t;
  std::string tid = get("x-b3-traceid"), sid = get("x-b3-spanid");
  if (!tid.empty() && IsHex(tid, 16, 32) && IsHex(sid, 16) && !AllZero(tid)) {
    t.trace_id = tid;
    t.parent = sid;
    t.sampled = get("x-b3-flags") == "1" ? 1 : SampledFrom(get("x-b3-sampled"));
    return t;
  }
  std::string single = get("b3");
  if (!single.empty()) {
    std::string_view s(single);
    size_t a = s.find('-');
    size_t b = a == std::string_view::npos ? a : s.find('-', a + 1);
    std::string_view tt = s.substr(0, a);
    std::string_view ss = a == std::string_view::npos ? std::string_view() : s.substr(a + 1, b == std::string_view::npos ? std::string_view::npos : b - a - 1);
    std::string_view smp;
    if (b != std::string_view::npos) {
      size_t c = s.find('-', b + 1);
      smp = s.substr(b + 1, c == std::string_view::npos ? std::string_view::npos : c - b - 1);
    }
    if (IsHex(tt, 16, 32) && IsHex(ss, 16) && !AllZero(tt)) {
      t.trace_id = std::string(tt);
      t.parent = std::string(ss);
      t.sampled = SampledFrom(smp);
      t.single = true;
      return t;
    }
    if (single == "0" || single == "1" || single == "d") {
      t.trace_id = Hex(16);
      t.sampled = SampledFrom(single);
      t.single = true;
      return t;
    }
  }
  std::string tp = get("traceparent");
  if (tp.size() == 55 && tp[2] == '-' && tp[35] == '-' && tp[52] == '-') {
    std::string_view v(tp);
    std::string_view ver = v.substr(0, 2), id = v.substr(3, 32), span = v.substr(36, 16), fl = v.substr(53, 2);
    if (IsHex(ver, 2) && IsHex(id, 32) && IsHex(span, 16) && IsHex(fl, 2) && ver != "ff" && !AllZero(id) && !AllZero(span)) {
      t.trace_id = std::string(id);
      t.parent = std::string(span);
      t.sampled = (std::stoi(std::string(fl), nullptr, 16) & 1) ? 1 : 0;
      return t;
    }
  }
  int bare = SampledFrom(get("x-b3-sampled"));
  t.trace_id = Hex(16);
  t.sampled = bare;
  return t;
}

void Add(std::string* out, std::string_view name, std::string_view value) {
  out->append(name);
  out->append(": ");
  out->append(value);
  out->append("\r\n");
}

bool IsHopByHop(std::string_view n) {
  static const char* const kHop[] = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "http2-settings",
                                     "te", "trailer", "expect", "host", "x-weir-peer", "x-weir-downstream-protocol"};
  for (const char* x : kHop)
    if (IEquals(n, x)) return true;
  return false;
}

bool IsTraceHeader(std::string_view n) {
  return IEquals(n, "x-b3-traceid") || IEquals(n, "x-b3-spanid") || IEquals(n, "x-b3-parentspanid") || IEquals(n, "x-b3-sampled") ||
         IEquals(n, "x-b3-flags") || IEquals(n, "b3") || IEquals(n, "traceparent");
}

// Whether a Connection header of `h` names `n` (those are hop-by-hop too).
bool NamedByConnection(const Head& h, std::string_view n) {
  for (const Header& x : h.headers)
    if (IEquals(x.name, "connection") && HasToken(x.value, n)) return true;
  return false;
}

}  // namespace

void BuildRequestHead(const Head& h, const Config& c, bool mesh_peer, bool chunked, bool upgrade, const std::string& fallback_authority,
                      std::string* out, RequestFacts* facts) {
  out->clear();
  out->reserve(512 + h.size);
  out->append(h.method);
  out->push_back(' ');
  out->append(h.target);
  out->append(" HTTP/1.1\r\n");
  const Header* host = Find(h, "host");
  facts->authority = host ? std::string(host->value) : fallback_authority;
  Add(out, "host", facts->authority);
  bool has_rid = false, has_proto = false, te_trailers = false;
  bool has_connection = Find(h, "connection") != nullptr;
  uint64_t bytes = 0;
  for (const Header& x : h.headers) {
    bytes += x.name.size() + x.value.size() + 4;
    if (IEquals(x.name, "x-weir-peer")) facts->peer_in = std::string(x.value);
    if (IEquals(x.name, "te") && HasToken(x.value, "trailers")) te_trailers = true;
    if (IsHopByHop(x.name) || IsTraceHeader(x.name) || (has_connection && NamedByConnection(h, x.name))) continue;
    if (IEquals(x.name, "x-request-id")) has_rid = true;
    if (IEquals(x.name, "x-forwarded-proto")) has_proto = true;
    Add(out, x.name, x.value);
  }
  if (!has_rid) {
    std::string id = Uuid();
    Add(out, "x-request-id", id);
    bytes += 12 + id.size() + 4;
  }
  if (!has_proto) Add(out, "x-forwarded-proto", "http");
  if (te_trailers) Add(out, "te", "trailers");
  if (chunked) Add(out, "transfer-encoding", "chunked");
  if (upgrade) {
    const Header* up = Find(h, "upgrade");
    Add(out, "connection", "upgrade");
    if (up) Add(out, "upgrade", up->value);
  }
  // Trace context: this proxy's span is the next hop's parent.
  TraceIn t = ReadTrace(h);
  bool sampled = t.sampled >= 0 ? t.sampled == 1 : c.sampling_percent >= 100;
  if (t.sampled < 0 && c.sampling_percent > 0 && c.sampling_percent < 100) {
    uint8_t r[4];
    RandomBytes(r, 4);
    uint32_t v = (uint32_t(r[0]) << 24) | (uint32_t(r[1]) << 16) | (uint32_t(r[2]) << 8) | r[3];
    sampled = (static_cast<double>(v) / 4294967296.0) * 100 < c.sampling_percent;
  }
  std::string span = Hex(8);
  const char* s = sampled ? "1" : "0";
  Add(out, "x-b3-traceid", t.trace_id);
  Add(out, "x-b3-spanid", span);
  if (!t.parent.empty()) Add(out, "x-b3-parentspanid", t.parent);
  Add(out, "x-b3-sampled", s);
  if (t.single) Add(out, "b3", t.trace_id + "-" + span + "-" + s + (t.parent.empty() ? "" : "-" + t.parent));
  std::string padded = t.trace_id.size() < 32 ? std::string(32 - t.trace_id.size(), '0') + t.trace_id : t.trace_id;
  Add(out, "traceparent", "00-" + padded + "-" + span + (sampled ? "-01" : "-00"));
  if (mesh_peer && !c.peer_header.empty()) {
    Add(out, "x-weir-peer", c.peer_header);
    Add(out, "x-weir-downstream-protocol", "h1");
  }
  out->append("\r\n");
  facts->header_bytes = bytes;
}

void BuildResponseHead(const Head& h, bool upgrade, bool chunked, bool close, const std::string* peer_header, std::string* out,
                       std::string* peer_out, uint64_t* header_bytes) {
  out->clear();
  char line[64];
  snprintf(line, sizeof line, "HTTP/1.1 %d ", h.status);
  out->append(line);
  out->append(h.reason);
  out->append("\r\n");
  bool has_connection = Find(h, "connection") != nullptr;
  uint64_t bytes = 0;
  for (const Header& x : h.headers) {
    bytes += x.name.size() + x.value.size() + 4;
    if (IEquals(x.name, "x-weir-peer")) *peer_out = std::string(x.value);
    if (IsHopByHop(x.name) || (has_connection && NamedByConnection(h, x.name))) continue;
    if (IEquals(x.name, "content-length") && (chunked || h.status == 101)) continue;
    Add(out, x.name, x.value);
  }
  if (upgrade) {
    Add(out, "connection", "upgrade");
    if (const Header* up = Find(h, "upgrade")) Add(out, "upgrade", up->value);
  } else if (close) {
    Add(out, "connection", "close");
  }
  if (chunked) Add(out, "transfer-encoding", "chunked");
  if (peer_header && !peer_header->empty()) Add(out, "x-weir-peer", *peer_header);
  out->append("\r\n");
  *header_bytes = bytes;
}

std::string LocalResponse(int code, const std::string& body, bool close) {
  const char* reason = code == 400 ? "Bad Request" : code == 431 ? "Request Header Fields Too Large" : code == 502 ? "Bad Gateway"
                     : code == 503 ? "Service Unavailable" : code == 504 ? "Gateway Timeout" : "Error";
  std::string out = "HTTP/1.1 " + std::to_string(code) + " " + reason + "\r\ncontent-type: text/plain\r\ncontent-length: " +
                    std::to_string(body.size()) + "\r\n";
  if (close) out += "connection: close\r\n";
  out += "\r\n" + body;
  return out;
}

}  // namespace h1
}  // namespace weir
