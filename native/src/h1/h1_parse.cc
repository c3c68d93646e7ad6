// See h1_parse.h. Every rule here is RFC 9112's; where the RFC allows a
// recipient to be lenient (bare LF, obs-fold) this parser is not, because a
// proxy that reads a message differently from the server behind it is how
// request smuggling happens.
#include "h1_parse.h"

#include <algorithm>
#include <string.h>

#include <cstring>

namespace weir {
namespace h1 {
namespace {

bool IsTchar(unsigned char c) {
  if (c >= '0' && c <= '9') return true;
  if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return true;
  return std::strchr("!#$%&'*+-.^_`|~", c) != nullptr && c != 0;
}

bool IsToken(std::string_view s) {
  if (s.empty()) return false;
  for (unsigned char c : s)
    if (!IsTchar(c)) return false;
  return true;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool ParseVersion(std::string_view v, int* minor) {
  if (v == "HTTP/1.1") *minor = 1;
  else if (v == "HTTP/1.0") *minor = 0;
  else return false;
  return true;
}

bool Digits(std::string_view s, uint64_t* out) {
  if (s.empty() || s.size() > 18) return false;
  uint64_t n = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  *out = n;
  return true;
}

}  // namespace

bool IEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); i++) {
    unsigned char x = static_cast<unsigned char>(a[i]), y = static_cast<unsigned char>(b[i]);
    if (x >= 'A' && x <= 'Z') x |= 0x20;
    if (y >= 'A' && y <= 'Z') y |= 0x20;
    if (x != y) return false;
  }
  return true;
}

bool HasToken(std::string_view value, std::string_view token) {
  while (!value.empty()) {
    size_t comma = value.find(',');
    std::string_view part = Trim(value.substr(0, comma));
    if (IEquals(part, token)) return true;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return false;
}

const Header* Find(const Head& h, std::string_view name) {
  for (const Header& x : h.headers)
    if (IEquals(x.name, name)) return &x;
  return nullptr;
}

ParseStatus ParseHead(const char* p, size_t n, bool request, size_t limit, Head* out, std::string* why) {
  // Find the end of the head first: nothing is interpreted before it is whole.
  const char* end = static_cast<const char*>(memmem(p, n, "\r\n\r\n", 4));
  if (end) end += 4;
  if (!end) {
    // A bare LF anywhere is refused as soon as it is seen.
    for (size_t i = 0; i < n; i++)
      if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r')) {
        *why = "bare LF";
        return ParseStatus::kBad;
      }
    return n >= limit ? ParseStatus::kTooLarge : ParseStatus::kIncomplete;
  }
  if (static_cast<size_t>(end - p) > limit) return ParseStatus::kTooLarge;
  out->headers.clear();
  out->size = static_cast<size_t>(end - p);
  std::string_view all(p, out->size - 2);  // up to and including the last header's CRLF
  size_t eol = all.find("\r\n");
  std::string_view line = all.substr(0, eol);
  for (unsigned char c : line)
    if (c < 0x20 && c != '\t') {
      *why = "control byte in the start line";
      return ParseStatus::kBad;
    }
  size_t s1 = line.find(' ');
  if (s1 == std::string_view::npos) {
    *why = "malformed start line";
    return ParseStatus::kBad;
  }
  if (request) {
    size_t s2 = line.find(' ', s1 + 1);
    if (s2 == std::string_view::npos || line.find(' ', s2 + 1) != std::string_view::npos) {
      *why = "malformed request line";
      return ParseStatus::kBad;
    }
    out->method = line.substr(0, s1);
    out->target = line.substr(s1 + 1, s2 - s1 - 1);
    if (!IsToken(out->method) || out->target.empty() || out->target.find('\t') != std::string_view::npos) {
      *why = "malformed request line";
      return ParseStatus::kBad;
    }
    for (unsigned char c : out->target)
      if (c <= 0x20 || c == 0x7f) {
        *why = "malformed request target";
        return ParseStatus::kBad;
      }
    if (!ParseVersion(line.substr(s2 + 1), &out->minor)) {
      *why = "unsupported HTTP version";
      return ParseStatus::kBad;
    }
  } else {
    if (!ParseVersion(line.substr(0, s1), &out->minor)) {
      *why = "unsupported HTTP version";
      return ParseStatus::kBad;
    }
    std::string_view code = line.substr(s1 + 1, 3);
    uint64_t status = 0;
    if (code.size() != 3 || !Digits(code, &status) || status < 100) {
      *why = "malformed status code";
      return ParseStatus::kBad;
    }
    out->status = static_cast<int>(status);
    out->reason = line.size() > s1 + 5 ? line.substr(s1 + 5) : std::string_view();
    if (line.size() > s1 + 4 && line[s1 + 4] != ' ') {
      *why = "malformed status line";
      return ParseStatus::kBad;
    }
  }
  size_t at = eol + 2;
  while (at < all.size()) {
    size_t e = all.find("\r\n", at);
    std::string_view hl = all.substr(at, e - at);
    at = e + 2;
    if (hl.empty()) break;
    if (hl.front() == ' ' || hl.front() == '\t') {
      *why = "obsolete line folding";
      return ParseStatus::kBad;
    }
    size_t colon = hl.find(':');
    if (colon == std::string_view::npos || !IsToken(hl.substr(0, colon))) {
      *why = "malformed header name";
      return ParseStatus::kBad;
    }
    std::string_view value = hl.substr(colon + 1);
    for (unsigned char c : value)
      if ((c < 0x20 && c != '\t') || c == 0x7f) {
        *why = "control byte in a header value";
        return ParseStatus::kBad;
      }
    out->headers.push_back(Header{hl.substr(0, colon), Trim(value)});
  }
  return ParseStatus::kDone;
}

