// Header rules between the hops of the native HTTP/1.1 path — the same as
// the JS chain's (src/proxy/http/headers.ts, telemetry/tracing/
// trace-context.ts): hop-by-hop headers never cross, x-request-id is
// generated when absent, x-forwarded-proto is set, weir's exchange headers
// (x-weir-peer, x-weir-downstream-protocol) are added toward a mesh peer
// and removed before the app or the client sees them, and B3/traceparent
// are rewritten so the next hop's parent is this proxy's span.
#pragma once

#include <string>

#include "h1_config.h"
#include "h1_parse.h"

namespace weir {
namespace h1 {

struct RequestFacts {
  std::string authority;  // as sent on (Host, else the original destination)
  std::string peer_in;    // x-weir-peer received
  uint64_t header_bytes = 0;  // as istio_request_bytes counts them (headers.ts headerBytes)
};

// The upstream request head for `h` (request line + headers + CRLF).
void BuildRequestHead(const Head& h, const Config& c, bool mesh_peer, bool chunked, bool upgrade, const std::string& fallback_authority,
                      std::string* out, RequestFacts* facts);

// The downstream response head. `close`: tell the client the connection
// ends after this response; `chunked`: the body goes on chunked;
// `peer_header`: add this proxy's x-weir-peer (inbound, answering a peer).
void BuildResponseHead(const Head& h, bool upgrade, bool chunked, bool close, const std::string* peer_header, std::string* out,
                       std::string* peer_out, uint64_t* header_bytes);

// A complete local answer (400, 431, 502, 503 ...).
std::string LocalResponse(int code, const std::string& body, bool close);

}  // namespace h1
}  // namespace weir
