// The zero-copy L4 pump: moves bytes between two connected TCP sockets with
// splice(2) through a pipe per direction, on one epoll thread owned by the
// addon, so bulk proxy traffic never crosses into JavaScript (no copy into a
// Buffer, no libuv wakeup per chunk). Pure C++; the Node-API glue that
// delivers completions to JavaScript lives in pump_js.cc.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "l4_native.h"
#include "netns_thread.h"
#include "pipe_pool.h"
#include "pump_dial.h"
#include "sockets.h"

namespace weir {

// Bytes delivered so far, readable from any thread while the pump runs.
struct PumpCounters {
  std::atomic<uint64_t> a_to_b{0};
  std::atomic<uint64_t> b_to_a{0};
};

struct PumpSpec {
  int fd_a = -1;
  int fd_b = -1;
  // 0 = no idle timeout. Idle = no byte moved in either direction.
  int64_t idle_timeout_ms = 0;
  // Pipe capacity per direction (F_SETPIPE_SZ) for a flow that needs it:
  // pipes start at the kernel's default (64 KiB) and grow to this the first
  // time one read fills the pipe (bulk data), so short and interactive
  // connections never pay for the resize. If the kernel refuses
  // (pipe-max-size, per-user pipe limits) the pipe keeps its size.
  int pipe_size = 1 << 20;
  // Bytes already read from A (resp. B) by the caller before the handoff:
  // written to the other side before anything spliced.
  std::string initial_a_to_b;
  std::string initial_b_to_a;
  // StartConnect only: queue the pump without waking the thread; the
  // caller promises a Flush() soon (JavaScript: once per event-loop turn),
  // so a burst of accepted connections costs one wakeup, not one each.
  bool defer_wake = false;
};

// What the pump thread reports. kDone ends a pump; a pump started with
// StartConnect also reports its upstream connect: kConnected (then bytes
// move) or kConnectFailed (it then waits for Redial or Abort).
struct Flow;

struct PumpOutcome {
  enum class Kind { kDone, kConnected, kConnectFailed };
  Kind kind = Kind::kDone;
  std::string code;           // kConnectFailed: ECONNREFUSED, ETIMEDOUT, ...
  std::string local_address;  // kConnected: the upstream socket's own address
  int local_port = 0;
  uint64_t id = 0;
  uint64_t a_to_b = 0;
  uint64_t b_to_a = 0;
  // closed | reset-by-a | reset-by-b | idle | aborted | error
  std::string reason;
  std::string error;  // set for reset-* (the errno seen) and error
  double duration_ms = 0;
};

struct PumpEngineStats {
  uint64_t active = 0;
  uint64_t started = 0;
  uint64_t finished = 0;
  // Busy-poll accounting: event batches found while spinning (each one a
  // sleep/wakeup avoided), batches that came after blocking, and the time
  // spent spinning (CPU the option costs).
  uint64_t polled_batches = 0;
  uint64_t blocked_batches = 0;
  uint64_t spin_ns = 0;
  PipePoolStats pipes;
};

class PumpEngine {
 public:
  // Called on the pump thread for each finished pump; takes ownership.
  using OnDone = std::function<void(std::unique_ptr<PumpOutcome>)>;

  // Creates the epoll instance and starts the thread.
  static std::optional<Failure> Create(OnDone on_done, std::unique_ptr<PumpEngine>* out);
  ~PumpEngine();
  PumpEngine(const PumpEngine&) = delete;
  PumpEngine& operator=(const PumpEngine&) = delete;

  // Checks both fds are connected stream sockets, duplicates them (the
  // caller keeps and must close its own fds) and creates the pipes; on
  // failure nothing was taken and nothing leaks. On success the pump thread
  // owns the duplicates and closes each exactly once.
  std::optional<Failure> Start(const PumpSpec& spec, uint64_t* id, std::shared_ptr<PumpCounters>* counters);

  // A pump whose B side the pump thread connects itself: A (the accepted
  // client socket, a Node socket's fd) is duplicated here, the one syscall
  // this costs the calling thread; the check of A, its socket options, the
  // upstream socket, its connect and the pipes all happen on the pump
  // thread. spec.fd_b is ignored. The outcome of the connect comes as a
  // kConnected or kConnectFailed event; after a failure the pump keeps A
  // until Redial (the next endpoint) or Abort (reset = RST the client).
  std::optional<Failure> StartConnect(const PumpSpec& spec, const DialTarget& dial, uint64_t* id,
                                      std::shared_ptr<PumpCounters>* counters);
  // Wakes the thread for commands queued with defer_wake (no-op if none).
  void Flush();
  // Dials `dial` for a pump that reported kConnectFailed; ignored otherwise.
  void Redial(uint64_t id, const DialTarget& dial);

  // Ends a pump: reset=true sends RST to both peers, else a normal close.
  // Unknown or already finished ids are ignored.
  void Abort(uint64_t id, bool reset);

  // Stops and joins the thread, closing every fd it still owns; no OnDone
  // call happens after Stop returns. Idempotent.
  void Stop();

  PumpEngineStats Stats() const;

  // Busy-poll window: after any event, keep polling epoll without sleeping
  // for up to this long before blocking again (0 = always block). On VMs a
  // blocked thread's wakeup can cost tens to hundreds of microseconds (the
  // vCPU halted); spinning briefly after activity catches the next packet
  // of a request/response exchange without that wakeup, and an idle
  // engine still sleeps. Takes effect on the next loop iteration.
  void SetBusyPoll(int64_t micros);
  int64_t BusyPollMicros() const { return busy_poll_ns_.load(std::memory_order_relaxed) / 1000; }

