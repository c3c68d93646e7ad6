#include "tls_ctx.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <cstring>
#include <memory>

namespace weir {

std::string OpenSslErrors(const std::string& what) {
  std::string out = what;
  char buf[256];
  for (unsigned long e; (e = ERR_get_error()) != 0;) {
    ERR_error_string_n(e, buf, sizeof(buf));
    out += out == what ? ": " : "; ";
    out += buf;
  }
  return out;
}

namespace {

struct BioFree { void operator()(BIO* b) const { BIO_free(b); } };

Failure SslFailure(const std::string& what) { return Failure{OpenSslErrors(what), "ETLSCONFIG"}; }

// Wire format of an ALPN list: (u8 length, name)...
std::string AlpnWire(const std::vector<std::string>& names) {
  std::string wire;
  for (const auto& n : names) {
    wire.push_back(static_cast<char>(n.size()));
    wire += n;
  }
  return wire;
}

int SelectAlpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in, unsigned int inlen, void* arg) {
  const auto* ours = static_cast<const std::string*>(arg);
  unsigned char* sel = nullptr;
  int r = SSL_select_next_proto(&sel, outlen, reinterpret_cast<const unsigned char*>(ours->data()), static_cast<unsigned>(ours->size()), in, inlen);
  if (r != OPENSSL_NPN_NEGOTIATED) return SSL_TLSEXT_ERR_ALERT_FATAL;  // no_application_protocol, as node:tls does
  *out = sel;
  return SSL_TLSEXT_ERR_OK;
}

// The server's ALPN list lives as long as its context (freed with it).
int AlpnIndex() {
  static int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr,
                                              [](void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) { delete static_cast<std::string*>(ptr); });
  return index;
}

}  // namespace

std::optional<Failure> MakeTlsContext(const TlsContextSpec& spec, SSL_CTX** out) {
  *out = nullptr;
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(spec.server ? TLS_server_method() : TLS_client_method());
  if (ctx == nullptr) return SslFailure("SSL_CTX_new");
  auto fail = [&](const std::string& what) { SSL_CTX_free(ctx); return SslFailure(what); };
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1 || SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1) return fail("TLS 1.3 only");
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_num_tickets(ctx, 0);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  // RELEASE_BUFFERS: OpenSSL's own record buffers go back while a connection is idle.
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
  // Read-ahead with a 64 KiB buffer: one read(2) takes several records, not a header and then a body.
  SSL_CTX_set_read_ahead(ctx, 1);
  SSL_CTX_set_default_read_buffer_len(ctx, 64 * 1024);
  // AES-128-GCM first (BoringSSL's order, so Envoy's): with AES-NI the cheapest per byte; the others stay offered.
  if (SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256") != 1) return fail("ciphersuites");

  std::unique_ptr<BIO, BioFree> certs(BIO_new_mem_buf(spec.cert_pem.data(), static_cast<int>(spec.cert_pem.size())));
  X509* leaf = PEM_read_bio_X509(certs.get(), nullptr, nullptr, nullptr);
  if (leaf == nullptr) return fail("cert: no PEM certificate");
  int ok = SSL_CTX_use_certificate(ctx, leaf);
  X509_free(leaf);
  if (ok != 1) return fail("cert: SSL_CTX_use_certificate");
  for (X509* extra; (extra = PEM_read_bio_X509(certs.get(), nullptr, nullptr, nullptr)) != nullptr;) {
    if (SSL_CTX_add0_chain_cert(ctx, extra) != 1) { X509_free(extra); return fail("cert: intermediate"); }
  }
  ERR_clear_error();  // the loop ends on "no start line"
  std::unique_ptr<BIO, BioFree> keys(BIO_new_mem_buf(spec.key_pem.data(), static_cast<int>(spec.key_pem.size())));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(keys.get(), nullptr, nullptr, nullptr);
  if (key == nullptr) return fail("key: no PEM private key");
  ok = SSL_CTX_use_PrivateKey(ctx, key);
  EVP_PKEY_free(key);
  if (ok != 1 || SSL_CTX_check_private_key(ctx) != 1) return fail("key: does not match the certificate");

  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  std::unique_ptr<BIO, BioFree> roots(BIO_new_mem_buf(spec.roots_pem.data(), static_cast<int>(spec.roots_pem.size())));
  int anchors = 0;
  for (X509* root; (root = PEM_read_bio_X509(roots.get(), nullptr, nullptr, nullptr)) != nullptr; anchors++) {
    int added = X509_STORE_add_cert(store, root);
    X509_free(root);
    if (added != 1) return fail("roots: X509_STORE_add_cert");
  }
  ERR_clear_error();
  if (anchors == 0) return Failure{"roots: no PEM certificate", "ETLSCONFIG"};
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);

  std::string wire = AlpnWire(spec.alpn);
  if (spec.server) {
    auto* held = new std::string(wire);
    SSL_CTX_set_ex_data(ctx, AlpnIndex(), held);
    SSL_CTX_set_alpn_select_cb(ctx, SelectAlpn, held);
  } else if (!wire.empty() && SSL_CTX_set_alpn_protos(ctx, reinterpret_cast<const unsigned char*>(wire.data()), static_cast<unsigned>(wire.size())) != 0) {
    return fail("alpn");
  }
  *out = ctx;
  return std::nullopt;
}

std::vector<std::string> PeerUriSans(SSL* ssl) {
  std::vector<std::string> uris;
  X509* cert = SSL_get0_peer_certificate(ssl);
  if (cert == nullptr) return uris;
  auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (names == nullptr) return uris;
  for (int i = 0; i < sk_GENERAL_NAME_num(names); i++) {
    const GENERAL_NAME* n = sk_GENERAL_NAME_value(names, i);
    if (n->type != GEN_URI) continue;
    const ASN1_STRING* s = n->d.uniformResourceIdentifier;
    uris.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)), static_cast<size_t>(ASN1_STRING_length(s)));
  }
  GENERAL_NAMES_free(names);
  return uris;
}

}  // namespace weir
