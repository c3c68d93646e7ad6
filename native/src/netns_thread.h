// Running work inside a network namespace without ever moving a libuv or
// JavaScript thread: every call gets a fresh OS thread that joins the target
// netns, does the work, restores its original netns (or aborts) and exits.
#pragma once

#include <functional>
#include <optional>
#include <string>

namespace weir {

// A failure to hand back to JavaScript: message is shown as-is, code is an
// errno name ("ENOENT") or a weir code ("ENOTNETNS", "ENFT").
struct Failure {
  std::string message;
  std::string code;
};

Failure ErrnoFailure(const std::string& what, int err);

struct NetnsSpec {
  enum class Kind {
    kCurrent,  // the process's own netns (no setns at all)
    kPath,     // /run/netns/X, /var/run/netns/cni-..., /proc/PID/ns/net
    kFresh,    // a throw-away anonymous netns (unshare), gone when the thread leaves it
  };
  Kind kind = Kind::kCurrent;
  std::string path;
};

using NetnsWork = std::function<std::optional<Failure>()>;

// Runs `work` on a new thread inside the netns described by `spec` and joins
// it. Returns the work's failure, or a failure to enter the netns (with the
// path and errno text). If the thread cannot return to its original netns the
// process aborts: a thread stuck in a pod's netns would silently send the
// agent's own traffic from inside that pod.
std::optional<Failure> RunInNetns(const NetnsSpec& spec, const NetnsWork& work);

}  // namespace weir
