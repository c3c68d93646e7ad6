// Node-API glue of weir_bpf.node (the eBPF loader addon; see loader.h).
#include <napi.h>

#include <linux/bpf.h>

#include "loader.h"
#include "../../../bpf/weir_maps.h"

static_assert(sizeof(weir_pod_plan) == WEIR_POD_PLAN_SIZE, "weir_pod_plan has padding: fix bpf/weir_maps.h");
static_assert(sizeof(weir_tuple) == 48, "weir_tuple layout");

namespace weir::bpf {
namespace {

[[noreturn]] void Throw(Napi::Env env, const Failure& f) {
  Napi::Error e = Napi::Error::New(env, f.message);
  e.Set("code", Napi::String::New(env, f.code));
  throw e;
}

std::string Str(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name) {
  if (info.Length() <= i || !info[i].IsString()) throw Napi::TypeError::New(info.Env(), std::string(fn) + ": " + name + " must be a string");
  std::string s = info[i].As<Napi::String>().Utf8Value();
  if (s.empty()) throw Napi::TypeError::New(info.Env(), std::string(fn) + ": " + name + " must not be empty");
  return s;
}

std::vector<uint8_t> Bytes(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name) {
  if (info.Length() <= i || !info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    throw Napi::TypeError::New(info.Env(), std::string(fn) + ": " + name + " must be a Buffer or Uint8Array");
  }
  auto a = info[i].As<Napi::Uint8Array>();
  return std::vector<uint8_t>(a.Data(), a.Data() + a.ByteLength());
}

Napi::Value Buf(Napi::Env env, const std::vector<uint8_t>& v) { return Napi::Buffer<uint8_t>::Copy(env, v.data(), v.size()); }

Napi::Value Programs(Napi::Env env, const std::vector<ProgramState>& list) {
  Napi::Array out = Napi::Array::New(env, list.size());
  for (size_t i = 0; i < list.size(); i++) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", list[i].name);
    o.Set("section", list[i].section);
    o.Set("attachedNow", list[i].attachedNow);
    out.Set(i, o);
  }
  return out;
}

// bpfEnsure(object, pinDir, cgroup) -> [{name, section, attachedNow}]
Napi::Value EnsureJs(const Napi::CallbackInfo& info) {
  std::vector<ProgramState> list;
  if (auto f = Ensure(Str(info, 0, "bpfEnsure", "object"), Str(info, 1, "bpfEnsure", "pinDir"), Str(info, 2, "bpfEnsure", "cgroup"), &list)) Throw(info.Env(), *f);
  return Programs(info.Env(), list);
}

Napi::Value ProbeJs(const Napi::CallbackInfo& info) {
  std::vector<ProgramState> list;
  if (auto f = Probe(Str(info, 0, "bpfProbe", "object"), &list)) Throw(info.Env(), *f);
  return Programs(info.Env(), list);
}

Napi::Value ReadLinkJs(const Napi::CallbackInfo& info) {
  LinkInfo l;
  if (auto f = ReadLink(Str(info, 0, "bpfReadLink", "pinPath"), &l)) Throw(info.Env(), *f);
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("linkId", l.linkId);
  o.Set("progId", l.progId);
  o.Set("progName", l.progName);
  o.Set("cgroupId", Napi::BigInt::New(info.Env(), static_cast<uint64_t>(l.cgroupId)));
  o.Set("attachType", l.attachType);
  o.Set("runTimeNs", Napi::BigInt::New(info.Env(), static_cast<uint64_t>(l.runTimeNs)));
  o.Set("runCnt", Napi::BigInt::New(info.Env(), static_cast<uint64_t>(l.runCnt)));
  return o;
}

Napi::Value DetachLinkJs(const Napi::CallbackInfo& info) {
  if (auto f = DetachLink(Str(info, 0, "bpfDetachLink", "pinPath"))) Throw(info.Env(), *f);
  return info.Env().Undefined();
}

// bpfEnableStats() -> fd; run-time stats count until it is closed.
Napi::Value EnableStatsJs(const Napi::CallbackInfo& info) {
  int fd = -1;
  if (auto f = EnableStats(&fd)) Throw(info.Env(), *f);
  return Napi::Number::New(info.Env(), fd);
}

Napi::Value MapMsgProgramsJs(const Napi::CallbackInfo& info) {
  std::vector<std::string> names;
  if (auto f = MapMsgPrograms(Str(info, 0, "bpfMapMsgPrograms", "pinPath"), &names)) Throw(info.Env(), *f);
  Napi::Array out = Napi::Array::New(info.Env(), names.size());
  for (size_t i = 0; i < names.size(); i++) out.Set(i, names[i]);
  return out;
}

Napi::Value MapUpdateJs(const Napi::CallbackInfo& info) {
  if (auto f = MapUpdate(Str(info, 0, "bpfMapUpdate", "pinPath"), Bytes(info, 1, "bpfMapUpdate", "key"), Bytes(info, 2, "bpfMapUpdate", "value"))) Throw(info.Env(), *f);
  return info.Env().Undefined();
}

Napi::Value MapLookupJs(const Napi::CallbackInfo& info) {
  std::optional<std::vector<uint8_t>> v;
  if (auto f = MapLookup(Str(info, 0, "bpfMapLookup", "pinPath"), Bytes(info, 1, "bpfMapLookup", "key"), &v)) Throw(info.Env(), *f);
  return v ? Buf(info.Env(), *v) : info.Env().Null();
}

Napi::Value MapDeleteJs(const Napi::CallbackInfo& info) {
  bool existed = false;
  if (auto f = MapDelete(Str(info, 0, "bpfMapDelete", "pinPath"), Bytes(info, 1, "bpfMapDelete", "key"), &existed)) Throw(info.Env(), *f);
  return Napi::Boolean::New(info.Env(), existed);
}

Napi::Value MapKeysJs(const Napi::CallbackInfo& info) {
  std::vector<std::vector<uint8_t>> keys;
  if (auto f = MapKeys(Str(info, 0, "bpfMapKeys", "pinPath"), &keys)) Throw(info.Env(), *f);
  Napi::Array out = Napi::Array::New(info.Env(), keys.size());
  for (size_t i = 0; i < keys.size(); i++) out.Set(i, Buf(info.Env(), keys[i]));
  return out;
}

// netnsInfo(path) -> {cookie: bigint, addresses: [{ifname, family, bytes: Buffer(16), prefix}]}
Napi::Value NetnsInfoJs(const Napi::CallbackInfo& info) {
  NetnsInfo n;
  if (auto f = ReadNetns(Str(info, 0, "netnsInfo", "path"), &n)) Throw(info.Env(), *f);
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("cookie", Napi::BigInt::New(env, static_cast<uint64_t>(n.cookie)));
  Napi::Array list = Napi::Array::New(env, n.addresses.size());
  for (size_t i = 0; i < n.addresses.size(); i++) {
    Napi::Object a = Napi::Object::New(env);
    a.Set("ifname", n.addresses[i].ifname);
    a.Set("family", n.addresses[i].family);
    a.Set("bytes", Napi::Buffer<uint8_t>::Copy(env, n.addresses[i].bytes, 16));
    a.Set("prefix", n.addresses[i].prefix);
    list.Set(i, a);
  }
  o.Set("addresses", list);
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("bpfEnsure", Napi::Function::New(env, EnsureJs));
  exports.Set("bpfProbe", Napi::Function::New(env, ProbeJs));
  exports.Set("bpfReadLink", Napi::Function::New(env, ReadLinkJs));
  exports.Set("bpfDetachLink", Napi::Function::New(env, DetachLinkJs));
  exports.Set("bpfEnableStats", Napi::Function::New(env, EnableStatsJs));
  exports.Set("bpfMapMsgPrograms", Napi::Function::New(env, MapMsgProgramsJs));
  exports.Set("bpfMapUpdate", Napi::Function::New(env, MapUpdateJs));
  exports.Set("bpfMapLookup", Napi::Function::New(env, MapLookupJs));
  exports.Set("bpfMapDelete", Napi::Function::New(env, MapDeleteJs));
  exports.Set("bpfMapKeys", Napi::Function::New(env, MapKeysJs));
  exports.Set("netnsInfo", Napi::Function::New(env, NetnsInfoJs));
  exports.Set("podPlanSize", Napi::Number::New(env, WEIR_POD_PLAN_SIZE));
  exports.Set("layoutVersion", Napi::Number::New(env, WEIR_LAYOUT_VERSION));
  return exports;
}

}  // namespace
}  // namespace weir::bpf

static Napi::Object InitWeirBpf(Napi::Env env, Napi::Object exports) { return weir::bpf::Init(env, exports); }
NODE_API_MODULE(weir_bpf, InitWeirBpf)
