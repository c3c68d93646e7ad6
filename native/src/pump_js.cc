// Node-API glue of the splice pump: argument checks, one PumpEngine (one
// epoll thread) per JavaScript environment, completions delivered through a
// thread-safe function. The completion callbacks live here on the JS thread
// (keyed by pump id), never on the pump thread.
#include "pump_js.h"

#include <cmath>
#include <memory>
#include <string>
#include <unordered_map>

#include "napi_args.h"
#include "pump.h"

namespace weir {
namespace {

class PumpBinding;
void DeliverOutcome(Napi::Env env, Napi::Function unused, PumpBinding* binding, PumpOutcome* outcome);
using OutcomeTsfn = Napi::TypedThreadSafeFunction<PumpBinding, PumpOutcome, DeliverOutcome>;

std::string BytesOption(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return {};
  Napi::Uint8Array bytes = Uint8ArrayArg(v, std::string("pumpStart: options.") + key);
  return std::string(reinterpret_cast<const char*>(bytes.Data()), bytes.ByteLength());
}

// Per-environment state (main thread or a worker): the engine, its thread-safe
// function and the callbacks of running pumps.
class PumpBinding {
 public:
  static PumpBinding* For(Napi::Env env) {
    auto* binding = env.GetInstanceData<PumpBinding>();
    if (binding == nullptr) {
      binding = new PumpBinding();
      env.SetInstanceData<PumpBinding>(binding);  // deleted by Node when the env goes away
    }
    return binding;
  }

  ~PumpBinding() {
    if (engine_) engine_->Stop();
  }

  PumpEngine& Engine(Napi::Env env) {
    if (torn_down_) ThrowFailure(env, Failure{"pump: environment is shutting down", "ESHUTDOWN"});
    if (engine_) return *engine_;
    // Unref'd while idle: an idle pump engine must not keep the process alive.
    tsfn_ = OutcomeTsfn::New(env, "weirSplicePump", 0, 1, this);
    tsfn_.Unref(env);
    std::unique_ptr<PumpEngine> engine;
    auto failure = PumpEngine::Create(
        [this](std::unique_ptr<PumpOutcome> outcome) {
          // Unbounded queue: NonBlockingCall fails only once the function is
          // closing (environment teardown); the outcome is then dropped.
          if (tsfn_.NonBlockingCall(outcome.get()) == napi_ok) outcome.release();
        },
        &engine);
    if (failure) {
      tsfn_.Release();
      ThrowFailure(env, *failure);
    }
    engine_ = std::move(engine);
    engine_->SetBusyPoll(busy_poll_us_);
    engine_->ConfigurePipePool(pipe_pool_max_, pipe_pool_idle_ms_);
    // Registered after the thread-safe function, so it runs BEFORE Node's own
    // teardown of that function (hooks run in reverse order): the pump thread
    // is joined while the function it calls is still valid.
    napi_add_env_cleanup_hook(env, TearDown, this);
    return *engine_;
  }

  // events: the callback gets every event of a StartConnect pump, each
  // tagged with `event`; else only the final result, untagged.
  void Track(Napi::Env env, uint64_t id, Napi::Function on_done, std::shared_ptr<PumpCounters> counters, bool events = false) {
    if (running_.empty()) tsfn_.Ref(env);  // a running pump keeps the loop alive, like an open socket
    running_.emplace(id, Running{Napi::Persistent(on_done), std::move(counters), events});
  }

  bool Known(uint64_t id) const { return running_.count(id) != 0; }

  const PumpCounters* Counters(uint64_t id) const {
    auto it = running_.find(id);
    return it == running_.end() ? nullptr : it->second.counters.get();
  }

  PumpEngineStats Stats() const { return engine_ ? engine_->Stats() : PumpEngineStats{}; }

  // Kept here so it can be set before the engine (and its thread) exists.
  void SetBusyPoll(int64_t micros) {
    busy_poll_us_ = micros;
    if (engine_) engine_->SetBusyPoll(micros);
  }
  int64_t BusyPollMicros() const { return busy_poll_us_; }
  void ConfigurePipePool(size_t max_idle, int64_t idle_ms) {
    pipe_pool_max_ = max_idle;
    pipe_pool_idle_ms_ = idle_ms;
    if (engine_) engine_->ConfigurePipePool(max_idle, idle_ms);
  }
  size_t PipePoolMax() const { return pipe_pool_max_; }
  int64_t PipePoolIdleMs() const { return pipe_pool_idle_ms_; }
  bool HasEngine() const { return engine_ != nullptr; }