bool RequestFraming(const Head& h, Framing* out, std::string* why) {
  const Header* te = nullptr;
  const Header* cl = nullptr;
  for (const Header& x : h.headers) {
    if (IEquals(x.name, "transfer-encoding")) {
      if (te) { *why = "several Transfer-Encoding headers"; return false; }
      te = &x;
    } else if (IEquals(x.name, "content-length")) {
      if (cl) { *why = "several Content-Length headers"; return false; }
      cl = &x;
    }
  }
  if (te && cl) { *why = "both Transfer-Encoding and Content-Length"; return false; }
  if (te) {
    if (!IEquals(te->value, "chunked")) { *why = "Transfer-Encoding other than chunked"; return false; }
    if (h.minor == 0) { *why = "Transfer-Encoding in an HTTP/1.0 request"; return false; }
    out->kind = Framing::Kind::kChunked;
    return true;
  }
  if (cl) {
    if (!Digits(cl->value, &out->length)) { *why = "malformed Content-Length"; return false; }
    out->kind = out->length ? Framing::Kind::kLength : Framing::Kind::kNone;
    return true;
  }
  out->kind = Framing::Kind::kNone;
  return true;
}

bool ResponseFraming(const Head& h, bool head_request, Framing* out) {
  if (head_request || h.status < 200 || h.status == 204 || h.status == 304) {
    out->kind = Framing::Kind::kNone;
    return true;
  }
  const Header* te = nullptr;
  const Header* cl = nullptr;
  for (const Header& x : h.headers) {
    if (IEquals(x.name, "transfer-encoding")) {
      if (te) return false;
      te = &x;
    } else if (IEquals(x.name, "content-length")) {
      if (cl) return false;
      cl = &x;
    }
  }
  if (te) {
    // Only exactly "chunked", as for requests. Transfer-Encoding is
    // hop-by-hop: the response head toward the client is rebuilt with
    // "chunked" or nothing, so any other coding ("gzip", "gzip, chunked")
    // would reach the client undeclared, and with a Content-Length next to
    // it (which RFC 9112 §6.3 makes TE override) the client would frame the
    // body by that length: a response desync. Found by native/fuzz/h1_fuzz.
    // The engine answers such a response with 502 UPE.
    if (!IEquals(Trim(te->value), "chunked")) return false;
    out->kind = Framing::Kind::kChunked;
    return true;
  }
  if (cl) {
    if (!Digits(cl->value, &out->length)) return false;
    out->kind = out->length ? Framing::Kind::kLength : Framing::Kind::kNone;
    return true;
  }
  out->kind = Framing::Kind::kUntilClose;
  return true;
}

ChunkScanner::Result ChunkScanner::Step(unsigned char c) {
  switch (state_) {
    case kSize: {
      int v = (c >= '0' && c <= '9') ? c - '0' : ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') ? (c | 0x20) - 'a' + 10 : -1;
      if (v >= 0) {
        if (++digits_ > 15) return Result::kBad;
        remaining_ = remaining_ * 16 + static_cast<uint64_t>(v);
        return Result::kMore;
      }
      if (digits_ == 0) return Result::kBad;
      if (c == ';' || c == ' ' || c == '\t') { state_ = kExt; return Result::kMore; }
      if (c == '\r') { state_ = kSizeLF; return Result::kMore; }
      return Result::kBad;
    }
    case kExt:
      if (c == '\r') state_ = kSizeLF;
      else if (c == '\n' || (c < 0x20 && c != '\t')) return Result::kBad;
      return Result::kMore;
    case kSizeLF:
      if (c != '\n') return Result::kBad;
      digits_ = 0;
      state_ = remaining_ == 0 ? kTrailerStart : kData;
      return Result::kMore;
    case kDataCR:
      if (c != '\r') return Result::kBad;
      state_ = kDataLF;
      return Result::kMore;
    case kDataLF:
      if (c != '\n') return Result::kBad;
      state_ = kSize;
      return Result::kMore;
    case kTrailerStart:
      if (c == '\r') { state_ = kEndLF; return Result::kMore; }
      if (c == '\n') return Result::kBad;
      state_ = kTrailer;
      return Result::kMore;
    case kTrailer:
      if (c == '\r') state_ = kTrailerLF;
      else if (c == '\n') return Result::kBad;
      return Result::kMore;
    case kTrailerLF:
      if (c != '\n') return Result::kBad;
      state_ = kTrailerStart;
      return Result::kMore;
    case kEndLF:
      if (c != '\n') return Result::kBad;
      state_ = kDone;
      return Result::kDone;
    case kData:
    case kDone:
      break;
  }
  return Result::kBad;
}

}  // namespace h1
}  // namespace weir
