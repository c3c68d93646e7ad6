// Node-API glue of the native HTTP/1.1 path: one Engine (one epoll thread)
// per JavaScript environment, created by the first configure. Nothing is
// delivered to JS per request or per connection: JS pushes tables
// (httpEngineConfigure), hands over client fds (httpEngineAdopt) and pulls
// aggregated metrics (httpEngineTakeStats) on its own schedule.
#include "h1_js.h"

#include <memory>
#include <string>

#include "../napi_args.h"
#include "h1_engine.h"
#include <nghttp2/nghttp2ver.h>

namespace weir {
namespace {

struct HttpEngineBinding {
  std::unique_ptr<h1::Engine> engine;
  ~HttpEngineBinding() {
    if (engine) engine->Stop();
  }
  static HttpEngineBinding* For(Napi::Env env) {
    // The addon's instance data slot belongs to the pump binding: keep ours in a static per env.
    static thread_local HttpEngineBinding* binding = nullptr;
    if (!binding) {
      binding = new HttpEngineBinding();
      napi_add_env_cleanup_hook(env, [](void* p) { delete static_cast<HttpEngineBinding*>(p); binding = nullptr; }, binding);
    }
    return binding;
  }
};

std::string Str(const Napi::Object& o, const char* key, const std::string& fn) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return {};
  if (!v.IsString()) ThrowTypeError(o.Env(), fn + ": " + key + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

double Num(const Napi::Object& o, const char* key, const std::string& fn, double def, double min, double max) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return def;
  double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : NAN;
  if (!(d >= min && d <= max)) ThrowTypeError(o.Env(), fn + ": " + key + " must be a number in [" + std::to_string(min) + ", " + std::to_string(max) + "]");
  return d;
}

Napi::Array Arr(const Napi::Object& o, const char* key, const std::string& fn) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return Napi::Array::New(o.Env());
  if (!v.IsArray()) ThrowTypeError(o.Env(), fn + ": " + key + " must be an array");
  return v.As<Napi::Array>();
}

std::vector<double> Bounds(const Napi::Object& o, const char* key, const std::string& fn) {
  Napi::Array a = Arr(o, key, fn);
  std::vector<double> out;
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value v = a.Get(i);
    if (!v.IsNumber()) ThrowTypeError(o.Env(), fn + ": " + key + "[" + std::to_string(i) + "] must be a number");
    out.push_back(v.As<Napi::Number>().DoubleValue());
  }
  return out;
}