  void Deliver(Napi::Env env, const PumpOutcome& outcome) {
    auto it = running_.find(outcome.id);
    if (it == running_.end()) return;
    if (outcome.kind != PumpOutcome::Kind::kDone) {
      Napi::Object ev = Napi::Object::New(env);
      if (outcome.kind == PumpOutcome::Kind::kConnected) {
        ev.Set("event", "connected");
        if (!outcome.local_address.empty()) {
          ev.Set("localAddress", outcome.local_address);
          ev.Set("localPort", outcome.local_port);
        }
      } else {
        ev.Set("event", "connect-failed");
        ev.Set("code", outcome.code);
        ev.Set("message", outcome.error);
      }
      // A reference, not the map entry: the callback may start or end pumps.
      Napi::Function fn = it->second.on_done.Value();
      fn.Call({ev});
      return;
    }
    const bool events = it->second.events;
    Napi::FunctionReference on_done = std::move(it->second.on_done);
    running_.erase(it);
    if (running_.empty()) tsfn_.Unref(env);
    Napi::Object result = Napi::Object::New(env);
    if (events) result.Set("event", "done");
    result.Set("bytesAtoB", static_cast<double>(outcome.a_to_b));
    result.Set("bytesBtoA", static_cast<double>(outcome.b_to_a));
    result.Set("reason", outcome.reason);
    if (!outcome.error.empty()) result.Set("error", outcome.error);
    result.Set("durationMs", outcome.duration_ms);
    on_done.Call({result});
  }

 private:
  static void TearDown(void* arg) {
    auto* self = static_cast<PumpBinding*>(arg);
    self->torn_down_ = true;
    if (self->engine_) self->engine_->Stop();
    self->running_.clear();
  }

  struct Running {
    Napi::FunctionReference on_done;
    std::shared_ptr<PumpCounters> counters;
    bool events = false;
  };

