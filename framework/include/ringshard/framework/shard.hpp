// Shard: one thread pinned to one core, owning a Reactor (and so a ring), a
// run queue of local tasks and an inbox for tasks from other threads.
//
// Cross-shard delivery: a sender on shard A appends to its outbox for shard B;
// at the end of A's loop turn the outbox moves into B's inbox (a moodycamel
// ConcurrentQueue) in one bulk enqueue with A's producer token, so tasks from
// A to B keep their order. B announces when it is about to sleep; only then
// does A wake it, with an IORING_OP_MSG_RING from A's own ring (or B's eventfd
// when the kernel lacks MSG_RING, and always for threads that are not shards).
#pragma once

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <concurrentqueue/concurrentqueue.h>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "ringshard/framework/reactor.hpp"
#include "ringshard/framework/job.hpp"
#include "ringshard/framework/job_queue.hpp"

namespace ringshard {

class Runtime;

/// Per-shard state that a higher layer attaches to every shard (the actor table, ...).
class ShardExtension {
 public:
  virtual ~ShardExtension() = default;
  /// A stop was asked for: the drain begins (see RuntimeOptions::stop_timeout).
  /// Stop taking new work, and hold the stop (Shard::hold_stop) for work
  /// already taken that finishes soon (a response owed).
  virtual void on_stop_requested() {}
  /// The drain is over: every shard released its holds, or the drain's time
  /// is up. Finish what is still owed at once (an HTTP server answers 503);
  /// holds still keep this shard running, until the stop deadline.
  virtual void on_drain_end() {}
  /// The shard is stopping: release what you hold (actors run on_stop here).
  virtual void on_shard_stop() {}
};

/// Written by the shard's thread only, readable from any thread (relaxed).
struct ShardStats {
  StatCounter tasks_run;
  StatCounter remote_tasks_received;
  StatCounter sleeps;
  StatCounter wakeups_msg_ring;  ///< sleeping shards this one woke with IORING_OP_MSG_RING
  StatCounter wakeups_eventfd;   ///< ... or through their eventfd
  StatCounter loop_turns;
  ReactorStats ring;             ///< the shard's reactor counts here
};

class Shard {
 public:
  Shard(Runtime& runtime, unsigned id);
  ~Shard();
  Shard(const Shard&) = delete;
  Shard& operator=(const Shard&) = delete;

  [[nodiscard]] unsigned id() const noexcept { return id_; }
  [[nodiscard]] Runtime& runtime() const noexcept { return *runtime_; }
  /// The reactor; only usable from this shard's thread.
  [[nodiscard]] Reactor& reactor() noexcept { return *reactor_; }
  /// The shard whose thread is calling, or nullptr.
  [[nodiscard]] static Shard* current() noexcept { return tl_current_; }
  [[nodiscard]] bool is_current() const noexcept { return tl_current_ == this; }
  [[nodiscard]] bool stopping() const noexcept { return stopping_; }
  /// True once a stop was asked for (Runtime::stop(), a signal), already
  /// before the shard gets to stopping(): the shard still finishes the work
  /// at hand first. A relaxed load: cheap enough to check per request.
  [[nodiscard]] bool stop_requested() const noexcept { return stop_requested_.load(std::memory_order_relaxed); }
  /// Once stop_requested(): when the stop stops waiting (the moment it was
  /// asked for plus RuntimeOptions::stop_timeout). Work still to be done
  /// after it (a request whose handler has not run yet) should be dropped.
  [[nodiscard]] Clock::time_point stop_deadline() const noexcept;
  /// Holds the runtime's stop in its drain phase (see
  /// RuntimeOptions::stop_timeout): the shards keep running, all of them,
  /// while any holds it. From this shard's thread; each hold_stop() is
  /// matched by one release_stop(). Cheap (a counter) outside a stop.
  void hold_stop() noexcept;
  void release_stop() noexcept;
  /// True from the stop request until the drain is over (the shard serves on).
  [[nodiscard]] bool draining() const noexcept { return drain_started_ && !drain_ended_; }
  /// Once stop_requested(): when the drain ends at the latest.
  [[nodiscard]] Clock::time_point drain_deadline() const noexcept;
  [[nodiscard]] const ShardStats& stats() const noexcept { return stats_; }
  /// Jobs from other shards and threads waiting in the inbox (approximate). Any thread.
  [[nodiscard]] std::size_t inbox_depth() const noexcept { return inbox_.size_approx(); }
  /// Gives back the run-queue memory a burst left (the queue grows by
  /// doubling and keeps its peak otherwise; see JobQueue::shrink). From this
  /// shard's own thread, for a shard that went idle. Returns the bytes freed.
  std::size_t shrink_run_queue() noexcept;

  /// One line of state for diagnostics (racy when read from another thread).
  [[nodiscard]] std::string describe() const;

