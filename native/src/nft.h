// libnftables, in-process: one script = one netlink batch = one transaction.
#pragma once

#include <optional>
#include <string>

#include "netns_thread.h"

namespace weir {

struct NftOptions {
  bool json = false;   // JSON output (list commands)
  bool check = false;  // dry run: parse and validate in the kernel, commit nothing
};

// Runs `script` with a fresh nft context on the calling thread (which must
// already be in the target netns: a context talks to the netns its netlink
// socket was opened in). On success fills *output; on failure the message is
// libnftables' own error text, unmodified.
std::optional<Failure> NftRun(const std::string& script, const NftOptions& options, std::string* output);

}  // namespace weir
