#include "netns_thread.h"

#include <fcntl.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <system_error>
#include <thread>

namespace weir {

Failure ErrnoFailure(const std::string& what, int err) {
  const char* name = strerrorname_np(err);
  return Failure{what + ": " + std::strerror(err), name != nullptr ? name : "EUNKNOWN"};
}

namespace {

// Closes an fd on scope exit so every early return stays leak-free.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

std::optional<Failure> EnterPath(const std::string& path) {
  Fd target(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (target.get() < 0) return ErrnoFailure("cannot open netns " + path, errno);
  // Ask nsfs what the file is before setns, so a wrong path (a regular file,
  // a mount namespace) gets an error that says so instead of a bare EINVAL.
  int type = ioctl(target.get(), NS_GET_NSTYPE);
  if (type < 0) {
    int err = errno;
    return Failure{path + " is not a namespace file (ioctl NS_GET_NSTYPE: " + std::strerror(err) + ")", "ENOTNETNS"};
  }
  if (type != CLONE_NEWNET) return Failure{path + " is a namespace but not a network namespace", "ENOTNETNS"};
  if (setns(target.get(), CLONE_NEWNET) != 0) return ErrnoFailure("setns " + path, errno);
  return std::nullopt;
}

std::optional<Failure> RunOnThisThread(const NetnsSpec& spec, const NetnsWork& work) {
  auto guarded = [&]() -> std::optional<Failure> {
    try {
      return work();
    } catch (const std::exception& e) {
      return Failure{e.what(), "EINTERNAL"};
    }
  };
  if (spec.kind == NetnsSpec::Kind::kCurrent) return guarded();

  Fd original(open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  if (original.get() < 0) return ErrnoFailure("open /proc/thread-self/ns/net", errno);

  if (spec.kind == NetnsSpec::Kind::kPath) {
    if (auto failed = EnterPath(spec.path)) return failed;
  } else if (unshare(CLONE_NEWNET) != 0) {
    return ErrnoFailure("unshare(CLONE_NEWNET) for a scratch netns", errno);
  }

  std::optional<Failure> result = guarded();

  if (setns(original.get(), CLONE_NEWNET) != 0) {
    std::fprintf(stderr, "weir native: cannot return a thread to its original netns (%s); aborting\n", std::strerror(errno));
    std::abort();
  }
  return result;
}

}  // namespace

std::optional<Failure> RunInNetns(const NetnsSpec& spec, const NetnsWork& work) {
  std::optional<Failure> result;
  try {
    std::thread worker([&] { result = RunOnThisThread(spec, work); });
    worker.join();
  } catch (const std::system_error& e) {
    // No thread (RLIMIT_NPROC, memory): report it; never run the work here.
    return Failure{std::string("cannot start a netns thread: ") + e.what(), "EAGAIN"};
  }
  return result;
}

}  // namespace weir
