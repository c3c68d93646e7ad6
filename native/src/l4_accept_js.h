// Registers the native accept path's JavaScript exports (l4Listen,
// l4Unlisten, l4SetRoutes, l4AbortNative, l4Stats).
#pragma once

#include <napi.h>

namespace weir {

void RegisterL4Accept(Napi::Env env, Napi::Object exports);

}  // namespace weir
