// Registers mallocTrim (give the malloc arenas' free pages back to the
// kernel) on the addon's exports object.
#pragma once

#include <napi.h>

namespace weir {

void RegisterMemory(Napi::Env env, Napi::Object exports);

}  // namespace weir
