// Node-API glue of the native accept path (l4_native.h): the listening
// sockets, the route table push, and the record batches delivered to one
// JavaScript callback through a thread-safe function (one call per pump
// loop turn that had anything to say).
#include "l4_accept_js.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>

#include "l4_native.h"
#include "napi_args.h"
#include "pump.h"
#include "pump_js.h"

namespace weir {
namespace {

struct L4Binding;
void DeliverBatch(Napi::Env env, Napi::Function callback, L4Binding* binding, L4Batch* batch);
using BatchTsfn = Napi::TypedThreadSafeFunction<L4Binding, L4Batch, DeliverBatch>;

// Shared with the sink on the pump thread: after teardown the sink closes
// handed-off fds itself instead of calling into a dying environment.
struct SinkState {
  std::mutex mutex;
  bool alive = true;
  BatchTsfn tsfn;
};

struct L4Binding {
  std::shared_ptr<SinkState> sink;
  int next_listener = 1;
  int open_listeners = 0;
};

L4Binding& BindingOf(Napi::Env env) {
  static std::unordered_map<napi_env, std::unique_ptr<L4Binding>> all;  // JS threads only
  auto& slot = all[env];
  if (!slot) slot = std::make_unique<L4Binding>();
  return *slot;
}

void CloseHandoffs(L4Batch* batch) {
  for (L4Record& r : *batch) {
    if (r.fd >= 0) close(r.fd);
    r.fd = -1;
  }
}

const char* KindName(L4Record::Kind k) {
  switch (k) {
    case L4Record::Kind::kHandoff: return "handoff";
    case L4Record::Kind::kOpened: return "opened";
    case L4Record::Kind::kConnectFailed: return "connect-failed";
    case L4Record::Kind::kClosed: return "closed";
    case L4Record::Kind::kFailed: return "failed";
    case L4Record::Kind::kProgress: return "progress";
  }
  return "unknown";
}

void DeliverBatch(Napi::Env env, Napi::Function callback, L4Binding* binding, L4Batch* raw) {
  std::unique_ptr<L4Batch> batch(raw);
  if (env == nullptr || callback.IsEmpty()) return CloseHandoffs(batch.get());
  Napi::Array out = Napi::Array::New(env, batch->size());
  uint32_t i = 0;
  for (L4Record& r : *batch) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("kind", KindName(r.kind));
    o.Set("direction", r.direction);
    if (r.id) o.Set("id", static_cast<double>(r.id));
    switch (r.kind) {
      case L4Record::Kind::kHandoff:
        o.Set("fd", r.fd);
        r.fd = -1;  // JavaScript owns it now
        [[fallthrough]];
      case L4Record::Kind::kOpened:
      case L4Record::Kind::kFailed:
        if (!r.dst_ip.empty()) {
          o.Set("dstIp", r.dst_ip);
          o.Set("dstPort", r.dst_port);
        }
        o.Set("peerIp", r.peer_ip);
        o.Set("peerPort", r.peer_port);
        o.Set("startMs", r.start_wall_ms);
        if (r.kind == L4Record::Kind::kHandoff) break;
        o.Set("cluster", r.cluster);
        o.Set("detectReason", r.detect_reason);
        o.Set("passthrough", r.passthrough);
        o.Set("attempts", r.attempts);
        if (r.kind == L4Record::Kind::kOpened) {
          o.Set("upstreamIp", r.upstream_ip);
          o.Set("upstreamPort", r.upstream_port);
          if (!r.local_ip.empty()) {
            o.Set("localIp", r.local_ip);
            o.Set("localPort", r.local_port);
          }
        } else {
          o.Set("code", r.code);
          o.Set("message", r.message);
          o.Set("durationMs", r.duration_ms);
        }
        break;
      case L4Record::Kind::kConnectFailed:
        o.Set("upstreamIp", r.upstream_ip);
        o.Set("upstreamPort", r.upstream_port);
        o.Set("code", r.code);
        o.Set("message", r.message);
        o.Set("retrying", r.retrying);
        break;
      case L4Record::Kind::kProgress:
        o.Set("bytesAtoB", static_cast<double>(r.a_to_b));
        o.Set("bytesBtoA", static_cast<double>(r.b_to_a));
        break;
      case L4Record::Kind::kClosed:
        o.Set("bytesAtoB", static_cast<double>(r.a_to_b));
        o.Set("bytesBtoA", static_cast<double>(r.b_to_a));
        o.Set("reason", r.reason);
        if (!r.error.empty()) o.Set("error", r.error);
        o.Set("durationMs", r.duration_ms);
        break;
    }
    out.Set(i++, o);
  }
  // The callback must not throw into the pump's delivery: a bug costs this batch's telemetry, not the process.
  try {
    callback.Call({out});
  } catch (const Napi::Error& e) {
    fprintf(stderr, "weir: native L4 batch handler threw: %s\n", e.Message().c_str());
  }
}

void TearDown(void* arg) {
  auto* state = static_cast<std::shared_ptr<SinkState>*>(arg);
  {
    std::lock_guard<std::mutex> lock((*state)->mutex);
    (*state)->alive = false;
  }
  delete state;
}

int ListenSocket(Napi::Env env, int port, int backlog) {
  int fd = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) ThrowFailure(env, ErrnoFailure("l4Listen: socket", errno));
  int zero = 0, one = 1;
  // "::" with IPV6_V6ONLY off: one dual-stack socket, IPv4 clients arrive v4-mapped (as Node's listener did).
  setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in6 addr{};
  addr.sin6_family = AF_INET6;
  addr.sin6_addr = in6addr_any;
  addr.sin6_port = htons(static_cast<uint16_t>(port));
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || listen(fd, backlog) != 0) {
    int err = errno;
    close(fd);
    ThrowFailure(env, ErrnoFailure("l4Listen: [::]:" + std::to_string(port), err));
  }
  return fd;
}

