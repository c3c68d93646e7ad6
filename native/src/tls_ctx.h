// OpenSSL contexts for the native mesh TLS relay (tls_relay.h), built from
// the PEM credentials the proxy already holds (its workload certificate, key
// and the mesh roots). The OpenSSL is Node's own: the addon is linked against
// nothing and resolves SSL_* from the node binary, so one process never holds
// two OpenSSLs (see native/CMakeLists.txt).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "netns_thread.h"

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

namespace weir {

struct TlsContextSpec {
  bool server = false;
  std::string cert_pem;   // leaf first, then intermediates
  std::string key_pem;
  std::string roots_pem;  // the mesh trust anchors peers must chain to
  // Client: offered in this order. Server: the first of the client's offer
  // that is in this list wins; a client offering none of them is refused.
  std::vector<std::string> alpn;
};

// TLS 1.3 only, peer certificate required and verified against the roots,
// no session tickets (every connection is a full mutual handshake, as the
// node:tls path does), read-ahead on. *out holds one reference (SSL_CTX_free).
std::optional<Failure> MakeTlsContext(const TlsContextSpec& spec, SSL_CTX** out);

// The URI subjectAltNames of the peer's verified certificate.
std::vector<std::string> PeerUriSans(SSL* ssl);

// OpenSSL's error queue as text (drained), prefixed with `what`.
std::string OpenSslErrors(const std::string& what);

}  // namespace weir
