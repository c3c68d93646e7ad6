// See loader.h.
#include "loader.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <thread>

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

namespace weir::bpf {
namespace {

Failure Errno(const std::string& what, int err) {
  const char* name = strerrorname_np(err);
  return Failure{what + ": " + strerror(err), name ? name : "EUNKNOWN"};
}

struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  ~Fd() { if (fd >= 0) close(fd); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

struct ObjectCloser {
  void operator()(bpf_object* o) const { bpf_object__close(o); }
};
using Object = std::unique_ptr<bpf_object, ObjectCloser>;

// libbpf prints its own diagnostics (verifier log included) to stderr by
// default; keep the last lines so a load failure can say why.
thread_local std::string g_log;
int CaptureLog(enum libbpf_print_level level, const char* fmt, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  char* buf = nullptr;
  if (vasprintf(&buf, fmt, args) < 0) return 0;
  g_log += buf;
  free(buf);
  // The verifier's reason is at the end of its log.
  if (g_log.size() > 3000) g_log.erase(0, g_log.size() - 3000);
  return 0;
}

std::optional<Failure> Open(const std::string& object, const char* pinRoot, Object* out) {
  libbpf_set_print(CaptureLog);
  g_log.clear();
  LIBBPF_OPTS(bpf_object_open_opts, opts, .pin_root_path = pinRoot);
  bpf_object* obj = bpf_object__open_file(object.c_str(), &opts);
  if (!obj) return Errno("open " + object, errno);
  out->reset(obj);
  return std::nullopt;
}

std::optional<Failure> Load(bpf_object* obj, const std::string& object) {
  if (bpf_object__load(obj) != 0) {
    int err = errno;
    std::string log = g_log;
    while (!log.empty() && log.back() == '\n') log.pop_back();
    return Failure{"load " + object + ": " + strerror(err) + (log.empty() ? "" : " (libbpf: " + log + ")"), "ELOAD"};
  }
  return std::nullopt;
}

void ListPrograms(bpf_object* obj, std::vector<ProgramState>* out) {
  bpf_program* prog;
  bpf_object__for_each_program(prog, obj) out->push_back({bpf_program__name(prog), bpf_program__section_name(prog), false});
}

std::optional<Failure> OpenMap(const std::string& pinPath, int* fd, bpf_map_info* info) {
  *fd = bpf_obj_get(pinPath.c_str());
  if (*fd < 0) return Errno("open pinned map " + pinPath, errno);
  uint32_t len = sizeof(*info);
  std::memset(info, 0, sizeof(*info));
  if (bpf_obj_get_info_by_fd(*fd, info, &len) != 0) {
    int err = errno;
    close(*fd);
    return Errno("map info " + pinPath, err);
  }
  return std::nullopt;
}

std::optional<Failure> CheckSize(const std::string& pinPath, const char* what, size_t got, uint32_t want) {
  if (got == want) return std::nullopt;
  return Failure{pinPath + ": " + what + " is " + std::to_string(got) + " bytes, the map's is " + std::to_string(want), "EINVAL"};
}

// sk_msg programs attach to a sockhash, not to a cgroup: the pinned map
// holds the program (no link to pin), and attaching again replaces it in
// place, so a restarted agent never leaves the map without one. Sockets
// already in the map keep the program they were entered with.
std::optional<Failure> AttachToSockhash(bpf_object* obj, bpf_program* prog, ProgramState* st) {
  bpf_map* socks = bpf_object__find_map_by_name(obj, "weir_socks");
  if (!socks) return Failure{st->name + ": the object has no weir_socks map", "ELOAD"};
  int mapFd = bpf_map__fd(socks);
  __u32 ids[1] = {};
  __u32 count = 1;
  bool had = bpf_prog_query(mapFd, BPF_SK_MSG_VERDICT, 0, nullptr, ids, &count) == 0 && count > 0;
  if (bpf_prog_attach(bpf_program__fd(prog), mapFd, BPF_SK_MSG_VERDICT, 0) != 0) return Errno("attach " + st->name + " (sk_msg) to weir_socks", errno);
  st->attachedNow = !had;
  return std::nullopt;
}

}  // namespace

std::optional<Failure> Ensure(const std::string& object, const std::string& pinDir, const std::string& cgroup, std::vector<ProgramState>* out) {
  if (mkdir(pinDir.c_str(), 0700) != 0 && errno != EEXIST) return Errno("mkdir " + pinDir, errno);
  Object obj;
  if (auto f = Open(object, pinDir.c_str(), &obj)) return f;
  if (auto f = Load(obj.get(), object)) return f;
  Fd cg(open(cgroup.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (cg.fd < 0) return Errno("open cgroup " + cgroup, errno);
  bpf_program* prog;
  bpf_object__for_each_program(prog, obj.get()) {
    ProgramState st{bpf_program__name(prog), bpf_program__section_name(prog), false};
    if (bpf_program__type(prog) == BPF_PROG_TYPE_SK_MSG) {
      if (auto f = AttachToSockhash(obj.get(), prog, &st)) return f;
      out->push_back(st);
      continue;
    }
    std::string pin = pinDir + "/link_" + st.name;
    bpf_link* link = bpf_link__open(pin.c_str());
    if (link) {
      // A link from an earlier agent: swap its program, never detach.
      int rc = bpf_link__update_program(link, prog);
      int err = errno;
      bpf_link__destroy(link);
      if (rc != 0) return Errno("update pinned link " + pin, err);
    } else {
      link = bpf_program__attach_cgroup(prog, cg.fd);
      if (!link) return Errno("attach " + st.name + " (" + st.section + ") to " + cgroup, errno);
      int rc = bpf_link__pin(link, pin.c_str());
      int err = errno;
      // The pin holds the link: closing our fd (destroy) leaves it attached.
      bpf_link__destroy(link);
      if (rc != 0) return Errno("pin link " + pin, err);
      st.attachedNow = true;
    }
    out->push_back(st);
  }
  return std::nullopt;
}

std::optional<Failure> Probe(const std::string& object, std::vector<ProgramState>* out) {
  Object obj;
  if (auto f = Open(object, nullptr, &obj)) return f;
  bpf_map* map;
  bpf_object__for_each_map(map, obj.get()) bpf_map__set_pin_path(map, nullptr);
  if (auto f = Load(obj.get(), object)) return f;
  ListPrograms(obj.get(), out);
  return std::nullopt;
}

std::optional<Failure> ReadLink(const std::string& pinPath, LinkInfo* out) {
  Fd fd(bpf_obj_get(pinPath.c_str()));
  if (fd.fd < 0) return Errno("open pinned link " + pinPath, errno);
  bpf_link_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(fd.fd, &info, &len) != 0) return Errno("link info " + pinPath, errno);
  out->linkId = info.id;
  out->progId = info.prog_id;
  if (info.type == BPF_LINK_TYPE_CGROUP) {
    out->cgroupId = info.cgroup.cgroup_id;
    out->attachType = info.cgroup.attach_type;
  }
  Fd prog(bpf_prog_get_fd_by_id(info.prog_id));
  if (prog.fd >= 0) {
    bpf_prog_info pinfo{};
    uint32_t plen = sizeof(pinfo);
    if (bpf_obj_get_info_by_fd(prog.fd, &pinfo, &plen) == 0) {
      out->progName = pinfo.name;
      out->runTimeNs = pinfo.run_time_ns;
      out->runCnt = pinfo.run_cnt;
    }
  }
  return std::nullopt;
}

std::optional<Failure> DetachLink(const std::string& pinPath) {
  Fd fd(bpf_obj_get(pinPath.c_str()));
  if (fd.fd < 0) return Errno("open pinned link " + pinPath, errno);
  if (bpf_link_detach(fd.fd) != 0) return Errno("detach link " + pinPath, errno);
  return std::nullopt;
}

std::optional<Failure> EnableStats(int* fd) {
  *fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
  if (*fd < 0) return Errno("BPF_ENABLE_STATS", errno);
  return std::nullopt;
}

std::optional<Failure> MapMsgPrograms(const std::string& pinPath, std::vector<std::string>* out) {
  Fd fd(bpf_obj_get(pinPath.c_str()));
  if (fd.fd < 0) return Errno("open pinned map " + pinPath, errno);
  __u32 ids[8] = {};
  __u32 count = 8;
  if (bpf_prog_query(fd.fd, BPF_SK_MSG_VERDICT, 0, nullptr, ids, &count) != 0) return Errno("query sk_msg programs of " + pinPath, errno);
  for (__u32 i = 0; i < count && i < 8; i++) {
    Fd prog(bpf_prog_get_fd_by_id(ids[i]));
    if (prog.fd < 0) continue;  // detached meanwhile
    bpf_prog_info info{};
    uint32_t len = sizeof(info);
    if (bpf_obj_get_info_by_fd(prog.fd, &info, &len) == 0) out->push_back(info.name);
  }
  return std::nullopt;
}

std::optional<Failure> MapUpdate(const std::string& pinPath, const std::vector<uint8_t>& key, const std::vector<uint8_t>& value) {
  int fd;
  bpf_map_info info;
  if (auto f = OpenMap(pinPath, &fd, &info)) return f;
  Fd guard(fd);
  if (auto f = CheckSize(pinPath, "key", key.size(), info.key_size)) return f;
  if (auto f = CheckSize(pinPath, "value", value.size(), info.value_size)) return f;
  // One syscall replaces the whole value: readers see the old or the new entry, never a mix.
  if (bpf_map_update_elem(fd, key.data(), value.data(), BPF_ANY) != 0) return Errno("update " + pinPath, errno);
  return std::nullopt;
}

std::optional<Failure> MapLookup(const std::string& pinPath, const std::vector<uint8_t>& key, std::optional<std::vector<uint8_t>>* out) {
  int fd;
  bpf_map_info info;
  if (auto f = OpenMap(pinPath, &fd, &info)) return f;
  Fd guard(fd);
  if (auto f = CheckSize(pinPath, "key", key.size(), info.key_size)) return f;
  std::vector<uint8_t> value(info.value_size);
  if (bpf_map_lookup_elem(fd, key.data(), value.data()) != 0) {
    if (errno == ENOENT) { out->reset(); return std::nullopt; }
    return Errno("lookup " + pinPath, errno);
  }
  *out = std::move(value);
  return std::nullopt;
}

std::optional<Failure> MapDelete(const std::string& pinPath, const std::vector<uint8_t>& key, bool* existed) {
  int fd;
  bpf_map_info info;
  if (auto f = OpenMap(pinPath, &fd, &info)) return f;
  Fd guard(fd);
  if (auto f = CheckSize(pinPath, "key", key.size(), info.key_size)) return f;
  *existed = bpf_map_delete_elem(fd, key.data()) == 0;
  if (!*existed && errno != ENOENT) return Errno("delete " + pinPath, errno);
  return std::nullopt;
}

std::optional<Failure> MapKeys(const std::string& pinPath, std::vector<std::vector<uint8_t>>* out) {
  int fd;
  bpf_map_info info;
  if (auto f = OpenMap(pinPath, &fd, &info)) return f;
  Fd guard(fd);
  std::vector<uint8_t> cur(info.key_size), next(info.key_size);
  const void* prev = nullptr;
  while (bpf_map_get_next_key(fd, prev, next.data()) == 0) {
    out->push_back(next);
    cur = next;
    prev = cur.data();
    if (out->size() > info.max_entries) break;  // a map changing under us cannot loop forever
  }
  if (errno != ENOENT && errno != 0) return Errno("iterate " + pinPath, errno);
  return std::nullopt;
}

std::optional<Failure> ReadNetns(const std::string& path, NetnsInfo* out) {
  std::optional<Failure> failure;
  std::thread t([&] {
    Fd ns(open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (ns.fd < 0) { failure = Errno("open netns " + path, errno); return; }
    if (setns(ns.fd, CLONE_NEWNET) != 0) { failure = Errno("setns " + path, errno); return; }
    Fd s(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (s.fd < 0) { failure = Errno("socket in " + path, errno); return; }
    socklen_t len = sizeof(out->cookie);
    if (getsockopt(s.fd, SOL_SOCKET, SO_NETNS_COOKIE, &out->cookie, &len) != 0) { failure = Errno("SO_NETNS_COOKIE in " + path, errno); return; }
    ifaddrs* list = nullptr;
    if (getifaddrs(&list) != 0) { failure = Errno("getifaddrs in " + path, errno); return; }
    for (ifaddrs* i = list; i; i = i->ifa_next) {
      if (!i->ifa_addr || (i->ifa_addr->sa_family != AF_INET && i->ifa_addr->sa_family != AF_INET6)) continue;
      NetnsAddress a;
      a.ifname = i->ifa_name;
      auto prefixOf = [](const uint8_t* m, int n) { int p = 0; for (int k = 0; k < n; k++) p += __builtin_popcount(m[k]); return p; };
      if (i->ifa_addr->sa_family == AF_INET) {
        a.family = 4;
        a.bytes[10] = a.bytes[11] = 0xff;
        std::memcpy(a.bytes + 12, &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr, 4);
        a.prefix = i->ifa_netmask ? prefixOf(reinterpret_cast<uint8_t*>(&reinterpret_cast<sockaddr_in*>(i->ifa_netmask)->sin_addr), 4) : 32;
      } else {
        a.family = 6;
        std::memcpy(a.bytes, &reinterpret_cast<sockaddr_in6*>(i->ifa_addr)->sin6_addr, 16);
        a.prefix = i->ifa_netmask ? prefixOf(reinterpret_cast<uint8_t*>(&reinterpret_cast<sockaddr_in6*>(i->ifa_netmask)->sin6_addr), 16) : 128;
      }
      out->addresses.push_back(a);
    }
    freeifaddrs(list);
  });
  t.join();
  return failure;
}

}  // namespace weir::bpf