  // The pool of empty pipes pumps take theirs from (see pipe_pool.h):
  // at most max_idle wait, each at most idle_ms. max_idle 0 = no pooling.
  void ConfigurePipePool(size_t max_idle, int64_t idle_ms);

  // The native accept path (l4_accept.cc, l4_native.h). Listen takes the
  // listening fd (non-blocking) and accepts on the pump thread; records go
  // to `sink` (the same one for every listener; the first Listen sets it).
  std::optional<Failure> Listen(int fd, int listener_id, const char* direction, L4Sink sink);
  // Stops accepting on that listener and closes it (connections stay).
  void Unlisten(int listener_id);
  // Ends every native connection (drain's last step): reset = RST both peers.
  void AbortNative(bool reset);
  L4Stats NativeStats() const;
  // What aggregated native connections added up to since the last call (l4_series.cc).
  std::unordered_map<std::string, L4Series> TakeL4Series() { return l4_series_.Take(); }

  struct Pump;  // defined in pump_state.h

 private:
  PumpEngine() = default;
  void Run();
  void Wake();
  void TakeCommands();
  void Service(Pump* p, uint32_t side, uint32_t events);
  void RunPump(Pump* p);
  void Finish(Pump* p, const std::string& reason, const std::string& error, bool rst_a, bool rst_b);
  void ExpireIdle(int64_t now_ms);
  std::optional<Failure> TakePipe(Flow* flow, int pipe_size);
  // pump_connect.cc: the connecting phases of a StartConnect pump.
  bool AdoptClient(Pump* p);
  void BeginDial(Pump* p);
  void CompleteConnect(Pump* p, uint32_t events);
  void Connected(Pump* p);
  void ConnectFailed(Pump* p, const std::string& code, const std::string& message);
  void Redialled(Pump* p, const DialTarget& dial);
  void Report(Pump* p, std::unique_ptr<PumpOutcome> event);
  int NextTimeoutMs(int64_t now_ms) const;
  // l4_accept.cc
  void AcceptOn(L4Listener* l, int64_t now_ms);
  void AcceptOne(L4Listener* l, int fd, const L4RouteTable& table);
  bool DialNext(Pump* p);
  void NativeEvent(Pump* p, std::unique_ptr<PumpOutcome> event);
  void AddRecord(L4Record record);
  void FlushRecords(int64_t now_ms);
  void ResumeListeners(int64_t now_ms);
  void CloseListeners();
  void ReportProgress(int64_t now_ms);
  // l4_series.cc: NativeEvent and ReportProgress for connections with `aggregate`.
  void AggregateEvent(Pump* p, const PumpOutcome& event);
  void AggregateProgress(Pump* p);
  // l4_inbound.cc: native inbound (kInbound routes) and its first-byte peek.
  bool PrepareInbound(Pump* p, NativeConn* n, const Endpoint& dst, const L4RouteTable& table);
  void BeginPeek(Pump* p);
  void TryPeek(Pump* p);
  void PeekTimedOut(Pump* p);
  void DialPeeked(Pump* p);
  void HandOffPeeked(Pump* p);

  struct Command {
    enum class Kind { kStart, kAbort, kDial, kListen, kUnlisten, kAbortNative } kind;
    std::unique_ptr<Pump> pump;
    uint64_t id = 0;
    bool reset = false;
    DialTarget dial;  // kDial
    std::unique_ptr<L4Listener> listener;  // kListen
  };
  // Queues a command; true if the thread needs a wakeup for it.
  bool Enqueue(Command command);

  OnDone on_done_;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  bool stopped_ = false;  // guarded by stop_mutex_
  std::mutex stop_mutex_;

  std::atomic<bool> wake_owed_{false};  // a deferred command waits for Flush
  std::mutex commands_mutex_;
  std::vector<Command> commands_;

  std::atomic<uint64_t> next_id_{1};
  std::atomic<uint64_t> active_{0};
  std::atomic<uint64_t> started_{0};
  std::atomic<uint64_t> finished_{0};
  std::atomic<int64_t> busy_poll_ns_{0};
  std::atomic<uint64_t> polled_batches_{0};
  std::atomic<uint64_t> blocked_batches_{0};
  std::atomic<uint64_t> spin_ns_{0};

  PipePool pool_;
  // Owned by the pump thread only.
  int64_t pool_deadline_ms_ = -1;  // when the next pooled pipe is due for closing
  std::unordered_map<uint64_t, std::unique_ptr<Pump>> pumps_;
  std::vector<uint64_t> unfinished_;  // pumps that hit their per-round budget
  std::vector<uint64_t> done_ids_;    // finished this batch, freed after it
  std::vector<std::pair<int64_t, uint64_t>> idle_heap_;  // min-heap of (deadline, id)
  std::vector<std::unique_ptr<L4Listener>> listeners_;
  L4Sink l4_sink_;  // set before the first kListen command is queued, read on the pump thread
  std::unique_ptr<L4Batch> l4_batch_;
  int64_t l4_batch_due_ms_ = 0;  // the batch goes to JavaScript by then at the latest
  bool l4_batch_urgent_ = false;  // it holds a handoff: goes at the end of this loop turn
  int64_t next_progress_ms_ = 0;  // when open native connections next report their bytes
  L4SeriesTable l4_series_;
  std::atomic<uint64_t> l4_accepted_{0}, l4_native_{0}, l4_handed_off_{0}, l4_dropped_{0}, l4_retries_{0}, l4_active_{0};
};

}  // namespace weir
