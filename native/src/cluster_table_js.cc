// Node-API glue of the cluster table (cluster_table.h). JavaScript is the
// table's only writer: every call here runs on the JS thread. Pick/Release
// exist for tests and the admin view; native paths pick on their own thread.
#include "cluster_table_js.h"

#include <memory>
#include <string>
#include <unordered_map>

#include "cluster_table.h"
#include "napi_args.h"

namespace weir {
namespace {

std::string StringField(const Napi::Object& o, const char* key, const std::string& where, bool required = true) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() && !required) return {};
  if (!v.IsString()) ThrowTypeError(o.Env(), where + "." + key + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

bool BoolField(const Napi::Object& o, const char* key, const std::string& where, bool fallback) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return fallback;
  if (!v.IsBoolean()) ThrowTypeError(o.Env(), where + "." + key + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

ClusterSpec ClusterArg(Napi::Env env, const Napi::Value& v, const std::string& where) {
  if (!v.IsObject()) ThrowTypeError(env, where + " must be an object {name, lbPolicy?, connectTimeoutMs?, maxAttempts?, endpoints}");
  Napi::Object o = v.As<Napi::Object>();
  ClusterSpec spec;
  spec.name = StringField(o, "name", where);
  if (spec.name.empty()) ThrowTypeError(env, where + ".name must not be empty");
  const std::string at = where + " (" + spec.name + ")";
  std::string policy = StringField(o, "lbPolicy", at, false);
  auto parsed = ParseLbPolicy(policy);
  if (!parsed) ThrowTypeError(env, at + ".lbPolicy must be LEAST_REQUEST, ROUND_ROBIN or RANDOM (bad value: \"" + policy + "\")");
  spec.policy = *parsed;
  Napi::Value t = o.Get("connectTimeoutMs");
  if (!t.IsUndefined()) spec.connect_timeout_ms = static_cast<int64_t>(IntegerArg(t, at + ".connectTimeoutMs", 1, 2147483647));
  Napi::Value a = o.Get("maxAttempts");
  if (!a.IsUndefined()) spec.max_attempts = static_cast<int>(IntegerArg(a, at + ".maxAttempts", 1, 64));
  Napi::Value eps = o.Get("endpoints");
  if (!eps.IsArray()) ThrowTypeError(env, at + ".endpoints must be an array");
  Napi::Array list = eps.As<Napi::Array>();
  for (uint32_t i = 0; i < list.Length(); i++) {
    const std::string ew = at + ".endpoints[" + std::to_string(i) + "]";
    Napi::Value e = list.Get(i);
    if (!e.IsObject()) ThrowTypeError(env, ew + " must be an object {ip, port, weight?, healthy?, ejected?}");
    Napi::Object eo = e.As<Napi::Object>();
    ClusterEndpoint ep;
    const int port = static_cast<int>(IntegerArg(eo.Get("port"), ew + ".port", 1, 65535));
    if (auto f = SetEndpointAddress(StringField(eo, "ip", ew), port, &ep)) ThrowTypeError(env, ew + ": " + f->message);
    Napi::Value w = eo.Get("weight");
    if (!w.IsUndefined()) ep.weight = static_cast<uint32_t>(IntegerArg(w, ew + ".weight", 1, 1 << 24));
    ep.healthy = BoolField(eo, "healthy", ew, true);
    ep.ejected = BoolField(eo, "ejected", ew, false);
    spec.endpoints.push_back(std::move(ep));
  }
  return spec;
}

// Leases held for JavaScript (tests): id → lease.
struct Leases {
  uint64_t next = 1;
  std::unordered_map<uint64_t, EndpointLease> held;
};

Leases& LeasesOf(Napi::Env env) {
  static std::unordered_map<napi_env, std::unique_ptr<Leases>> all;  // JS threads only
  auto& slot = all[env];
  if (!slot) slot = std::make_unique<Leases>();
  return *slot;
}

// clusterTableReplace(clusters[]) -> table version
Napi::Value ReplaceJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArray()) ThrowTypeError(env, "clusterTableReplace: clusters must be an array");
  Napi::Array list = info[0].As<Napi::Array>();
  std::vector<ClusterSpec> specs;
  // Everything is parsed before anything is applied: a bad entry changes nothing.
  for (uint32_t i = 0; i < list.Length(); i++) specs.push_back(ClusterArg(env, list.Get(i), "clusterTableReplace: clusters[" + std::to_string(i) + "]"));
  GlobalClusterTable().Replace(std::move(specs));
  return Napi::Number::New(env, static_cast<double>(GlobalClusterTable().version()));
}

Napi::Value UpsertJs(const Napi::CallbackInfo& info) {
  GlobalClusterTable().Upsert(ClusterArg(info.Env(), info[0], "clusterTableUpsert: cluster"));
  return Napi::Number::New(info.Env(), static_cast<double>(GlobalClusterTable().version()));
}

Napi::Value RemoveJs(const Napi::CallbackInfo& info) {
  if (!info[0].IsString()) ThrowTypeError(info.Env(), "clusterTableRemove: name must be a string");
  GlobalClusterTable().Remove(info[0].As<Napi::String>().Utf8Value());
  return Napi::Number::New(info.Env(), static_cast<double>(GlobalClusterTable().version()));
}

// clusterTablePick(name, {tried?: number[], hold?: boolean}) -> {index, ip, port, lease?} | undefined
Napi::Value PickJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) ThrowTypeError(env, "clusterTablePick: name must be a string");
  uint64_t tried = 0;
  bool hold = false;
  if (!info[1].IsUndefined()) {
    if (!info[1].IsObject()) ThrowTypeError(env, "clusterTablePick: options must be an object");
    Napi::Object o = info[1].As<Napi::Object>();
    Napi::Value t = o.Get("tried");
    if (!t.IsUndefined()) {
      if (!t.IsArray()) ThrowTypeError(env, "clusterTablePick: options.tried must be an array of endpoint indexes");
      Napi::Array a = t.As<Napi::Array>();
      for (uint32_t i = 0; i < a.Length(); i++) tried |= uint64_t{1} << static_cast<int>(IntegerArg(a.Get(i), "clusterTablePick: options.tried[]", 0, 63));
    }
    hold = BoolField(o, "hold", "clusterTablePick: options", false);
  }
  auto cluster = GlobalClusterTable().Find(info[0].As<Napi::String>().Utf8Value());
  if (!cluster) return env.Undefined();
  int i = cluster->Pick(tried);
  if (i < 0) return env.Undefined();
  Napi::Object out = Napi::Object::New(env);
  out.Set("index", i);
  out.Set("ip", cluster->endpoint(i).ip);
  out.Set("port", cluster->endpoint(i).port);
  EndpointLease lease = Acquire(*cluster, i);
  if (hold) {
    Leases& leases = LeasesOf(env);
    uint64_t id = leases.next++;
    leases.held.emplace(id, std::move(lease));
    out.Set("lease", static_cast<double>(id));
  }
  return out;
}

