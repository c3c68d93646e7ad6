// Node-API glue of the native mesh TLS relay (tls_relay.h).
#pragma once

#include <napi.h>

namespace weir {
void RegisterTlsRelay(Napi::Env env, Napi::Object exports);
}  // namespace weir
