// Node-API glue. Every netns-touching call returns a Promise and runs on a
// dedicated thread (see netns_thread.h); the plain socket-option reads are
// synchronous because they never leave the caller's netns.
#include <napi.h>

#include <functional>
#include <optional>
#include <string>

#include "cluster_table_js.h"
#include "dns_fast_js.h"
#include "h1/h1_js.h"
#include "l4_accept_js.h"
#include "napi_args.h"
#include "netns_thread.h"
#include "nft.h"
#include "memory_js.h"
#include "pump_js.h"
#include "sockets.h"
#include "tls_relay_js.h"

namespace weir {
namespace {

// netns argument: a path string, or null/undefined for the current netns.
NetnsSpec NetnsArg(const Napi::Value& v, const char* fn) {
  NetnsSpec spec;
  if (v.IsNull() || v.IsUndefined()) return spec;
  if (!v.IsString()) ThrowTypeError(v.Env(), std::string(fn) + ": netns must be a path string or null");
  spec.path = v.As<Napi::String>().Utf8Value();
  if (spec.path.empty()) ThrowTypeError(v.Env(), std::string(fn) + ": netns must not be an empty string");
  spec.kind = NetnsSpec::Kind::kPath;
  return spec;
}

std::string StringArg(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name) {
  if (info.Length() <= i || !info[i].IsString()) ThrowTypeError(info.Env(), std::string(fn) + ": " + name + " must be a string");
  return info[i].As<Napi::String>().Utf8Value();
}

int FdArg(const Napi::CallbackInfo& info, const char* fn) {
  if (info.Length() < 1 || !info[0].IsNumber()) ThrowTypeError(info.Env(), std::string(fn) + ": fd must be a number");
  double d = info[0].As<Napi::Number>().DoubleValue();
  if (d < 0 || d != static_cast<int>(d)) ThrowTypeError(info.Env(), std::string(fn) + ": fd must be a non-negative integer");
  return static_cast<int>(d);
}

bool OptBool(const Napi::Object& o, const char* key, const char* fn) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return false;
  if (!v.IsBoolean()) ThrowTypeError(o.Env(), std::string(fn) + ": options." + key + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

std::optional<double> OptNumber(const Napi::Object& o, const char* key, const char* fn, double min, double max) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return std::nullopt;
  double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1e300;
  if (!v.IsNumber() || d != static_cast<double>(static_cast<long long>(d)) || d < min || d > max) {
    ThrowTypeError(o.Env(), std::string(fn) + ": options." + key + " must be an integer in [" + std::to_string(static_cast<long long>(min)) + ", " +
                           std::to_string(static_cast<long long>(max)) + "]");
  }
  return d;
}

// One async call: `body` runs inside the netns on its own thread and fills
// either a string or an fd result.
class NetnsTask : public Napi::AsyncWorker {
 public:
  using Body = std::function<std::optional<Failure>(NetnsTask*)>;

  NetnsTask(Napi::Env env, NetnsSpec spec, Body body)
      : Napi::AsyncWorker(env), spec_(std::move(spec)), body_(std::move(body)), deferred_(Napi::Promise::Deferred::New(env)) {}

  Napi::Promise Promise() const { return deferred_.Promise(); }

  std::string text;
  int fd = -1;
  bool returns_fd = false;

 protected:
  void Execute() override {
    failure_ = RunInNetns(spec_, [this] { return body_(this); });
  }
  void OnOK() override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    if (failure_) {
      deferred_.Reject(FailureError(env, *failure_).Value());
    } else if (returns_fd) {
      deferred_.Resolve(Napi::Number::New(env, fd));
    } else {
      deferred_.Resolve(Napi::String::New(env, text));
    }
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  NetnsSpec spec_;
  Body body_;
  Napi::Promise::Deferred deferred_;
  std::optional<Failure> failure_;
};

Napi::Value Queue(NetnsTask* task) {
  Napi::Promise promise = task->Promise();
  task->Queue();
  return promise;
}

// nftRun(netns: string | null, script: string, opts?: {json?, check?})
Napi::Value NftRunJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  NetnsSpec spec = NetnsArg(info[0], "nftRun");
  std::string script = StringArg(info, 1, "nftRun", "script");
  NftOptions options;
  if (info.Length() > 2 && !info[2].IsUndefined()) {
    if (!info[2].IsObject()) ThrowTypeError(env, "nftRun: options must be an object");
    Napi::Object o = info[2].As<Napi::Object>();
    options.json = OptBool(o, "json", "nftRun");
    options.check = OptBool(o, "check", "nftRun");
  }
  auto* task = new NetnsTask(env, spec, [script, options](NetnsTask* t) { return NftRun(script, options, &t->text); });
  return Queue(task);
}

// nftCanonical(script: string, listCommand?: string): apply `script` in a
// scratch netns and return what the kernel lists back, i.e. the ruleset in
// the exact form a real netns will report it.
Napi::Value NftCanonicalJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string script = StringArg(info, 0, "nftCanonical", "script");
  std::string list = "list ruleset";
  if (info.Length() > 1 && !info[1].IsUndefined()) list = StringArg(info, 1, "nftCanonical", "listCommand");
  NetnsSpec spec;
  spec.kind = NetnsSpec::Kind::kFresh;
  auto* task = new NetnsTask(env, spec, [script, list](NetnsTask* t) -> std::optional<Failure> {
    std::string ignored;
    if (auto f = NftRun(script, NftOptions{}, &ignored)) return f;
    return NftRun(list, NftOptions{}, &t->text);
  });
  return Queue(task);
}

