// The native mesh TLS relay: one epoll thread that runs mutual TLS 1.3
// handshakes and then moves bytes between a plaintext socket and a TLS
// socket with OpenSSL (Node's own, see tls_ctx.h), so the bulk bytes of an
// opaque TCP mesh connection never cross into JavaScript. Two phases, so no
// byte is relayed before JavaScript has said who may talk:
//   Start  — handshake on the TLS fd (client or server role); the thread
//            reports the verified peer's URI SANs and the ALPN, then holds
//            the session without reading from it;
//   Attach — JavaScript checked the identity (SPIFFE ID, AuthorizationPolicy)
//            and connected the plaintext side: relay both ways, half-close
//            (FIN <-> close_notify) and resets carried over, idle timeout.
// Every session ends with exactly one Done event. Pure C++; the Node-API
// glue is tls_relay_js.cc.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "netns_thread.h"

typedef struct ssl_ctx_st SSL_CTX;

namespace weir {

struct TlsCounters {
  std::atomic<uint64_t> plain_to_tls{0};  // plaintext bytes encrypted and written to the TLS side
  std::atomic<uint64_t> tls_to_plain{0};  // plaintext bytes decrypted and written to the plaintext side
};

struct TlsStartSpec {
  SSL_CTX* ctx = nullptr;  // the session takes its own reference
  bool server = false;
  int fd = -1;             // connected TCP socket; duplicated, the caller keeps (and closes) its own
  std::string initial;     // bytes the caller already read from fd (a peeked ClientHello)
  std::string sni;         // client: server name to send (empty: none)
  int64_t handshake_timeout_ms = 10000;
};

struct TlsEvent {
  enum class Kind { kHandshake, kDone } kind = Kind::kDone;
  uint64_t id = 0;
  // kHandshake
  std::vector<std::string> peer_uris;
  std::string alpn;
  // kDone. reason: closed | reset-by-plain | reset-by-tls | idle | aborted | error | handshake-failed
  std::string reason;
  std::string error;
  uint64_t plain_to_tls = 0;
  uint64_t tls_to_plain = 0;
  double duration_ms = 0;
};

struct TlsEngineStats {
  uint64_t active = 0;
  uint64_t started = 0;
  uint64_t handshakes = 0;
  uint64_t handshake_failures = 0;
  uint64_t finished = 0;
};

class TlsRelayEngine {
 public:
  using OnEvent = std::function<void(std::unique_ptr<TlsEvent>)>;  // called on the relay thread

  static std::optional<Failure> Create(OnEvent on_event, std::unique_ptr<TlsRelayEngine>* out);
  ~TlsRelayEngine();
  TlsRelayEngine(const TlsRelayEngine&) = delete;
  TlsRelayEngine& operator=(const TlsRelayEngine&) = delete;

  std::optional<Failure> Start(const TlsStartSpec& spec, uint64_t* id, std::shared_ptr<TlsCounters>* counters);
  // After the Handshake event: relay between the session and plain_fd
  // (duplicated). initial: plaintext already read from plain_fd, encrypted first.
  std::optional<Failure> Attach(uint64_t id, int plain_fd, std::string initial, int64_t idle_timeout_ms);
  // Ends a session (Done reason `aborted`); reset sends RST on both sockets.
  void Abort(uint64_t id, bool reset);
  void Stop();
  TlsEngineStats Stats() const;

  struct Session;  // tls_relay.cc

 private:
  TlsRelayEngine() = default;
  struct Command {
    enum class Kind { kStart, kAttach, kAbort } kind = Kind::kAbort;
    std::unique_ptr<Session> session;
    uint64_t id = 0;
    int fd = -1;
    std::string initial;
    int64_t idle_timeout_ms = 0;
    bool reset = false;
  };
  void Enqueue(Command c);
  void Run();
  void TakeCommands(int64_t now);
  void Handshake(Session* s);
  void Relay(Session* s, int side, uint32_t events);
  void Interest(Session* s);
  void Finish(Session* s, const std::string& reason, const std::string& error, bool rst);
  void Expire(int64_t now);

  OnEvent on_event_;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::mutex stop_mutex_;
  bool stopped_ = false;
  std::mutex commands_mutex_;
  std::vector<Command> commands_;
  std::atomic<uint64_t> next_id_{1};
  std::atomic<uint64_t> active_{0}, started_{0}, handshakes_{0}, handshake_failures_{0}, finished_{0};
  // Relay thread only.
  std::unordered_map<uint64_t, std::unique_ptr<Session>> sessions_;
  std::vector<uint64_t> dead_;
  std::vector<uint64_t> rerun_;  // used their round budget: run again before sleeping
  int64_t next_scan_ms_ = 0;
};

}  // namespace weir
