// Registers the splice pump's JavaScript exports (pumpStart, pumpAbort,
// pumpProgress, pumpStats, pumpConfigure) on the addon's exports object.
#pragma once

#include <napi.h>

namespace weir {

void RegisterPump(Napi::Env env, Napi::Object exports);

class PumpEngine;
// This environment's pump engine, created (with its thread) on first use; throws into JS on failure.
PumpEngine& PumpEngineFor(Napi::Env env);

}  // namespace weir
