// Node-API glue of the native mesh TLS relay: TLS contexts as externals
// (freed by the GC; sessions hold their own OpenSSL reference, so a rotated
// certificate's context lives until its last connection ends), one engine
// per JavaScript environment, events delivered through a thread-safe
// function to the callback each session was started with.
#include "tls_relay_js.h"

#include <openssl/ssl.h>

#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "napi_args.h"
#include "tls_ctx.h"
#include "tls_relay.h"

namespace weir {
namespace {

class TlsBinding;
void DeliverEvent(Napi::Env env, Napi::Function unused, TlsBinding* binding, TlsEvent* ev);
using EventTsfn = Napi::TypedThreadSafeFunction<TlsBinding, TlsEvent, DeliverEvent>;

std::string StringOption(const Napi::Object& o, const char* key, const char* fn, bool required) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() && !required) return {};
  if (!v.IsString()) ThrowTypeError(o.Env(), std::string(fn) + ": options." + key + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

std::string BytesOption(const Napi::Object& o, const char* key, const char* fn) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return {};
  Napi::Uint8Array b = Uint8ArrayArg(v, std::string(fn) + ": options." + key);
  return std::string(reinterpret_cast<const char*>(b.Data()), b.ByteLength());
}

class TlsBinding {
 public:
  // Not the environment's instance data: that is ONE slot per addon, and the
  // splice pump's glue holds it. A map per environment (main thread, workers),
  // each entry freed by the environment's cleanup hook.
  static TlsBinding* For(Napi::Env env) {
    std::lock_guard<std::mutex> lock(Mutex());
    auto& all = All();
    auto it = all.find(env);
    if (it != all.end()) return it->second;
    auto* b = new TlsBinding();
    all.emplace(env, b);
    napi_add_env_cleanup_hook(env, Free, env);
    return b;
  }
  ~TlsBinding() {
    if (engine_) engine_->Stop();
  }

  TlsRelayEngine& Engine(Napi::Env env) {
    if (torn_down_) ThrowFailure(env, Failure{"tlsRelay: environment is shutting down", "ESHUTDOWN"});
    if (engine_) return *engine_;
    tsfn_ = EventTsfn::New(env, "weirTlsRelay", 0, 1, this);
    tsfn_.Unref(env);
    std::unique_ptr<TlsRelayEngine> engine;
    auto failure = TlsRelayEngine::Create(
        [this](std::unique_ptr<TlsEvent> ev) {
          if (tsfn_.NonBlockingCall(ev.get()) == napi_ok) ev.release();
        },
        &engine);
    if (failure) {
      tsfn_.Release();
      ThrowFailure(env, *failure);
    }
    engine_ = std::move(engine);
    // After the thread-safe function: cleanup hooks run in reverse, so the thread is joined first.
    napi_add_env_cleanup_hook(env, TearDown, this);
    return *engine_;
  }

  void Track(Napi::Env env, uint64_t id, Napi::Function cb, std::shared_ptr<TlsCounters> counters) {
    if (running_.empty()) tsfn_.Ref(env);  // a live session keeps the loop alive, like a socket
    running_.emplace(id, Running{Napi::Persistent(cb), std::move(counters)});
  }
  bool Known(uint64_t id) const { return running_.count(id) != 0; }
  const TlsCounters* Counters(uint64_t id) const {
    auto it = running_.find(id);
    return it == running_.end() ? nullptr : it->second.counters.get();
  }
  bool HasEngine() const { return engine_ != nullptr; }
  TlsEngineStats Stats() const { return engine_ ? engine_->Stats() : TlsEngineStats{}; }

  void Deliver(Napi::Env env, const TlsEvent& ev) {
    auto it = running_.find(ev.id);
    if (it == running_.end()) return;
    Napi::Object o = Napi::Object::New(env);
    Napi::Function cb = it->second.cb.Value();
    if (ev.kind == TlsEvent::Kind::kHandshake) {
      o.Set("kind", "handshake");
      Napi::Array uris = Napi::Array::New(env, ev.peer_uris.size());
      for (size_t i = 0; i < ev.peer_uris.size(); i++) uris.Set(static_cast<uint32_t>(i), ev.peer_uris[i]);
      o.Set("peerUris", uris);
      o.Set("alpn", ev.alpn);
    } else {
      Napi::FunctionReference keep = std::move(it->second.cb);
      running_.erase(it);
      if (running_.empty()) tsfn_.Unref(env);
      o.Set("kind", "done");
      o.Set("reason", ev.reason);
      if (!ev.error.empty()) o.Set("error", ev.error);
      o.Set("plainToTls", static_cast<double>(ev.plain_to_tls));
      o.Set("tlsToPlain", static_cast<double>(ev.tls_to_plain));
      o.Set("durationMs", ev.duration_ms);
      keep.Value().Call({o});
      return;
    }
    cb.Call({o});
  }

