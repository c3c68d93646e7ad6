// Registers the native HTTP/1.1 path's JavaScript exports (httpEngineConfigure,
// httpEngineAdopt, httpEngineTakeStats, httpEngineStats, httpEngineDrain).
#pragma once

#include <napi.h>

namespace weir {

void RegisterHttpEngine(Napi::Env env, Napi::Object exports);

}  // namespace weir
