// Node-API glue for giving memory back to the kernel: glibc's malloc keeps
// freed memory in its arenas (the main heap and one arena per thread that
// allocated, e.g. the pump thread and V8's workers) for reuse, so after a
// burst of connections the process's RSS stays at the burst's peak.
// malloc_trim(0) returns the free pages of every arena (madvise DONTNEED on
// whole free pages inside an arena, and trimming each arena's top).
#include "memory_js.h"

#include <malloc.h>

namespace weir {
namespace {

// mallocTrim() -> whether any memory was released to the system.
Napi::Value MallocTrimJs(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), malloc_trim(0) != 0);
}

}  // namespace

void RegisterMemory(Napi::Env env, Napi::Object exports) {
  exports.Set("mallocTrim", Napi::Function::New(env, MallocTrimJs, "mallocTrim"));
}

}  // namespace weir