// l4Listen(port, direction, onBatch) -> listener id
Napi::Value ListenJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int port = static_cast<int>(IntegerArg(info[0], "l4Listen: port", 1, 65535));
  if (!info[1].IsString()) ThrowTypeError(env, "l4Listen: direction must be 'outbound' or 'inbound'");
  const std::string dir = info[1].As<Napi::String>().Utf8Value();
  if (dir != "outbound" && dir != "inbound") ThrowTypeError(env, "l4Listen: direction must be 'outbound' or 'inbound' (bad value: \"" + dir + "\")");
  if (!info[2].IsFunction()) ThrowTypeError(env, "l4Listen: onBatch must be a function");
  L4Binding& b = BindingOf(env);
  PumpEngine& engine = PumpEngineFor(env);  // before our thread-safe function: its teardown hook then runs after ours
  if (!b.sink) {
    b.sink = std::make_shared<SinkState>();
    b.sink->tsfn = BatchTsfn::New(env, info[2].As<Napi::Function>(), "weirL4Batch", 0, 1, &b);
    napi_add_env_cleanup_hook(env, TearDown, new std::shared_ptr<SinkState>(b.sink));
  }
  const int fd = ListenSocket(env, port, 4096);
  std::shared_ptr<SinkState> state = b.sink;
  L4Sink sink = [state](std::unique_ptr<L4Batch> batch) {
    std::lock_guard<std::mutex> lock(state->mutex);
    if (state->alive && state->tsfn.NonBlockingCall(batch.get()) == napi_ok) {
      batch.release();
      return;
    }
    CloseHandoffs(batch.get());
  };
  const int id = b.next_listener++;
  const char* direction = dir == "outbound" ? "outbound" : "inbound";
  if (auto f = engine.Listen(fd, id, direction, std::move(sink))) {
    close(fd);
    ThrowFailure(env, *f);
  }
  b.open_listeners++;
  return Napi::Number::New(env, id);
}

Napi::Value UnlistenJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int id = static_cast<int>(IntegerArg(info[0], "l4Unlisten: id", 1, 2147483647));
  L4Binding& b = BindingOf(env);
  PumpEngineFor(env).Unlisten(id);
  if (b.open_listeners > 0 && --b.open_listeners == 0 && b.sink) b.sink->tsfn.Unref(env);
  return env.Undefined();
}

