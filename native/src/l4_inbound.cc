// Native inbound (kInbound routes of the L4 table): a connection captured
// to 15006 for an app port JavaScript declared opaque TCP, with no
// PeerAuthentication STRICT and no AuthorizationPolicy for this workload
// (src/proxy/native-l4/inbound.ts decides, and pushes nothing otherwise).
// The pump thread dials the app on loopback from the inbound source
// address and pumps, as the JavaScript TCP chain would.
//
// With mesh security on, the mesh gate's one question is still asked
// first: is the client's first byte a TLS record (0x16)? Then the
// connection is handed to JavaScript untouched — MSG_PEEK leaves the bytes
// in the socket — where the gate terminates mesh mTLS or passes the app's
// own TLS through. Plaintext stays here. Silence until the peek deadline
// (the gate's own timeout) means a server-first app: dialled as is.
#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

#include "pump.h"
#include "pump_state.h"

namespace weir {

using namespace pump_internal;

namespace {
constexpr unsigned char kTlsHandshakeRecord = 0x16;
}  // namespace

// The app's address for an inbound connection to dst: loopback of dst's
// family on the same port (an app listening on the wildcard or on loopback
// both take it). False: not dialable (JavaScript then takes the connection).
bool PumpEngine::PrepareInbound(Pump* p, NativeConn* n, const Endpoint& dst, const L4RouteTable& table) {
  const bool v6 = dst.family == 6;
  const std::string app = v6 ? "::1" : "127.0.0.1";
  if (ParseDialTarget(app, dst.port, v6 ? "" : table.inbound_source_v4, table.inbound_connect_timeout_ms, &p->dial)) return false;
  n->upstream_ip = app;
  n->upstream_port = dst.port;
  n->attempts = 1;
  n->max_attempts = 1;  // one app, one address: the JavaScript chain tries it once too
  return true;
}

void PumpEngine::BeginPeek(Pump* p) {
  p->phase = Pump::Phase::kPeeking;
  p->connect_deadline_ms = NowMs() + std::max<int64_t>(CurrentL4Routes()->inbound_peek_timeout_ms, 0);
  idle_heap_.emplace_back(p->connect_deadline_ms, p->id);
  std::push_heap(idle_heap_.begin(), idle_heap_.end(), EarlierDeadline);
  // The first byte is often there already (the client wrote with its handshake's last ACK).
  TryPeek(p);
}

void PumpEngine::TryPeek(Pump* p) {
  if (p->done || p->phase != Pump::Phase::kPeeking) return;
  unsigned char first = 0;
  const ssize_t r = recv(p->fd[0], &first, 1, MSG_PEEK | MSG_DONTWAIT);
  if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;  // the next edge brings it
  if (r < 0) {
    // Gone before saying anything: nothing was opened, so nothing to reset upstream.
    const int err = errno;
    return Finish(p, "reset-by-a", std::string("a: ") + ErrnoText(err), false, false);
  }
  if (r == 1 && first == kTlsHandshakeRecord) return HandOffPeeked(p);
  // Plaintext, or an end of stream before any byte (dialled anyway, as the
  // JavaScript chain does: the app sees the half-close).
  DialPeeked(p);
}

void PumpEngine::PeekTimedOut(Pump* p) {
  if (p->done || p->phase != Pump::Phase::kPeeking) return;
  DialPeeked(p);  // silence: a server-first app
}

// The peek kept the connection: it is native from here, dialled like any other.
void PumpEngine::DialPeeked(Pump* p) {
  l4_native_.fetch_add(1, std::memory_order_relaxed);
  p->phase = Pump::Phase::kConnecting;
  BeginDial(p);
}

// TLS first: the connection becomes JavaScript's as if the native path had
// never looked at it (a handoff record, the fd intact, its bytes unread).
void PumpEngine::HandOffPeeked(Pump* p) {
  NativeConn* n = p->native.get();
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, p->fd[0], nullptr);
  L4Record rec;
  rec.kind = L4Record::Kind::kHandoff;
  rec.direction = n->direction;
  rec.fd = p->fd[0];
  p->fd[0] = -1;
  rec.dst_ip = n->dst_ip;
  rec.dst_port = n->dst_port;
  rec.peer_ip = n->peer_ip;
  rec.peer_port = n->peer_port;
  rec.start_wall_ms = n->start_wall_ms;
  // Freed after this loop turn's batch, like a finished pump, but with no outcome to report.
  p->done = true;
  done_ids_.push_back(p->id);
  active_.fetch_sub(1);
  finished_.fetch_add(1);
  l4_active_.fetch_sub(1, std::memory_order_relaxed);
  l4_handed_off_.fetch_add(1, std::memory_order_relaxed);
  AddRecord(std::move(rec));
}

}  // namespace weir
