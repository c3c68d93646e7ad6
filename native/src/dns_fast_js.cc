// Node-API glue of the DNS UDP fast path (dns_fast.h): the DnsFast class
// and dnsLocalAddress(fd). Misses reach JavaScript through a thread-safe
// function with a bounded queue, so a flood of new names costs dropped
// queries (clients retry), never unbounded memory.
#include "dns_fast_js.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "dns_fast.h"
#include "napi_args.h"

namespace weir {
namespace {

// Misses waiting for the JavaScript thread, at most.
constexpr size_t kMissQueue = 8192;

// Outlives the DnsFast object while misses are still queued: deleted by the
// thread-safe function's finalizer.
struct MissContext {
  bool stopped = false;
};

void DeliverMiss(Napi::Env env, Napi::Function callback, MissContext* ctx, FastMiss* raw);
using MissTsfn = Napi::TypedThreadSafeFunction<MissContext, FastMiss, DeliverMiss>;

void DeliverMiss(Napi::Env env, Napi::Function callback, MissContext* ctx, FastMiss* raw) {
  std::unique_ptr<FastMiss> miss(raw);
  if (env == nullptr || ctx == nullptr || ctx->stopped) return;
  try {
    callback.Call({Napi::Number::New(env, miss->socket),
                   Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<const uint8_t*>(&miss->peer), miss->peer_len),
                   Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<const uint8_t*>(miss->packet.data()), miss->packet.size())});
  } catch (const Napi::Error& e) {
    // Surfaces like an exception from any other callback (uncaughtException).
    e.ThrowAsJavaScriptException();
  }
}

