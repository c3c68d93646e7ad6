// libFuzzer target for the native HTTP/1.1 codec (h1_parse, h1_headers):
// what a hostile client or upstream can send the engine. Besides "no
// crash, no out-of-bounds read" (AddressSanitizer, UBSan), it checks the
// properties the engine relies on:
//  - incremental reads: any prefix of a head that parses is kIncomplete
//    (the engine parses again as bytes arrive, so a prefix judged kBad or
//    kDone would break a request split across reads);
//  - header views lie inside the head's bytes;
//  - what the proxy sends on parses again, with the same body framing
//    (a proxy that changes framing is how request smuggling happens);
//  - the chunked scanner gives the same result fed whole or byte by byte.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "../src/h1/h1_headers.h"
#include "../src/h1/h1_parse.h"

using namespace weir::h1;

namespace {

void Check(bool ok, const char* what) {
  if (!ok) {
    fprintf(stderr, "property violated: %s\n", what);
    abort();
  }
}

bool SameFraming(const Framing& a, const Framing& b) {
  return a.kind == b.kind && (a.kind != Framing::Kind::kLength || a.length == b.length);
}

struct Scan {
  ChunkScanner::Result result;
  size_t consumed;
  uint64_t data;
};

Scan ScanWhole(const char* p, size_t n) {
  ChunkScanner s;
  Scan r{ChunkScanner::Result::kMore, 0, 0};
  r.result = s.Feed(p, n, &r.consumed, [&](const char*, size_t len) { r.data += len; });
  return r;
}

Scan ScanBytewise(const char* p, size_t n) {
  ChunkScanner s;
  Scan r{ChunkScanner::Result::kMore, 0, 0};
  for (size_t i = 0; i < n; i++) {
    size_t used = 0;
    r.result = s.Feed(p + i, 1, &used, [&](const char*, size_t len) { r.data += len; });
    r.consumed += used;
    if (r.result != ChunkScanner::Result::kMore) break;
  }
  return r;
}

void CheckViews(const Head& h, const char* p, size_t size) {
  auto inside = [&](std::string_view v) { return v.empty() || (v.data() >= p && v.data() + v.size() <= p + size); };
  Check(inside(h.method) && inside(h.target) && inside(h.reason), "request/status line views inside the head");
  for (const Header& x : h.headers) Check(inside(x.name) && inside(x.value), "header views inside the head");
}

void FuzzRequest(const char* p, size_t n, size_t limit) {
  Head h;
  std::string why;
  ParseStatus st = ParseHead(p, n, true, limit, &h, &why);
  if (st == ParseStatus::kTooLarge) Check(n >= limit, "kTooLarge only when the limit is reached");
  if (st != ParseStatus::kDone) return;
  Check(h.size > 0 && h.size <= n && h.size <= limit, "head size within input and limit");
  CheckViews(h, p, h.size);
  // Prefixes: every shorter read is still incomplete.
  for (size_t cut : {h.size - 1, h.size / 2, size_t(1), h.size > 4 ? h.size - 3 : size_t(0)}) {
    if (cut == 0 || cut >= h.size) continue;
    Head partial;
    Check(ParseHead(p, cut, true, limit, &partial, &why) == ParseStatus::kIncomplete, "prefix of a complete head is kIncomplete");
  }
  Framing f;
  if (!RequestFraming(h, &f, &why)) return;
  Config c;
  c.peer_header = "peer";
  std::string out;
  RequestFacts facts;
  bool chunked = f.kind == Framing::Kind::kChunked;
  BuildRequestHead(h, c, n & 1, chunked, false, "10.0.0.1:80", &out, &facts);
  Head again;
  ParseStatus st2 = ParseHead(out.data(), out.size(), true, out.size() + 1, &again, &why);
  if (st2 != ParseStatus::kDone) fprintf(stderr, "re-parse: %s\n%s\n", why.c_str(), out.c_str());
  Check(st2 == ParseStatus::kDone && again.size == out.size(), "the upstream head parses");
  Framing f2;
  Check(RequestFraming(again, &f2, &why) && SameFraming(f, f2), "the upstream head keeps the body framing");
  if (chunked) {
    Scan a = ScanWhole(p + h.size, n - h.size), b = ScanBytewise(p + h.size, n - h.size);
    Check(a.result == b.result && a.consumed == b.consumed && a.data == b.data, "chunk scan independent of read sizes");
    Check(a.consumed <= n - h.size && a.data <= a.consumed, "chunk scan within input");
  }
}

void FuzzResponse(const char* p, size_t n, size_t limit, bool head_request) {
  Head h;
  std::string why;
  if (ParseHead(p, n, false, limit, &h, &why) != ParseStatus::kDone) return;
  CheckViews(h, p, h.size);
  Framing f;
  if (!ResponseFraming(h, head_request, &f)) return;
  bool chunked = f.kind == Framing::Kind::kChunked;
  std::string peer = "peer", out, peer_out;
  uint64_t bytes = 0;
  BuildResponseHead(h, false, chunked, n & 2, (n & 4) ? &peer : nullptr, &out, &peer_out, &bytes);
  Head again;
  ParseStatus st2 = ParseHead(out.data(), out.size(), false, out.size() + 1, &again, &why);
  if (st2 != ParseStatus::kDone) fprintf(stderr, "re-parse: %s\n%s\n", why.c_str(), out.c_str());
  Check(st2 == ParseStatus::kDone, "the downstream head parses");
  Framing f2;
  Check(ResponseFraming(again, head_request, &f2), "the downstream head has valid framing");
  Check(SameFraming(f, f2), "the downstream head keeps the body framing");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  // First byte: mode and limit; the rest is the message.
  uint8_t mode = data[0];
  const char* p = reinterpret_cast<const char*>(data + 1);
  size_t n = size - 1;
  size_t limit = (mode & 0x80) ? 64 : 65536;
  if (mode & 1) FuzzResponse(p, n, limit, mode & 2);
  else FuzzRequest(p, n, limit);
  return 0;
}