// socketInNetns(netns, {kind, family, address, port, backlog?, timeoutMs?, transparent?, mark?, freebind?, reusePort?, sourceAddress?, avoidSourcePort?})
// kind 'unix-listen': {kind, address (abstract name, no leading NUL or '@'), backlog?}
Napi::Value SocketInNetnsJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = "socketInNetns";
  NetnsSpec spec = NetnsArg(info[0], fn);
  if (info.Length() < 2 || !info[1].IsObject()) ThrowTypeError(env, "socketInNetns: options must be an object");
  Napi::Object o = info[1].As<Napi::Object>();
  SocketRequest r;
  Napi::Value kind = o.Get("kind");
  std::string k = kind.IsString() ? kind.As<Napi::String>().Utf8Value() : "";
  if (k == "tcp-listen") r.kind = SocketRequest::Kind::kTcpListen;
  else if (k == "tcp-connect") r.kind = SocketRequest::Kind::kTcpConnect;
  else if (k == "udp-bind") r.kind = SocketRequest::Kind::kUdpBind;
  else if (k == "unix-listen") r.kind = SocketRequest::Kind::kUnixListen;
  else ThrowTypeError(env, "socketInNetns: options.kind must be 'tcp-listen', 'tcp-connect', 'udp-bind' or 'unix-listen'");
  Napi::Value address = o.Get("address");
  if (!address.IsString()) ThrowTypeError(env, "socketInNetns: options.address must be a string");
  r.address = address.As<Napi::String>().Utf8Value();
  if (auto b = OptNumber(o, "backlog", fn, 1, 65535)) r.backlog = static_cast<int>(*b);
  if (r.kind == SocketRequest::Kind::kUnixListen) {
    // An abstract name (any bytes, NULs included: they are part of the name): no family, port or IP options apply.
    if (r.address.empty()) ThrowTypeError(env, "socketInNetns: options.address must be a non-empty abstract socket name");
  } else {
    std::optional<double> family = OptNumber(o, "family", fn, 4, 6);
    if (!family || (*family != 4 && *family != 6)) ThrowTypeError(env, "socketInNetns: options.family must be 4 or 6");
    r.family = static_cast<int>(*family);
    std::optional<double> port = OptNumber(o, "port", fn, 0, 65535);
    if (!port) ThrowTypeError(env, "socketInNetns: options.port must be an integer in [0, 65535]");
    if (r.kind == SocketRequest::Kind::kTcpConnect && *port == 0) ThrowTypeError(env, "socketInNetns: options.port must not be 0 for tcp-connect");
    r.port = static_cast<int>(*port);
    if (auto t = OptNumber(o, "timeoutMs", fn, 1, 600000)) r.timeout_ms = static_cast<int>(*t);
    if (auto m = OptNumber(o, "mark", fn, 0, 4294967295.0)) r.mark = static_cast<unsigned>(*m);
    Napi::Value source = o.Get("sourceAddress");
    if (!source.IsUndefined()) {
      if (!source.IsString()) ThrowTypeError(env, "socketInNetns: options.sourceAddress must be a string");
      if (r.kind != SocketRequest::Kind::kTcpConnect) ThrowTypeError(env, "socketInNetns: options.sourceAddress is for tcp-connect only");
      r.source_address = source.As<Napi::String>().Utf8Value();
    }
    if (auto p = OptNumber(o, "avoidSourcePort", fn, 1, 65535)) {
      if (!r.source_address) ThrowTypeError(env, "socketInNetns: options.avoidSourcePort needs options.sourceAddress");
      r.avoid_source_port = static_cast<int>(*p);
    }
    r.transparent = OptBool(o, "transparent", fn);
    r.freebind = OptBool(o, "freebind", fn);
    r.reuse_port = OptBool(o, "reusePort", fn);
  }

  auto* task = new NetnsTask(env, spec, [r](NetnsTask* t) { return CreateSocket(r, &t->fd); });
  task->returns_fd = true;
  return Queue(task);
}

Napi::Value OriginalDstJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, "originalDst");
  Endpoint ep;
  if (auto f = OriginalDst(fd, &ep)) ThrowFailure(env, *f);
  Napi::Object result = Napi::Object::New(env);
  result.Set("family", ep.family);
  result.Set("address", ep.address);
  result.Set("port", ep.port);
  return result;
}

Napi::Value PeerCredJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, "peerCred");
  PeerCredentials cred;
  if (auto f = PeerCred(fd, &cred)) ThrowFailure(env, *f);
  Napi::Object result = Napi::Object::New(env);
  result.Set("pid", cred.pid);
  result.Set("uid", static_cast<double>(cred.uid));
  result.Set("gid", static_cast<double>(cred.gid));
  return result;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("nftRun", Napi::Function::New(env, NftRunJs, "nftRun"));
  exports.Set("nftCanonical", Napi::Function::New(env, NftCanonicalJs, "nftCanonical"));
  exports.Set("socketInNetns", Napi::Function::New(env, SocketInNetnsJs, "socketInNetns"));
  exports.Set("originalDst", Napi::Function::New(env, OriginalDstJs, "originalDst"));
  exports.Set("peerCred", Napi::Function::New(env, PeerCredJs, "peerCred"));
  RegisterPump(env, exports);
  RegisterClusterTable(env, exports);
  RegisterL4Accept(env, exports);
  RegisterMemory(env, exports);
  RegisterDnsFast(env, exports);
  RegisterTlsRelay(env, exports);
  RegisterHttpEngine(env, exports);
  return exports;
}

}  // namespace
}  // namespace weir

static Napi::Object InitWeirNative(Napi::Env env, Napi::Object exports) { return weir::Init(env, exports); }

NODE_API_MODULE(weir_native, InitWeirNative)
