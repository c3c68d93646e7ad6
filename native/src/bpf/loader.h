// weir's eBPF loader (libbpf): load bpf/weir.bpf.o, attach its programs to a
// cgroup2 directory through pinned links, and read/write its pinned maps.
// Built as its own addon (weir_bpf.node) so the proxy's addon never links
// libbpf. Everything here is synchronous: each call is a handful of bpf(2)
// syscalls, far below a millisecond.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace weir::bpf {

struct Failure {
  std::string message;
  std::string code;  // errno name, or ELOAD (libbpf refused the object / the verifier said no)
};

struct ProgramState {
  std::string name;        // function name in the object, e.g. weir_connect4
  std::string section;     // cgroup/connect4 ...
  bool attachedNow = false;  // false: an existing pinned link was updated in place
};

// Loads the object, reuses (or pins) its maps under pinDir, and for every
// program either updates the pinned link pinDir/link_<name> to the new
// program (atomic: no moment without a program) or attaches a new link to
// `cgroup` and pins it.
std::optional<Failure> Ensure(const std::string& object, const std::string& pinDir, const std::string& cgroup, std::vector<ProgramState>* out);

// Loads the object into the kernel without pinning or attaching anything,
// then drops it: proves the kernel accepts every program (precheck).
std::optional<Failure> Probe(const std::string& object, std::vector<ProgramState>* out);

struct LinkInfo {
  uint32_t linkId = 0;
  uint32_t progId = 0;
  uint64_t cgroupId = 0;
  uint32_t attachType = 0;
  std::string progName;
  // The program's totals since load; they count only while run-time stats
  // are enabled (EnableStats or kernel.bpf_stats_enabled).
  uint64_t runTimeNs = 0;
  uint64_t runCnt = 0;
};
std::optional<Failure> ReadLink(const std::string& pinPath, LinkInfo* out);

// Detaches the pinned link's program from its cgroup now (BPF_LINK_DETACH),
// instead of when the kernel frees the link after its last reference goes
// (a workqueue, some time later): uninstall can then choose the order in
// which programs stop. The pin stays until the caller removes it.
std::optional<Failure> DetachLink(const std::string& pinPath);

// Turns on the kernel's per-program run-time stats (BPF_ENABLE_STATS) for as
// long as the returned fd stays open: unlike the kernel.bpf_stats_enabled
// sysctl it is counted per holder and ends when the holder exits, so a
// crashed bench cannot leave the node paying for stats.
std::optional<Failure> EnableStats(int* fd);

// The names of the programs attached to a pinned sockmap/sockhash as sk_msg
// verdict (the shortcut's weir_sk_msg on weir_socks).
std::optional<Failure> MapMsgPrograms(const std::string& pinPath, std::vector<std::string>* out);

std::optional<Failure> MapUpdate(const std::string& pinPath, const std::vector<uint8_t>& key, const std::vector<uint8_t>& value);
// nullopt value with no failure: no such key.
std::optional<Failure> MapLookup(const std::string& pinPath, const std::vector<uint8_t>& key, std::optional<std::vector<uint8_t>>* out);
std::optional<Failure> MapDelete(const std::string& pinPath, const std::vector<uint8_t>& key, bool* existed);
std::optional<Failure> MapKeys(const std::string& pinPath, std::vector<std::vector<uint8_t>>* out);

struct NetnsAddress {
  std::string ifname;
  int family = 0;  // 4 or 6
  uint8_t bytes[16] = {};
  int prefix = 0;
};
struct NetnsInfo {
  uint64_t cookie = 0;
  std::vector<NetnsAddress> addresses;
};
// SO_NETNS_COOKIE and the addresses (getifaddrs) of the netns at `path`,
// read on a short-lived thread that joins the netns (the caller's thread
// never changes netns).
std::optional<Failure> ReadNetns(const std::string& path, NetnsInfo* out);

}  // namespace weir::bpf