// httpEngineConfigure({generation, routes: [{cluster, endpoints: [[ip, port]...] (headless only), headless?, meshPeer?, retries?}],
//   hosts: [["host|port", routeIndex]...], meshPods: [ip...], peerHeader, passthroughRetries, samplingPercent,
//   idleTimeoutMs, connectTimeoutMs, headerTimeoutMs, inboundSourceV4, durationBounds, sizeBounds})
Napi::Value Configure(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string fn = "httpEngineConfigure";
  if (info.Length() < 1 || !info[0].IsObject()) ThrowTypeError(env, fn + ": config must be an object");
  Napi::Object o = info[0].As<Napi::Object>();
  auto cfg = std::make_shared<h1::Config>();
  cfg->generation = static_cast<uint64_t>(Num(o, "generation", fn, 0, 0, 9007199254740991.0));
  Napi::Array routes = Arr(o, "routes", fn);
  for (uint32_t i = 0; i < routes.Length(); i++) {
    std::string at = fn + ": routes[" + std::to_string(i) + "]";
    Napi::Value rv = routes.Get(i);
    if (!rv.IsObject()) ThrowTypeError(env, at + " must be an object");
    Napi::Object ro = rv.As<Napi::Object>();
    h1::Route r;
    r.headless = ro.Get("headless").ToBoolean();
    r.mesh_peer = ro.Get("meshPeer").ToBoolean();
    r.retries = static_cast<int>(Num(ro, "retries", at, 0, 0, 100));
    r.cluster = Str(ro, "cluster", at);
    Napi::Array eps = Arr(ro, "endpoints", at);
    for (uint32_t k = 0; k < eps.Length(); k++) {
      Napi::Value ev = eps.Get(k);
      std::string eat = at + ".endpoints[" + std::to_string(k) + "]";
      if (!ev.IsArray() || ev.As<Napi::Array>().Length() != 2) ThrowTypeError(env, eat + " must be [ip, port]");
      Napi::Array pair = ev.As<Napi::Array>();
      h1::Endpoint e;
      if (!pair.Get(0u).IsString() || !pair.Get(1u).IsNumber()) ThrowTypeError(env, eat + " must be [ip, port]");
      e.ip = pair.Get(0u).As<Napi::String>().Utf8Value();
      e.port = pair.Get(1u).As<Napi::Number>().Int32Value();
      if (!h1::ResolveEndpoint(&e)) ThrowTypeError(env, eat + " is not an IP address and port");
      r.endpoints.push_back(std::move(e));
    }
    cfg->routes.push_back(std::move(r));
  }
  Napi::Array hosts = Arr(o, "hosts", fn);
  for (uint32_t i = 0; i < hosts.Length(); i++) {
    Napi::Value hv = hosts.Get(i);
    std::string at = fn + ": hosts[" + std::to_string(i) + "]";
    if (!hv.IsArray() || hv.As<Napi::Array>().Length() != 2) ThrowTypeError(env, at + " must be [\"host|port\", routeIndex]");
    Napi::Array pair = hv.As<Napi::Array>();
    if (!pair.Get(0u).IsString() || !pair.Get(1u).IsNumber()) ThrowTypeError(env, at + " must be [\"host|port\", routeIndex]");
    int idx = pair.Get(1u).As<Napi::Number>().Int32Value();
    if (idx < 0 || static_cast<size_t>(idx) >= cfg->routes.size()) ThrowTypeError(env, at + ": route index out of range");
    cfg->hosts.emplace(pair.Get(0u).As<Napi::String>().Utf8Value(), idx);
  }
  Napi::Array pods = Arr(o, "meshPods", fn);
  for (uint32_t i = 0; i < pods.Length(); i++) {
    Napi::Value pv = pods.Get(i);
    if (!pv.IsString()) ThrowTypeError(env, fn + ": meshPods[" + std::to_string(i) + "] must be a string");
    cfg->mesh_pods.insert(pv.As<Napi::String>().Utf8Value());
  }
  cfg->peer_header = Str(o, "peerHeader", fn);
  for (char c : cfg->peer_header)
    if (c == '\r' || c == '\n') ThrowTypeError(env, fn + ": peerHeader must be one header line");
  cfg->passthrough_retries = static_cast<int>(Num(o, "passthroughRetries", fn, 2, 0, 100));
  cfg->sampling_percent = Num(o, "samplingPercent", fn, 1, 0, 100);
  cfg->idle_timeout_ms = static_cast<int64_t>(Num(o, "idleTimeoutMs", fn, 3600000, 1, 86400000));
  cfg->connect_timeout_ms = static_cast<int64_t>(Num(o, "connectTimeoutMs", fn, 10000, 1, 600000));
  cfg->header_timeout_ms = static_cast<int64_t>(Num(o, "headerTimeoutMs", fn, 60000, 1, 600000));
  cfg->inbound_source_v4 = Str(o, "inboundSourceV4", fn);
  cfg->duration_bounds = Bounds(o, "durationBounds", fn);
  cfg->size_bounds = Bounds(o, "sizeBounds", fn);
  HttpEngineBinding* b = HttpEngineBinding::For(env);
  if (!b->engine) {
    std::string error;
    b->engine = h1::Engine::Create(&error);
    if (!b->engine) ThrowFailure(env, Failure{error, "EENGINE"});
  }
  b->engine->Configure(cfg);
  return env.Undefined();
}

// httpEngineAdopt(fd, {inbound, dstIp, dstPort, peerIp, initial?: Uint8Array, h2?: boolean})
Napi::Value Adopt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string fn = "httpEngineAdopt";
  HttpEngineBinding* b = HttpEngineBinding::For(env);
  if (!b->engine) ThrowFailure(env, Failure{fn + ": not configured", "ENOTCONF"});
  if (info.Length() < 2 || !info[1].IsObject()) ThrowTypeError(env, fn + ": options must be an object");
  h1::AdoptSpec s;
  s.fd = static_cast<int>(IntegerArg(info[0], fn + ": fd", 0, 1 << 30));
  Napi::Object o = info[1].As<Napi::Object>();
  s.inbound = o.Get("inbound").ToBoolean();
  s.dst_ip = Str(o, "dstIp", fn);
  s.dst_port = static_cast<int>(Num(o, "dstPort", fn, 0, 1, 65535));
  s.peer_ip = Str(o, "peerIp", fn);
  s.h2 = o.Get("h2").ToBoolean();
  Napi::Value initial = o.Get("initial");
  if (!initial.IsUndefined()) {
    Napi::Uint8Array bytes = Uint8ArrayArg(initial, fn + ": options.initial");
    s.initial.assign(reinterpret_cast<const char*>(bytes.Data()), bytes.ByteLength());
  }
  std::string error;
  if (!b->engine->Adopt(s, &error)) ThrowFailure(env, Failure{error, "EHANDOFF"});
  return env.Undefined();
}

