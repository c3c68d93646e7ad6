// Registers the cluster table's JavaScript exports (clusterTableReplace,
// clusterTableUpsert, clusterTableRemove, clusterTablePick,
// clusterTableRelease, clusterTableStats).
#pragma once

#include <napi.h>

namespace weir {

void RegisterClusterTable(Napi::Env env, Napi::Object exports);

}  // namespace weir