 private:
  static std::mutex& Mutex() { static std::mutex m; return m; }
  static std::unordered_map<napi_env, TlsBinding*>& All() { static std::unordered_map<napi_env, TlsBinding*> m; return m; }
  // Runs after TearDown (hooks run in reverse order of registration).
  static void Free(void* arg) {
    auto env = static_cast<napi_env>(arg);
    TlsBinding* b = nullptr;
    {
      std::lock_guard<std::mutex> lock(Mutex());
      auto it = All().find(env);
      if (it == All().end()) return;
      b = it->second;
      All().erase(it);
    }
    delete b;
  }
  static void TearDown(void* arg) {
    auto* self = static_cast<TlsBinding*>(arg);
    self->torn_down_ = true;
    if (self->engine_) self->engine_->Stop();
    self->running_.clear();
  }
  struct Running {
    Napi::FunctionReference cb;
    std::shared_ptr<TlsCounters> counters;
  };
  std::unique_ptr<TlsRelayEngine> engine_;
  EventTsfn tsfn_;
  bool torn_down_ = false;
  std::unordered_map<uint64_t, Running> running_;
};

void DeliverEvent(Napi::Env env, Napi::Function, TlsBinding* binding, TlsEvent* raw) {
  std::unique_ptr<TlsEvent> ev(raw);
  if (env == nullptr || binding == nullptr) return;
  binding->Deliver(env, *ev);
}

// tlsContext({server, cert, key, roots, alpn}) -> an opaque context
Napi::Value TlsContextJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = "tlsContext";
  if (!info[0].IsObject()) ThrowTypeError(env, "tlsContext: options must be an object");
  Napi::Object o = info[0].As<Napi::Object>();
  TlsContextSpec spec;
  Napi::Value server = o.Get("server");
  if (!server.IsBoolean()) ThrowTypeError(env, "tlsContext: options.server must be a boolean");
  spec.server = server.As<Napi::Boolean>().Value();
  spec.cert_pem = StringOption(o, "cert", fn, true);
  spec.key_pem = StringOption(o, "key", fn, true);
  spec.roots_pem = StringOption(o, "roots", fn, true);
  Napi::Value alpn = o.Get("alpn");
  if (!alpn.IsArray()) ThrowTypeError(env, "tlsContext: options.alpn must be an array of strings");
  Napi::Array list = alpn.As<Napi::Array>();
  for (uint32_t i = 0; i < list.Length(); i++) {
    Napi::Value v = list.Get(i);
    if (!v.IsString() || v.As<Napi::String>().Utf8Value().empty() || v.As<Napi::String>().Utf8Value().size() > 255) {
      ThrowTypeError(env, "tlsContext: options.alpn[" + std::to_string(i) + "] must be a string of 1-255 bytes");
    }
    spec.alpn.push_back(v.As<Napi::String>().Utf8Value());
  }
  SSL_CTX* ctx = nullptr;
  if (auto f = MakeTlsContext(spec, &ctx)) ThrowFailure(env, *f);
  return Napi::External<SSL_CTX>::New(env, ctx, [](Napi::Env, SSL_CTX* c) { SSL_CTX_free(c); });
}

uint64_t IdArg(const Napi::Value& v, const char* fn) {
  return static_cast<uint64_t>(IntegerArg(v, std::string(fn) + ": id", 1, 9007199254740991.0));
}

// tlsStart(ctx, fd, {server, initial?, sni?, handshakeTimeoutMs?}, onEvent) -> id
Napi::Value TlsStartJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = "tlsStart";
  if (!info[0].IsExternal()) ThrowTypeError(env, "tlsStart: ctx must be a context from tlsContext()");
  TlsStartSpec spec;
  spec.ctx = info[0].As<Napi::External<SSL_CTX>>().Data();
  spec.fd = static_cast<int>(IntegerArg(info[1], "tlsStart: fd", 0, 2147483647));
  if (!info[2].IsObject()) ThrowTypeError(env, "tlsStart: options must be an object");
  Napi::Object o = info[2].As<Napi::Object>();
  Napi::Value server = o.Get("server");
  if (!server.IsBoolean()) ThrowTypeError(env, "tlsStart: options.server must be a boolean");
  spec.server = server.As<Napi::Boolean>().Value();
  spec.initial = BytesOption(o, "initial", fn);
  spec.sni = StringOption(o, "sni", fn, false);
  Napi::Value t = o.Get("handshakeTimeoutMs");
  if (!t.IsUndefined()) spec.handshake_timeout_ms = static_cast<int64_t>(IntegerArg(t, "tlsStart: options.handshakeTimeoutMs", 1, 600000));
  if (!info[3].IsFunction()) ThrowTypeError(env, "tlsStart: onEvent must be a function");
  TlsBinding* b = TlsBinding::For(env);
  uint64_t id = 0;
  std::shared_ptr<TlsCounters> counters;
  if (auto f = b->Engine(env).Start(spec, &id, &counters)) ThrowFailure(env, *f);
  b->Track(env, id, info[3].As<Napi::Function>(), std::move(counters));
  return Napi::Number::New(env, static_cast<double>(id));
}

