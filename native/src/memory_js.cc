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

// mallocStats() -> glibc's own account of its arenas (mallinfo2, summed over
// every arena): what the process's malloc holds from the kernel, how much of
// it is in use and how much is free but kept. Tells "freed but not given
// back" (malloc_trim can help) from "still in use" (it cannot).
Napi::Value MallocStatsJs(const Napi::CallbackInfo& info) {
  const struct mallinfo2 mi = mallinfo2();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("arenaBytes", static_cast<double>(mi.arena));        // from sbrk/arena mappings
  o.Set("mmappedBytes", static_cast<double>(mi.hblkhd));     // large blocks, own mappings
  o.Set("inUseBytes", static_cast<double>(mi.uordblks));
  o.Set("freeBytes", static_cast<double>(mi.fordblks));
  o.Set("freeChunks", static_cast<double>(mi.ordblks));
  o.Set("topReleasableBytes", static_cast<double>(mi.keepcost));
  return o;
}

}  // namespace

void RegisterMemory(Napi::Env env, Napi::Object exports) {
  exports.Set("mallocTrim", Napi::Function::New(env, MallocTrimJs, "mallocTrim"));
  exports.Set("mallocStats", Napi::Function::New(env, MallocStatsJs, "mallocStats"));
}

}  // namespace weir
