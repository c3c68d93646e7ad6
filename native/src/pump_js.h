// Registers the splice pump's JavaScript exports (pumpStart, pumpAbort,
// pumpProgress, pumpStats, pumpConfigure) on the addon's exports object.
#pragma once

#include <napi.h>

namespace weir {

void RegisterPump(Napi::Env env, Napi::Object exports);

}  // namespace weir
