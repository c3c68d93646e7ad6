// Argument checks shared by the Node-API glue files: errors that name the
// argument, thrown as JavaScript TypeErrors (or Errors with a code).
#pragma once

#include <napi.h>

#include <cmath>
#include <string>

#include "netns_thread.h"

namespace weir {

[[noreturn]] inline void ThrowTypeError(Napi::Env env, const std::string& message) { throw Napi::TypeError::New(env, message); }

// A Failure as a JavaScript Error with `code` (to throw, or to reject a promise with).
inline Napi::Error FailureError(Napi::Env env, const Failure& failure) {
  Napi::Error error = Napi::Error::New(env, failure.message);
  error.Set("code", Napi::String::New(env, failure.code));
  return error;
}

[[noreturn]] inline void ThrowFailure(Napi::Env env, const Failure& failure) { throw FailureError(env, failure); }

// An integer in [min, max], else a TypeError naming `name`.
inline double IntegerArg(const Napi::Value& v, const std::string& name, double min, double max) {
  double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : NAN;
  if (!v.IsNumber() || std::isnan(d) || d != std::floor(d) || d < min || d > max) {
    ThrowTypeError(v.Env(), name + " must be an integer in [" + std::to_string(static_cast<long long>(min)) + ", " +
                                std::to_string(static_cast<long long>(max)) + "]");
  }
  return d;
}

// A Buffer or Uint8Array, else a TypeError naming `name`.
inline Napi::Uint8Array Uint8ArrayArg(const Napi::Value& v, const std::string& name) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    ThrowTypeError(v.Env(), name + " must be a Buffer or Uint8Array");
  }
  return v.As<Napi::Uint8Array>();
}

}  // namespace weir
