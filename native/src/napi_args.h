// Argument checks shared by the Node-API glue files: errors that name the
// argument, thrown as JavaScript TypeErrors (or Errors with a code).
#pragma once

#include <napi.h>

#include <cmath>
#include <string>

#include "netns_thread.h"

namespace weir {

[[noreturn]] inline void ThrowTypeError(Napi::Env env, const std::string& message) { throw Napi::TypeError::New(env, message); }

// A Failure as a JavaScript Error with `code`.
[[noreturn]] inline void ThrowFailure(Napi::Env env, const Failure& failure) {
  Napi::Error error = Napi::Error::New(env, failure.message);
  error.Set("code", Napi::String::New(env, failure.code));
  throw error;
}

// An integer in [min, max], else a TypeError naming `name`.
inline double IntegerArg(const Napi::Value& v, const std::string& name, double min, double max) {
  double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : NAN;
  if (!v.IsNumber() || std::isnan(d) || d != std::floor(d) || d < min || d > max) {
    ThrowTypeError(v.Env(), name + " must be an integer in [" + std::to_string(static_cast<long long>(min)) + ", " +
                                std::to_string(static_cast<long long>(max)) + "]");
  }
  return d;
}

}  // namespace weir