  std::unique_ptr<PumpEngine> engine_;
  OutcomeTsfn tsfn_;
  bool torn_down_ = false;
  int64_t busy_poll_us_ = 0;
  size_t pipe_pool_max_ = PipePool::kDefaultMaxIdle;
  int64_t pipe_pool_idle_ms_ = PipePool::kDefaultIdleMs;
  std::unordered_map<uint64_t, Running> running_;
};

void DeliverOutcome(Napi::Env env, Napi::Function unused, PumpBinding* binding, PumpOutcome* raw) {
  std::unique_ptr<PumpOutcome> outcome(raw);
  if (env == nullptr || binding == nullptr) return;  // environment teardown
  binding->Deliver(env, *outcome);
}

}  // namespace

PumpEngine& PumpEngineFor(Napi::Env env) { return PumpBinding::For(env)->Engine(env); }

namespace {

// pumpStart(fdA, fdB, options?, onDone) -> id
Napi::Value PumpStartJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  PumpSpec spec;
  spec.fd_a = static_cast<int>(IntegerArg(info[0], "pumpStart: fdA", 0, 2147483647));
  spec.fd_b = static_cast<int>(IntegerArg(info[1], "pumpStart: fdB", 0, 2147483647));
  if (!info[2].IsUndefined() && !info[2].IsNull()) {
    if (!info[2].IsObject()) ThrowTypeError(env, "pumpStart: options must be an object");
    Napi::Object o = info[2].As<Napi::Object>();
    Napi::Value idle = o.Get("idleTimeoutMs");
    if (!idle.IsUndefined()) spec.idle_timeout_ms = static_cast<int64_t>(IntegerArg(idle, "pumpStart: options.idleTimeoutMs", 0, 2147483647));
    Napi::Value pipe = o.Get("pipeSize");
    if (!pipe.IsUndefined()) spec.pipe_size = static_cast<int>(IntegerArg(pipe, "pumpStart: options.pipeSize", 4096, 1 << 30));
    spec.initial_a_to_b = BytesOption(o, "initialAtoB");
    spec.initial_b_to_a = BytesOption(o, "initialBtoA");
  }
  if (!info[3].IsFunction()) ThrowTypeError(env, "pumpStart: onDone must be a function");
  PumpBinding* binding = PumpBinding::For(env);
  uint64_t id = 0;
  std::shared_ptr<PumpCounters> counters;
  if (auto f = binding->Engine(env).Start(spec, &id, &counters)) ThrowFailure(env, *f);
  binding->Track(env, id, info[3].As<Napi::Function>(), std::move(counters));
  return Napi::Number::New(env, static_cast<double>(id));
}

// The {ip, port, localAddress?, connectTimeoutMs?} of pumpConnect/pumpRedial.
DialTarget DialArg(Napi::Env env, const Napi::Value& v, const std::string& fn) {
  if (!v.IsObject()) ThrowTypeError(env, fn + ": target must be an object {ip, port, localAddress?, connectTimeoutMs?}");
  Napi::Object o = v.As<Napi::Object>();
  Napi::Value ip = o.Get("ip");
  if (!ip.IsString()) ThrowTypeError(env, fn + ": target.ip must be a string");
  const int port = static_cast<int>(IntegerArg(o.Get("port"), fn + ": target.port", 1, 65535));
  std::string local;
  Napi::Value la = o.Get("localAddress");
  if (!la.IsUndefined()) {
    if (!la.IsString()) ThrowTypeError(env, fn + ": target.localAddress must be a string");
    local = la.As<Napi::String>().Utf8Value();
  }
  Napi::Value t = o.Get("connectTimeoutMs");
  const int64_t timeout = t.IsUndefined() ? 5000 : static_cast<int64_t>(IntegerArg(t, fn + ": target.connectTimeoutMs", 1, 2147483647));
  DialTarget dial;
  if (auto f = ParseDialTarget(ip.As<Napi::String>().Utf8Value(), port, local, timeout, &dial)) {
    ThrowFailure(env, Failure{fn + ": target." + f->message, f->code});
  }
  return dial;
}

uint64_t IdArg(const Napi::Value& v, const char* fn) {
  return static_cast<uint64_t>(IntegerArg(v, std::string(fn) + ": id", 1, 9007199254740991.0));
}

// pumpConnect(fdA, target, options?, onEvent) -> id. The pump thread
// connects to target itself; onEvent gets {event: 'connected', localAddress,
// localPort} or {event: 'connect-failed', code, message} (then pumpRedial or
// pumpAbort), and last {event: 'done', ...the pumpStart result}.
Napi::Value PumpConnectJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  PumpSpec spec;
  spec.fd_a = static_cast<int>(IntegerArg(info[0], "pumpConnect: fdA", 0, 2147483647));
  DialTarget dial = DialArg(env, info[1], "pumpConnect");
  if (!info[2].IsUndefined() && !info[2].IsNull()) {
    if (!info[2].IsObject()) ThrowTypeError(env, "pumpConnect: options must be an object");
    Napi::Object o = info[2].As<Napi::Object>();
    Napi::Value idle = o.Get("idleTimeoutMs");
    if (!idle.IsUndefined()) spec.idle_timeout_ms = static_cast<int64_t>(IntegerArg(idle, "pumpConnect: options.idleTimeoutMs", 0, 2147483647));
    Napi::Value pipe = o.Get("pipeSize");
    if (!pipe.IsUndefined()) spec.pipe_size = static_cast<int>(IntegerArg(pipe, "pumpConnect: options.pipeSize", 4096, 1 << 30));
    spec.initial_a_to_b = BytesOption(o, "initialAtoB");
    Napi::Value defer = o.Get("deferWake");
    if (!defer.IsUndefined() && !defer.IsBoolean()) ThrowTypeError(env, "pumpConnect: options.deferWake must be a boolean");
    spec.defer_wake = defer.IsBoolean() && defer.As<Napi::Boolean>().Value();
  }
  if (!info[3].IsFunction()) ThrowTypeError(env, "pumpConnect: onEvent must be a function");
  PumpBinding* binding = PumpBinding::For(env);
  uint64_t id = 0;
  std::shared_ptr<PumpCounters> counters;
  if (auto f = binding->Engine(env).StartConnect(spec, dial, &id, &counters)) ThrowFailure(env, *f);
  binding->Track(env, id, info[3].As<Napi::Function>(), std::move(counters), true);
  return Napi::Number::New(env, static_cast<double>(id));
}

// pumpFlush(): wakes the pump thread for pumps started with deferWake.
Napi::Value PumpFlushJs(const Napi::CallbackInfo& info) {
  PumpBinding* binding = PumpBinding::For(info.Env());
  if (binding->HasEngine()) binding->Engine(info.Env()).Flush();
  return info.Env().Undefined();
}

// pumpRedial(id, target) -> whether the pump is still there to dial it.
Napi::Value PumpRedialJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint64_t id = IdArg(info[0], "pumpRedial");
  DialTarget dial = DialArg(env, info[1], "pumpRedial");
  PumpBinding* binding = PumpBinding::For(env);
  if (!binding->HasEngine() || !binding->Known(id)) return Napi::Boolean::New(env, false);
  binding->Engine(env).Redial(id, dial);
  return Napi::Boolean::New(env, true);
}

// pumpAbort(id, {reset?}) -> whether the pump was still running
Napi::Value PumpAbortJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint64_t id = IdArg(info[0], "pumpAbort");
  bool reset = false;
  if (!info[1].IsUndefined()) {
    if (!info[1].IsObject()) ThrowTypeError(env, "pumpAbort: options must be an object");
    Napi::Value r = info[1].As<Napi::Object>().Get("reset");
    if (!r.IsUndefined() && !r.IsBoolean()) ThrowTypeError(env, "pumpAbort: options.reset must be a boolean");
    reset = r.IsBoolean() && r.As<Napi::Boolean>().Value();
  }
  PumpBinding* binding = PumpBinding::For(env);
  if (!binding->HasEngine() || !binding->Known(id)) return Napi::Boolean::New(env, false);
  binding->Engine(env).Abort(id, reset);
  return Napi::Boolean::New(env, true);
}