  /// Runs `t` on this shard. From this shard's thread: appended to the run
  /// queue. From another shard: batched into that shard's outbox. From any
  /// other thread: enqueued directly and the shard woken if asleep.
  void post(Job&& t);
  /// As post(Job&&); from this shard's own thread the callable is built
  /// straight in its run-queue slot, with no Job in between to move. Keep
  /// this small: it must inline into send() for the captures to be stored
  /// field by field into the slot (a bigger body here measured 30% slower
  /// local sends, the captures then going through the stack).
  template <class F>
    requires(!std::is_same_v<std::decay_t<F>, Job> && std::is_invocable_r_v<void, std::decay_t<F>&>)
  void post(F&& f) {
    if (tl_current_ == this) {
      run_queue_.emplace_back(std::forward<F>(f));
    } else {
      post(Job(std::forward<F>(f)));
    }
  }

  /// The extension with key `key` (see register_extension_key), created with
  /// make() on first use. Safe from any thread: creation races are settled by
  /// a compare-and-swap, the loser's object is discarded.
  template <class T, class Make>
  T& extension(unsigned key, Make&& make) {
    ShardExtension* ext = extensions_[key].load(std::memory_order_acquire);
    if (ext == nullptr) {
      std::unique_ptr<ShardExtension> fresh = make();
      if (extensions_[key].compare_exchange_strong(ext, fresh.get(), std::memory_order_acq_rel)) {
        ext = fresh.release();
      }
    }
    return static_cast<T&>(*ext);
  }
  [[nodiscard]] ShardExtension* find_extension(unsigned key) const noexcept {
    return extensions_[key].load(std::memory_order_acquire);
  }
  static constexpr unsigned kMaxExtensions = 8;
  static unsigned register_extension_key() noexcept;

 private:
  friend class Runtime;

  void thread_main();
  void turn();
  bool can_sleep() noexcept;
  void flush_outboxes();
  void enqueue_from(Shard& sender, std::vector<Job>& batch);
  void wake_from_shard(Shard& sender);
  void wake_external();
  unsigned drain_inbox();
  unsigned run_local(std::size_t budget);
  void begin_stop();
  void request_stop();
  // Calls `hook` on every extension; an exception is logged as `what`.
  void notify_extensions(void (ShardExtension::*hook)(), const char* what) noexcept;
  bool stop_may_begin();  // the drain, then this shard's holds, are over
  void start_drain();
  void end_drain();
  [[nodiscard]] bool drain_done() const noexcept;
  void leave_drain() noexcept;  // this shard no longer counts in the runtime's drain
  [[nodiscard]] bool past_stop_deadline() const noexcept;
  // A stop was asked for, has not begun, and its deadline passed: the task
  // loops set the work left aside instead of running it.
  [[nodiscard]] bool out_of_time() const noexcept;
  void fail(std::exception_ptr error);
  void destroy_extensions() noexcept;

  class WakeWatch;  // keeps a multishot poll on the eventfd
  struct StopDeadline final : Timer {
    void fire() override { expired = true; }
    bool expired = false;
  };
  // While draining, wakes the shard to look at the other shards' holds.
  struct DrainTick final : Timer {
    void fire() override;
    Shard* shard = nullptr;
  };
  // While stopping, cancels again what was submitted after the first sweep.
  struct CancelSweep final : Timer {
    void fire() override;
    Shard* shard = nullptr;
  };

  Runtime* runtime_;
  unsigned id_;
  std::unique_ptr<Reactor> reactor_;  // created on the shard's own thread (SINGLE_ISSUER)
  JobQueue run_queue_;
  JobQueue set_aside_{16};  // work a stop had no time for: destroyed with the shard, never run
  moodycamel::ConcurrentQueue<Job> inbox_;
  moodycamel::ConsumerToken inbox_consumer_;
  std::vector<std::unique_ptr<moodycamel::ProducerToken>> tokens_;  // [target shard]
  std::vector<std::vector<Job>> outboxes_;                          // [target shard]
  std::vector<unsigned> dirty_outboxes_;
  std::vector<Job> drain_buffer_;
  std::atomic<bool> sleeping_{false};
  std::atomic<int> ring_fd_{-1};
  int wake_fd_ = -1;  // eventfd
  std::unique_ptr<WakeWatch> wake_watch_;
  StopDeadline stop_deadline_;
  CancelSweep cancel_sweep_;
  DrainTick drain_tick_;
  std::size_t stop_holds_ = 0;
  bool drain_started_ = false;
  bool drain_ended_ = false;
  bool drain_counted_ = false;  // counted out of Runtime::drain_pending_
  bool in_held_ = false;        // counted in Runtime::held_shards_
  bool use_msg_ring_ = false;
  bool busy_poll_ = false;
  bool stopping_ = false;
  std::atomic<bool> stop_requested_{false};
  std::atomic<ShardExtension*> extensions_[kMaxExtensions] = {};
  ShardStats stats_;
  std::thread thread_;