// new DnsFast({sockets: number[][], stats: Float64Array[], layout, maxEntries}, onMiss(socket, peer, packet))
class DnsFast : public Napi::ObjectWrap<DnsFast> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "DnsFast",
                       {InstanceMethod<&DnsFast::Put>("put"), InstanceMethod<&DnsFast::Clear>("clear"),
                        InstanceMethod<&DnsFast::Send>("send"), InstanceMethod<&DnsFast::Stats>("stats"),
                        InstanceMethod<&DnsFast::Stop>("stop")});
  }

  explicit DnsFast(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DnsFast>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsFunction()) {
      ThrowTypeError(env, "DnsFast: expected (options, onMiss)");
    }
    Napi::Object o = info[0].As<Napi::Object>();
    FastStatsLayout layout = LayoutArg(o.Get("layout"));

    Napi::Value sockets_v = o.Get("sockets");
    if (!sockets_v.IsArray()) ThrowTypeError(env, "DnsFast: options.sockets must be an array (per thread) of fd arrays");
    Napi::Array sockets = sockets_v.As<Napi::Array>();
    std::vector<std::vector<int>> per_thread;
    for (uint32_t i = 0; i < sockets.Length(); i++) {
      Napi::Value t = sockets.Get(i);
      if (!t.IsArray()) ThrowTypeError(env, "DnsFast: options.sockets[" + std::to_string(i) + "] must be an array of fds");
      Napi::Array fds = t.As<Napi::Array>();
      std::vector<int> list;
      for (uint32_t j = 0; j < fds.Length(); j++) {
        list.push_back(static_cast<int>(
            IntegerArg(fds.Get(j), "DnsFast: options.sockets[" + std::to_string(i) + "][" + std::to_string(j) + "]", 0, 2147483647)));
      }
      per_thread.push_back(std::move(list));
    }

    Napi::Value stats_v = o.Get("stats");
    if (!stats_v.IsArray() || stats_v.As<Napi::Array>().Length() != per_thread.size()) {
      ThrowTypeError(env, "DnsFast: options.stats must hold one Float64Array per thread");
    }
    Napi::Array stats = stats_v.As<Napi::Array>();
    std::vector<double*> blocks;
    for (uint32_t i = 0; i < stats.Length(); i++) {
      Napi::Value s = stats.Get(i);
      if (!s.IsTypedArray() || s.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array ||
          s.As<Napi::Float64Array>().ElementLength() != layout.slots) {
        ThrowTypeError(env, "DnsFast: options.stats[" + std::to_string(i) + "] must be a Float64Array of " + std::to_string(layout.slots) +
                           " elements");
      }
      Napi::Float64Array block = s.As<Napi::Float64Array>();
      blocks.push_back(block.Data());
      // The threads write into this memory: keep it alive as long as they run.
      stats_refs_.push_back(Napi::Persistent(block));
    }
    size_t max_entries = static_cast<size_t>(IntegerArg(o.Get("maxEntries"), "DnsFast: options.maxEntries", 1, 10000000));

    context_ = new MissContext();
    tsfn_ = MissTsfn::New(env, info[1].As<Napi::Function>(), "weirDnsFastMiss", kMissQueue, 1, context_,
                          [](Napi::Env, void*, MissContext* ctx) { delete ctx; });
    // Like the pump: the fast path alone must not keep the process alive
    // (the TCP listeners of the DNS server do that).
    tsfn_.Unref(env);
    table_ = std::make_shared<AnswerTable>(max_entries);
    MissTsfn tsfn = tsfn_;
    auto failure = DnsFastEngine::Create(
        std::move(per_thread), std::move(blocks), std::move(layout), table_,
        [tsfn](std::unique_ptr<FastMiss> miss) mutable {
          if (tsfn.NonBlockingCall(miss.get()) != napi_ok) return false;  // queue full, or closing
          miss.release();
          return true;
        },
        &engine_);
    if (failure) {
      tsfn_.Release();
      ThrowFailure(env, *failure);
    }
    env_ = env;
    napi_add_env_cleanup_hook(env, TearDown, this);
  }

  ~DnsFast() override { Shutdown(true); }

 private:
  static FastStatsLayout LayoutArg(const Napi::Value& v) {
    Napi::Env env = v.Env();
    if (!v.IsObject()) ThrowTypeError(env, "DnsFast: options.layout must be an object");
    Napi::Object o = v.As<Napi::Object>();
    FastStatsLayout l;
    Napi::Uint8Array index = Uint8ArrayArg(o.Get("qtypeIndex"), "DnsFast: options.layout.qtypeIndex");
    if (index.ByteLength() != 65536) ThrowTypeError(env, "DnsFast: options.layout.qtypeIndex must have 65536 entries");
    l.qtype_index.assign(index.Data(), index.Data() + 65536);
    auto field = [&](const char* name, double max) {
      return static_cast<int>(IntegerArg(o.Get(name), std::string("DnsFast: options.layout.") + name, 0, max));
    };
    l.outcomes = field("outcomes", 64);
    l.local_outcome = field("localOutcome", 63);
    l.cached_outcome = field("cachedOutcome", 63);
    l.malformed_outcome = field("malformedOutcome", 63);
    l.latency_base = field("latencyBase", 1 << 20);
    l.latency_stride = field("latencyStride", 1024);
    l.slots = static_cast<size_t>(field("slots", 1 << 20));
    Napi::Value bounds = o.Get("bounds");
    if (!bounds.IsArray()) ThrowTypeError(env, "DnsFast: options.layout.bounds must be an array of numbers");
    Napi::Array b = bounds.As<Napi::Array>();
    for (uint32_t i = 0; i < b.Length(); i++) {
      Napi::Value x = b.Get(i);
      if (!x.IsNumber()) ThrowTypeError(env, "DnsFast: options.layout.bounds must be an array of numbers");
      l.bounds.push_back(x.As<Napi::Number>().DoubleValue());
    }
    // Every slot a thread may write must be inside its block.
    int max_label = 0;
    for (uint8_t x : l.qtype_index) max_label = std::max<int>(max_label, x);
    int max_outcome = std::max({l.local_outcome, l.cached_outcome, l.malformed_outcome});
    size_t counts_end = static_cast<size_t>(max_label + 1) * l.outcomes;
    size_t latency_end = static_cast<size_t>(l.latency_base) + static_cast<size_t>(max_outcome + 1) * l.latency_stride;
    if (max_outcome >= l.outcomes || l.latency_stride < static_cast<int>(l.bounds.size()) + 2 ||
        counts_end > static_cast<size_t>(l.latency_base) || latency_end > l.slots) {
      ThrowTypeError(env, "DnsFast: options.layout is inconsistent (a slot would fall outside the stats block)");
    }
    return l;
  }

  static void TearDown(void* arg) { static_cast<DnsFast*>(arg)->Shutdown(false); }

  // Stops the threads (joined) before the thread-safe function is released,
  // so no thread can call into a released function.
  void Shutdown(bool remove_hook) {
    if (!engine_) return;
    engine_->Stop();
    engine_.reset();
    context_->stopped = true;
    tsfn_.Release();
    if (remove_hook) napi_remove_env_cleanup_hook(env_, TearDown, this);
  }

  // put(query, response, lifetimeMs, kind: 'local' | 'cached') -> stored?
  Napi::Value Put(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Uint8Array query = Uint8ArrayArg(info[0], "DnsFast.put: query");
    Napi::Uint8Array response = Uint8ArrayArg(info[1], "DnsFast.put: response");
    double lifetime = IntegerArg(info[2], "DnsFast.put: lifetimeMs", 0, 86400000.0 * 7);
    std::string kind = info[3].IsString() ? info[3].As<Napi::String>().Utf8Value() : "";
    if (kind != "local" && kind != "cached") ThrowTypeError(env, "DnsFast.put: kind must be 'local' or 'cached'");
    if (!engine_) return Napi::Boolean::New(env, false);
    bool ok = table_->Put(query.Data(), query.ByteLength(), response.Data(), response.ByteLength(), static_cast<int64_t>(lifetime),
                          kind == "local" ? FastKind::kLocal : FastKind::kCached);
    return Napi::Boolean::New(env, ok);
  }

  // clear(mask): 1 = local answers, 2 = cached answers, 3 = both
  Napi::Value Clear(const Napi::CallbackInfo& info) {
    unsigned mask = static_cast<unsigned>(IntegerArg(info[0], "DnsFast.clear: mask", 0, 3));
    table_->Clear(mask);
    return info.Env().Undefined();
  }

  // send(socket, peer, response) -> sent?
  Napi::Value Send(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int socket = static_cast<int>(IntegerArg(info[0], "DnsFast.send: socket", 0, 1 << 20));
    Napi::Uint8Array peer = Uint8ArrayArg(info[1], "DnsFast.send: peer");
    Napi::Uint8Array data = Uint8ArrayArg(info[2], "DnsFast.send: response");
    if (peer.ByteLength() == 0 || peer.ByteLength() > sizeof(sockaddr_storage)) ThrowTypeError(env, "DnsFast.send: peer is not a socket address");
    if (!engine_) return Napi::Boolean::New(env, false);
    sockaddr_storage addr{};
    std::memcpy(&addr, peer.Data(), peer.ByteLength());
    return Napi::Boolean::New(env, engine_->Send(socket, addr, static_cast<socklen_t>(peer.ByteLength()), data.Data(), data.ByteLength()));
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
    DnsFastStats s = engine_ ? engine_->Stats() : DnsFastStats{};
    o.Set("answered", static_cast<double>(s.answered));
    o.Set("missed", static_cast<double>(s.missed));
    o.Set("dropped", static_cast<double>(s.dropped));
    o.Set("entries", static_cast<double>(table_ ? table_->Size() : 0));
    o.Set("running", engine_ != nullptr);
    return o;
  }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    Shutdown(true);
    return info.Env().Undefined();
  }

  napi_env env_ = nullptr;
  std::unique_ptr<DnsFastEngine> engine_;
  std::shared_ptr<AnswerTable> table_;
  MissTsfn tsfn_;
  MissContext* context_ = nullptr;
  std::vector<Napi::Reference<Napi::Float64Array>> stats_refs_;
};

// dnsLocalAddress(fd) -> {family, address, port}: where a socket the
// fast path owns is bound (it may have been bound to port 0).
Napi::Value DnsLocalAddressJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = static_cast<int>(IntegerArg(info[0], "dnsLocalAddress: fd", 0, 2147483647));
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) ThrowFailure(env, ErrnoFailure("dnsLocalAddress: getsockname", errno));
  char text[INET6_ADDRSTRLEN] = {};
  Napi::Object o = Napi::Object::New(env);
  if (ss.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &a->sin6_addr, text, sizeof(text));
    o.Set("family", "IPv6");
    o.Set("port", ntohs(a->sin6_port));
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &a->sin_addr, text, sizeof(text));
    o.Set("family", "IPv4");
    o.Set("port", ntohs(a->sin_port));
  }
  o.Set("address", text);
  return o;
}

}  // namespace

void RegisterDnsFast(Napi::Env env, Napi::Object exports) {
  exports.Set("DnsFast", DnsFast::Define(env));
  exports.Set("dnsLocalAddress", Napi::Function::New(env, DnsLocalAddressJs, "dnsLocalAddress"));
}

}  // namespace weir