L4Route RouteArg(Napi::Env env, const Napi::Value& v, const std::string& where) {
  if (!v.IsObject()) ThrowTypeError(env, where + " must be an object {kind, cluster?, reason?}");
  Napi::Object o = v.As<Napi::Object>();
  L4Route r;
  Napi::Value kind = o.Get("kind");
  const std::string k = kind.IsString() ? kind.As<Napi::String>().Utf8Value() : "";
  if (k == "js") r.kind = L4Route::Kind::kJs;
  else if (k == "cluster") r.kind = L4Route::Kind::kCluster;
  else if (k == "original") r.kind = L4Route::Kind::kOriginal;
  else if (k == "inbound") r.kind = L4Route::Kind::kInbound;
  else ThrowTypeError(env, where + ".kind must be 'js', 'cluster', 'original' or 'inbound' (bad value: \"" + k + "\")");
  Napi::Value peek = o.Get("peek");
  if (!peek.IsUndefined()) {
    if (!peek.IsBoolean()) ThrowTypeError(env, where + ".peek must be a boolean");
    if (r.kind != L4Route::Kind::kInbound) ThrowTypeError(env, where + ".peek is for kind 'inbound' only");
    r.peek = peek.As<Napi::Boolean>().Value();
  }
  Napi::Value c = o.Get("cluster");
  if (!c.IsUndefined()) {
    if (!c.IsString()) ThrowTypeError(env, where + ".cluster must be a string");
    r.cluster = c.As<Napi::String>().Utf8Value();
  }
  if (r.kind == L4Route::Kind::kCluster && r.cluster.empty()) ThrowTypeError(env, where + ".cluster must name a cluster for kind 'cluster'");
  Napi::Value reason = o.Get("reason");
  if (!reason.IsUndefined()) {
    if (!reason.IsString()) ThrowTypeError(env, where + ".reason must be a string");
    r.reason = reason.As<Napi::String>().Utf8Value();
  }
  return r;
}

void RoutesInto(Napi::Env env, const Napi::Value& v, const std::string& where, std::unordered_map<std::string, L4Route>* out) {
  if (v.IsUndefined()) return;
  if (!v.IsObject()) ThrowTypeError(env, where + " must be an object (key → route)");
  Napi::Object o = v.As<Napi::Object>();
  Napi::Array keys = o.GetPropertyNames();
  for (uint32_t i = 0; i < keys.Length(); i++) {
    std::string key = keys.Get(i).As<Napi::String>().Utf8Value();
    (*out)[key] = RouteArg(env, o.Get(key), where + "[\"" + key + "\"]");
  }
}

// l4SetRoutes({exact, byPort, ownPorts, maxConnections, idleTimeoutMs, passthroughConnectTimeoutMs,
//   inboundSourceV4, inboundConnectTimeoutMs, inboundPeekTimeoutMs, aggregate}) — atomic.
Napi::Value SetRoutesJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) ThrowTypeError(env, "l4SetRoutes: table must be an object");
  Napi::Object o = info[0].As<Napi::Object>();
  auto t = std::make_shared<L4RouteTable>();
  RoutesInto(env, o.Get("exact"), "l4SetRoutes: exact", &t->exact);
  RoutesInto(env, o.Get("byPort"), "l4SetRoutes: byPort", &t->by_port);
  Napi::Value own = o.Get("ownPorts");
  if (!own.IsUndefined()) {
    if (!own.IsArray()) ThrowTypeError(env, "l4SetRoutes: ownPorts must be an array of ports");
    Napi::Array a = own.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); i++) t->own_ports.push_back(static_cast<int>(IntegerArg(a.Get(i), "l4SetRoutes: ownPorts[" + std::to_string(i) + "]", 1, 65535)));
  }
  t->max_connections = static_cast<uint64_t>(IntegerArg(o.Get("maxConnections"), "l4SetRoutes: maxConnections", 0, 1e9));
  Napi::Value idle = o.Get("idleTimeoutMs");
  if (!idle.IsUndefined()) t->idle_timeout_ms = static_cast<int64_t>(IntegerArg(idle, "l4SetRoutes: idleTimeoutMs", 0, 2147483647));
  Napi::Value ct = o.Get("passthroughConnectTimeoutMs");
  if (!ct.IsUndefined()) t->passthrough_connect_timeout_ms = static_cast<int64_t>(IntegerArg(ct, "l4SetRoutes: passthroughConnectTimeoutMs", 1, 2147483647));
  Napi::Value src = o.Get("inboundSourceV4");
  if (!src.IsUndefined()) {
    if (!src.IsString()) ThrowTypeError(env, "l4SetRoutes: inboundSourceV4 must be an IPv4 address string");
    t->inbound_source_v4 = src.As<Napi::String>().Utf8Value();
    DialTarget probe;
    if (auto f = ParseDialTarget("127.0.0.1", 1, t->inbound_source_v4, 1, &probe)) ThrowTypeError(env, "l4SetRoutes: inboundSourceV4: " + f->message);
  }
  Napi::Value ict = o.Get("inboundConnectTimeoutMs");
  if (!ict.IsUndefined()) t->inbound_connect_timeout_ms = static_cast<int64_t>(IntegerArg(ict, "l4SetRoutes: inboundConnectTimeoutMs", 1, 2147483647));
  Napi::Value ipt = o.Get("inboundPeekTimeoutMs");
  if (!ipt.IsUndefined()) t->inbound_peek_timeout_ms = static_cast<int64_t>(IntegerArg(ipt, "l4SetRoutes: inboundPeekTimeoutMs", 0, 2147483647));
  Napi::Value agg = o.Get("aggregate");
  if (!agg.IsUndefined()) {
    if (!agg.IsBoolean()) ThrowTypeError(env, "l4SetRoutes: aggregate must be a boolean");
    t->aggregate = agg.As<Napi::Boolean>().Value();
  }
  SetL4Routes(std::move(t));
  return env.Undefined();
}