  // inline and constant-initialised: every translation unit reads it directly,
  // with no TLS wrapper call (and no sanitizer confusion about one).
  static inline thread_local Shard* tl_current_ = nullptr;
};

struct RuntimeOptions {
  /// Number of shards; 0 = one per CPU this process may run on.
  unsigned shards = 0;
  /// Pin shard i to the i-th allowed CPU.
  bool pin = true;
  ReactorOptions reactor{};
  /// How long a stop may take, counted from the moment it is asked for.
  /// A stop first drains: every shard keeps running as usual while work
  /// already taken holds the stop (Shard::hold_stop: an HTTP response owed)
  /// on any shard, so answers that need another shard still come, for at
  /// most three quarters of stop_timeout. Then extensions finish what is
  /// still owed (on_drain_end: HTTP answers 503), the work queued runs, and
  /// the shards stop; the operations still in flight get until the
  /// deadline, then what is left is cancelled.
  std::chrono::milliseconds stop_timeout{2000};
  /// Wake sleeping shards through their eventfd even when the kernel has
  /// IORING_OP_MSG_RING (the fallback path; for tests and comparisons).
  bool eventfd_wakeups = false;
  /// Shards never sleep: an idle shard keeps polling its inbox and its ring
  /// instead of blocking in io_uring_enter. Lowest cross-shard latency, at the
  /// price of one busy core per shard.
  bool busy_poll = false;
};

class Runtime {
 public:
  explicit Runtime(const RuntimeOptions& options = {});
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  [[nodiscard]] unsigned shard_count() const noexcept { return static_cast<unsigned>(shards_.size()); }
  [[nodiscard]] Shard& shard(unsigned i) noexcept { return *shards_[i]; }

  /// Starts the shard threads (each creates its ring) and returns once every
  /// shard is ready. Throws if a shard could not start.
  void start();
  /// Starts if needed, then blocks until stop() is called or SIGINT/SIGTERM
  /// arrives, and returns after every shard has stopped.
  ///
  /// Signals: from the moment run() is called until the Runtime is destroyed,
  /// SIGINT and SIGTERM are blocked in the calling thread and read from a
  /// signalfd, so they never kill the process on its way out. The first one
  /// starts a graceful stop; another one during the stop cuts it short
  /// (shards stop waiting for operations in flight, as when the stop timeout
  /// expires); either way run() returns normally (a program returning 0 from
  /// main after run() exits with status 0 on one signal and on two). A signal
  /// arriving after run() returned is consumed by the destructor; if any
  /// signal was received, the destructor leaves them blocked in that thread
  /// (the process is stopping on request), else it restores the mask.
  /// signals_received() says how many arrived.
  ///
  /// Errors: if a shard fails for good (io_uring_enter fails with an errno
  /// other than EINTR/EAGAIN/EBUSY, which Reactor::run_once reports), it logs
  /// one error line and stops the runtime; run() then throws, once every
  /// shard has stopped, std::system_error with that errno, whose what() names
  /// the shard ("ringshard shard 1: io_uring_enter failed ...: Operation not
  /// supported"). Exceptions from tasks, completions and timers do not count:
  /// they are logged and the shard goes on.
  void run();
  /// Graceful stop, from any thread: each shard stops taking new work, runs
  /// its extensions' on_shard_stop (actors' on_stop), cancels I/O still in
  /// flight, and exits within the stop timeout. Returns at once; wait() joins.
  void stop() noexcept;
  /// Joins the shard threads. Does not throw on a shard's failure: see failure().
  void wait();
  [[nodiscard]] bool running() const noexcept { return started_ && !joined_; }
  /// The error that stopped the runtime (what run() throws), or null. For
  /// programs that use start()/wait() instead of run().
  [[nodiscard]] std::exception_ptr failure() const;
  /// SIGINT/SIGTERM read by run() and the destructor so far.
  [[nodiscard]] unsigned signals_received() const noexcept { return signals_received_; }

  /// The runtime of the calling shard, else the most recently started runtime
  /// (for threads that are not shards), else nullptr.
  static Runtime* current() noexcept;

  /// Runs `t` on shard `i` (from any thread).
  void post(unsigned i, Job&& t) { shards_[i]->post(std::move(t)); }

 private:
  friend class Shard;
  RuntimeOptions options_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::vector<int> cpus_;
  bool started_ = false;
  bool joined_ = false;
  std::atomic<unsigned> ready_{0};
  std::atomic<bool> failed_{false};
  std::atomic<bool> stop_requested_{false};
  std::atomic<bool> hurry_{false};     // a signal came during the stop: do not wait for I/O
  std::atomic<Clock::rep> stop_deadline_{0};  // set by the first stop(): when the stop gives up
  std::atomic<unsigned> drain_pending_{0};  // shards that have not begun their drain yet
  std::atomic<unsigned> held_shards_{0};    // draining shards with holds
  std::atomic<unsigned> exited_{0};    // shards whose thread_main has returned
  mutable std::mutex failure_mutex_;
  std::exception_ptr failure_;
  int stop_fd_ = -1;    // eventfd that run() waits on
  int signal_fd_ = -1;  // SIGINT/SIGTERM for run()
  bool signals_taken_ = false;  // run() blocked them in signals_thread_
  pthread_t signals_thread_{};
  sigset_t signals_old_mask_{};
  unsigned signals_received_ = 0;

  void record_failure(std::exception_ptr error) noexcept;
  void shard_exited() noexcept;
  void hurry() noexcept;
  unsigned drain_signals() noexcept;
};

}  // namespace ringshard