Napi::Value ReleaseJs(const Napi::CallbackInfo& info) {
  uint64_t id = static_cast<uint64_t>(IntegerArg(info[0], "clusterTableRelease: lease", 1, 9007199254740991.0));
  return Napi::Boolean::New(info.Env(), LeasesOf(info.Env()).held.erase(id) == 1);
}

// clusterTableStats() -> {version, clusters: {name: [{ip, port, active, picked, healthy, ejected, weight}]}}
Napi::Value StatsJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  Napi::Object clusters = Napi::Object::New(env);
  for (const auto& [name, c] : *GlobalClusterTable().Current()) {
    Napi::Array eps = Napi::Array::New(env, c->size());
    for (size_t i = 0; i < c->size(); i++) {
      const ClusterEndpoint& e = c->endpoint(i);
      Napi::Object eo = Napi::Object::New(env);
      eo.Set("ip", e.ip);
      eo.Set("port", e.port);
      eo.Set("weight", e.weight);
      eo.Set("healthy", e.healthy);
      eo.Set("ejected", e.ejected);
      eo.Set("active", e.load->active.load());
      eo.Set("picked", static_cast<double>(e.load->picked.load()));
      eps.Set(static_cast<uint32_t>(i), eo);
    }
    clusters.Set(name, eps);
  }
  out.Set("version", static_cast<double>(GlobalClusterTable().version()));
  out.Set("clusters", clusters);
  return out;
}

}  // namespace

void RegisterClusterTable(Napi::Env env, Napi::Object exports) {
  exports.Set("clusterTableReplace", Napi::Function::New(env, ReplaceJs, "clusterTableReplace"));
  exports.Set("clusterTableUpsert", Napi::Function::New(env, UpsertJs, "clusterTableUpsert"));
  exports.Set("clusterTableRemove", Napi::Function::New(env, RemoveJs, "clusterTableRemove"));
  exports.Set("clusterTablePick", Napi::Function::New(env, PickJs, "clusterTablePick"));
  exports.Set("clusterTableRelease", Napi::Function::New(env, ReleaseJs, "clusterTableRelease"));
  exports.Set("clusterTableStats", Napi::Function::New(env, StatsJs, "clusterTableStats"));
}

}  // namespace weir
