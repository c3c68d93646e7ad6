// Registers the DNS UDP fast path's JavaScript exports (the DnsFast class,
// dnsLocalAddress) on the addon's exports object.
#pragma once

#include <napi.h>

namespace weir {

void RegisterDnsFast(Napi::Env env, Napi::Object exports);

}  // namespace weir