Napi::Array Buckets(Napi::Env env, const std::vector<uint64_t>& v, size_t bounds) {
  Napi::Array a = Napi::Array::New(env, bounds + 1);
  for (size_t i = 0; i <= bounds; i++) a.Set(static_cast<uint32_t>(i), static_cast<double>(i < v.size() ? v[i] : 0));
  return a;
}

// → [{key, count, duration: [per bound..., above], durationSum, requestBytes, requestBytesSum, responseBytes, responseBytesSum}]
Napi::Value TakeStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  HttpEngineBinding* b = HttpEngineBinding::For(env);
  Napi::Array out = Napi::Array::New(env);
  if (!b->engine) return out;
  auto stats = b->engine->TakeStats();
  size_t db = b->engine->Bounds(true), sb = b->engine->Bounds(false);
  uint32_t i = 0;
  for (auto& [key, s] : stats) {
    Napi::Object r = Napi::Object::New(env);
    r.Set("key", key);
    r.Set("count", static_cast<double>(s.count));
    r.Set("duration", Buckets(env, s.duration, db));
    r.Set("durationSum", s.duration_sum);
    r.Set("requestBytes", Buckets(env, s.request_bytes, sb));
    r.Set("requestBytesSum", s.request_bytes_sum);
    r.Set("responseBytes", Buckets(env, s.response_bytes, sb));
    r.Set("responseBytesSum", s.response_bytes_sum);
    r.Set("requestMessages", static_cast<double>(s.request_messages));
    r.Set("responseMessages", static_cast<double>(s.response_messages));
    out.Set(i++, r);
  }
  return out;
}

Napi::Value Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  HttpEngineBinding* b = HttpEngineBinding::For(env);
  Napi::Object r = Napi::Object::New(env);
  if (!b->engine) return env.Null();
  const h1::EngineCounters& c = b->engine->Counters();
  r.Set("connections", static_cast<double>(c.connections.load()));
  r.Set("activeConnections", static_cast<double>(c.active_connections.load()));
  r.Set("requests", static_cast<double>(c.requests.load()));
  r.Set("upstreamConnects", static_cast<double>(c.upstream_connects.load()));
  r.Set("upstreamReused", static_cast<double>(c.upstream_reused.load()));
  r.Set("retries", static_cast<double>(c.retries.load()));
  r.Set("rejected", static_cast<double>(c.rejected.load()));
  r.Set("tunnels", static_cast<double>(c.tunnels.load()));
  r.Set("h2Connections", static_cast<double>(c.h2_connections.load()));
  return r;
}

Napi::Value Drain(const Napi::CallbackInfo& info) {
  HttpEngineBinding* b = HttpEngineBinding::For(info.Env());
  if (b->engine) b->engine->Drain();
  return info.Env().Undefined();
}

}  // namespace

void RegisterHttpEngine(Napi::Env env, Napi::Object exports) {
  exports.Set("httpEngineConfigure", Napi::Function::New(env, Configure, "httpEngineConfigure"));
  exports.Set("httpEngineAdopt", Napi::Function::New(env, Adopt, "httpEngineAdopt"));
  exports.Set("httpEngineTakeStats", Napi::Function::New(env, TakeStats, "httpEngineTakeStats"));
  exports.Set("httpEngineStats", Napi::Function::New(env, Stats, "httpEngineStats"));
  exports.Set("httpEngineDrain", Napi::Function::New(env, Drain, "httpEngineDrain"));
  exports.Set("httpEngineNghttp2Header", Napi::String::New(env, NGHTTP2_VERSION));  // the HTTP/2 codec's header (node's nghttp2 must be at least this)
}

}  // namespace weir
