// A strict HTTP/1.x message-head parser and a chunked-body scanner for the
// native HTTP/1.1 fast path (h1_engine). Written for a proxy: it never
// copies (headers are views into the caller's buffer), it refuses what
// RFC 9112 lets a recipient refuse and what request smuggling needs
// (bare LF, obs-fold, whitespace before the colon, non-token names,
// control bytes in values, duplicate or malformed Content-Length,
// Transfer-Encoding other than exactly "chunked", TE together with CL),
// and it knows nothing about sockets, so it is testable on its own.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace weir {
namespace h1 {

struct Header {
  std::string_view name;
  std::string_view value;  // leading/trailing whitespace removed
};

struct Head {
  // Request line
  std::string_view method;
  std::string_view target;
  // Status line
  int status = 0;
  std::string_view reason;
  int minor = 1;  // HTTP/1.<minor>
  std::vector<Header> headers;
  size_t size = 0;  // bytes of the whole head, final CRLF included
};

enum class ParseStatus { kIncomplete, kDone, kBad, kTooLarge };

// Parses the head at p[0..n). kIncomplete: no end yet and n < limit.
// kTooLarge: no end within `limit` bytes, so the head would exceed it (the
// caller answers 431).
// kBad: malformed; *why says what (for logs and tests).
ParseStatus ParseHead(const char* p, size_t n, bool request, size_t limit, Head* out, std::string* why);

// How a message's body is delimited.
struct Framing {
  enum class Kind { kNone, kLength, kChunked, kUntilClose } kind = Kind::kNone;
  uint64_t length = 0;
};

// Request framing (RFC 9112 §6): kBad on CL+TE, several CL, a CL that is
// not digits, or TE other than exactly "chunked".
bool RequestFraming(const Head& h, Framing* out, std::string* why);
// Response framing: no body for HEAD, 1xx, 204, 304; chunked; length;
// else until close. false on a malformed or duplicate Content-Length.
bool ResponseFraming(const Head& h, bool head_request, Framing* out);

bool IEquals(std::string_view a, std::string_view b);
// Whether a comma-separated header value lists `token` (case-insensitive).
bool HasToken(std::string_view value, std::string_view token);
const Header* Find(const Head& h, std::string_view name);

// Walks a chunked body as bytes arrive, without decoding into a copy: Feed
// reports how much of the input belongs to this body (the rest is the next
// message) and, per call, the spans that are chunk data (for re-framing
// toward an HTTP/1.0 client and for byte counts). Trailers are skipped over
// (they stay in the raw bytes a chunked-to-chunked relay forwards).
class ChunkScanner {
 public:
  enum class Result { kMore, kDone, kBad };
  // `on_data(ptr, len)` for each data span; *consumed = bytes of p used.
  template <typename F>
  Result Feed(const char* p, size_t n, size_t* consumed, F on_data) {
    size_t i = 0;
    while (i < n) {
      if (state_ == kData) {
        size_t take = static_cast<size_t>(std::min<uint64_t>(remaining_, n - i));
        on_data(p + i, take);
        i += take;
        remaining_ -= take;
        if (remaining_ == 0) state_ = kDataCR;
        continue;
      }
      Result r = Step(static_cast<unsigned char>(p[i]));
      ++i;
      if (r != Result::kMore) {
        *consumed = i;
        return r;
      }
    }
    *consumed = i;
    return Result::kMore;
  }
  bool Done() const { return state_ == kDone; }

 private:
  Result Step(unsigned char c);
  enum State { kSize, kExt, kSizeLF, kData, kDataCR, kDataLF, kTrailerStart, kTrailer, kTrailerLF, kEndLF, kDone };
  State state_ = kSize;
  uint64_t remaining_ = 0;
  int digits_ = 0;
};

}  // namespace h1
}  // namespace weir