// l4TakeSeries() -> [{key, opened, closed, failed, connectFailures, retries, aToB, bToA}]: what
// aggregated native connections added up to since the last call.
Napi::Value TakeSeriesJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto series = PumpEngineFor(env).TakeL4Series();
  Napi::Array out = Napi::Array::New(env, series.size());
  uint32_t i = 0;
  for (const auto& [key, s] : series) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("key", key);
    o.Set("opened", static_cast<double>(s.opened));
    o.Set("closed", static_cast<double>(s.closed));
    o.Set("failed", static_cast<double>(s.failed));
    o.Set("connectFailures", static_cast<double>(s.connect_failures));
    o.Set("retries", static_cast<double>(s.retries));
    o.Set("aToB", static_cast<double>(s.a_to_b));
    o.Set("bToA", static_cast<double>(s.b_to_a));
    out.Set(i++, o);
  }
  return out;
}

Napi::Value AbortNativeJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bool reset = info[0].IsObject() && info[0].As<Napi::Object>().Get("reset").IsBoolean() && info[0].As<Napi::Object>().Get("reset").As<Napi::Boolean>().Value();
  PumpEngineFor(env).AbortNative(reset);
  return env.Undefined();
}

Napi::Value StatsJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  L4Stats s = PumpEngineFor(env).NativeStats();
  Napi::Object o = Napi::Object::New(env);
  o.Set("accepted", static_cast<double>(s.accepted));
  o.Set("native", static_cast<double>(s.native));
  o.Set("handedOff", static_cast<double>(s.handed_off));
  o.Set("dropped", static_cast<double>(s.dropped));
  o.Set("retries", static_cast<double>(s.retries));
  o.Set("active", static_cast<double>(s.active));
  return o;
}

}  // namespace

void RegisterL4Accept(Napi::Env env, Napi::Object exports) {
  exports.Set("l4Listen", Napi::Function::New(env, ListenJs, "l4Listen"));
  exports.Set("l4Unlisten", Napi::Function::New(env, UnlistenJs, "l4Unlisten"));
  exports.Set("l4SetRoutes", Napi::Function::New(env, SetRoutesJs, "l4SetRoutes"));
  exports.Set("l4AbortNative", Napi::Function::New(env, AbortNativeJs, "l4AbortNative"));
  exports.Set("l4Stats", Napi::Function::New(env, StatsJs, "l4Stats"));
  exports.Set("l4TakeSeries", Napi::Function::New(env, TakeSeriesJs, "l4TakeSeries"));
}

}  // namespace weir