// pumpProgress(id) -> {bytesAtoB, bytesBtoA} | undefined
Napi::Value PumpProgressJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint64_t id = IdArg(info[0], "pumpProgress");
  const PumpCounters* counters = PumpBinding::For(env)->Counters(id);
  if (counters == nullptr) return env.Undefined();
  Napi::Object o = Napi::Object::New(env);
  o.Set("bytesAtoB", static_cast<double>(counters->a_to_b.load()));
  o.Set("bytesBtoA", static_cast<double>(counters->b_to_a.load()));
  return o;
}

Napi::Value PumpStatsJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  PumpBinding* binding = PumpBinding::For(env);
  PumpEngineStats s = binding->Stats();
  Napi::Object o = Napi::Object::New(env);
  o.Set("active", static_cast<double>(s.active));
  o.Set("started", static_cast<double>(s.started));
  o.Set("finished", static_cast<double>(s.finished));
  o.Set("threads", binding->HasEngine() ? 1 : 0);
  o.Set("busyPollUs", static_cast<double>(binding->BusyPollMicros()));
  o.Set("polledBatches", static_cast<double>(s.polled_batches));
  o.Set("blockedBatches", static_cast<double>(s.blocked_batches));
  o.Set("spinMs", static_cast<double>(s.spin_ns) / 1e6);
  o.Set("pipesPooled", static_cast<double>(s.pipes.idle));
  o.Set("pipesReused", static_cast<double>(s.pipes.reused));
  o.Set("pipesCreated", static_cast<double>(s.pipes.created));
  o.Set("pipesClosed", static_cast<double>(s.pipes.closed));
  return o;
}

// pumpConfigure({busyPollUs}) -> the settings now in force. Applies to the
// running engine at once, or to the one the first pumpStart creates.
Napi::Value PumpConfigureJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) ThrowTypeError(env, "pumpConfigure: options must be an object");
  Napi::Object o = info[0].As<Napi::Object>();
  PumpBinding* binding = PumpBinding::For(env);
  Napi::Value bp = o.Get("busyPollUs");
  // Bounded: a window of more than 10 ms is a spinning thread, not a poll.
  if (!bp.IsUndefined()) binding->SetBusyPoll(static_cast<int64_t>(IntegerArg(bp, "pumpConfigure: options.busyPollUs", 0, 10000)));
  Napi::Value max = o.Get("pipePoolMax");
  Napi::Value idle = o.Get("pipePoolIdleMs");
  if (!max.IsUndefined() || !idle.IsUndefined()) {
    // Bounded: each pooled pipe is two fds and counts against the user's pipe quota.
    size_t m = max.IsUndefined() ? binding->PipePoolMax() : static_cast<size_t>(IntegerArg(max, "pumpConfigure: options.pipePoolMax", 0, 4096));
    int64_t ms = idle.IsUndefined() ? binding->PipePoolIdleMs() : static_cast<int64_t>(IntegerArg(idle, "pumpConfigure: options.pipePoolIdleMs", 0, 3600000));
    binding->ConfigurePipePool(m, ms);
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("busyPollUs", static_cast<double>(binding->BusyPollMicros()));
  out.Set("pipePoolMax", static_cast<double>(binding->PipePoolMax()));
  out.Set("pipePoolIdleMs", static_cast<double>(binding->PipePoolIdleMs()));
  return out;
}

}  // namespace

void RegisterPump(Napi::Env env, Napi::Object exports) {
  exports.Set("pumpStart", Napi::Function::New(env, PumpStartJs, "pumpStart"));
  exports.Set("pumpConnect", Napi::Function::New(env, PumpConnectJs, "pumpConnect"));
  exports.Set("pumpFlush", Napi::Function::New(env, PumpFlushJs, "pumpFlush"));
  exports.Set("pumpRedial", Napi::Function::New(env, PumpRedialJs, "pumpRedial"));
  exports.Set("pumpAbort", Napi::Function::New(env, PumpAbortJs, "pumpAbort"));
  exports.Set("pumpProgress", Napi::Function::New(env, PumpProgressJs, "pumpProgress"));
  exports.Set("pumpStats", Napi::Function::New(env, PumpStatsJs, "pumpStats"));
  exports.Set("pumpConfigure", Napi::Function::New(env, PumpConfigureJs, "pumpConfigure"));
}

}  // namespace weir
