// Registers mallocTrim (give the malloc arenas' free pages back to the
// kernel) and mallocStats (what the arenas hold) on the addon's exports.
#pragma once

#include <napi.h>

namespace weir {

void RegisterMemory(Napi::Env env, Napi::Object exports);

}  // namespace weir