// tlsAttach(id, fd, {initial?, idleTimeoutMs?})
Napi::Value TlsAttachJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint64_t id = IdArg(info[0], "tlsAttach");
  int fd = static_cast<int>(IntegerArg(info[1], "tlsAttach: fd", 0, 2147483647));
  std::string initial;
  int64_t idle = 0;
  if (!info[2].IsUndefined()) {
    if (!info[2].IsObject()) ThrowTypeError(env, "tlsAttach: options must be an object");
    Napi::Object o = info[2].As<Napi::Object>();
    initial = BytesOption(o, "initial", "tlsAttach");
    Napi::Value t = o.Get("idleTimeoutMs");
    if (!t.IsUndefined()) idle = static_cast<int64_t>(IntegerArg(t, "tlsAttach: options.idleTimeoutMs", 0, 2147483647));
  }
  TlsBinding* b = TlsBinding::For(env);
  if (!b->HasEngine() || !b->Known(id)) ThrowFailure(env, Failure{"tlsAttach: no such session (it ended)", "ENOENT"});
  if (auto f = b->Engine(env).Attach(id, fd, std::move(initial), idle)) ThrowFailure(env, *f);
  return env.Undefined();
}

// tlsAbort(id, {reset?}) -> whether the session was still known
Napi::Value TlsAbortJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint64_t id = IdArg(info[0], "tlsAbort");
  bool reset = false;
  if (info[1].IsObject()) {
    Napi::Value r = info[1].As<Napi::Object>().Get("reset");
    if (!r.IsUndefined() && !r.IsBoolean()) ThrowTypeError(env, "tlsAbort: options.reset must be a boolean");
    reset = r.IsBoolean() && r.As<Napi::Boolean>().Value();
  }
  TlsBinding* b = TlsBinding::For(env);
  if (!b->HasEngine() || !b->Known(id)) return Napi::Boolean::New(env, false);
  b->Engine(env).Abort(id, reset);
  return Napi::Boolean::New(env, true);
}

Napi::Value TlsProgressJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const TlsCounters* c = TlsBinding::For(env)->Counters(IdArg(info[0], "tlsProgress"));
  if (c == nullptr) return env.Undefined();
  Napi::Object o = Napi::Object::New(env);
  o.Set("plainToTls", static_cast<double>(c->plain_to_tls.load()));
  o.Set("tlsToPlain", static_cast<double>(c->tls_to_plain.load()));
  return o;
}

Napi::Value TlsStatsJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TlsEngineStats s = TlsBinding::For(env)->Stats();
  Napi::Object o = Napi::Object::New(env);
  o.Set("active", static_cast<double>(s.active));
  o.Set("started", static_cast<double>(s.started));
  o.Set("handshakes", static_cast<double>(s.handshakes));
  o.Set("handshakeFailures", static_cast<double>(s.handshake_failures));
  o.Set("finished", static_cast<double>(s.finished));
  o.Set("openssl", OpenSSL_version(OPENSSL_VERSION));
  return o;
}

}  // namespace

void RegisterTlsRelay(Napi::Env env, Napi::Object exports) {
  exports.Set("tlsContext", Napi::Function::New(env, TlsContextJs, "tlsContext"));
  exports.Set("tlsStart", Napi::Function::New(env, TlsStartJs, "tlsStart"));
  exports.Set("tlsAttach", Napi::Function::New(env, TlsAttachJs, "tlsAttach"));
  exports.Set("tlsAbort", Napi::Function::New(env, TlsAbortJs, "tlsAbort"));
  exports.Set("tlsProgress", Napi::Function::New(env, TlsProgressJs, "tlsProgress"));
  exports.Set("tlsStats", Napi::Function::New(env, TlsStatsJs, "tlsStats"));
}

}  // namespace weir
