// Reactor: the event loop over one Ring.
//
// - Every operation has an intrusive Completion whose address is the SQE's
//   user_data: routing a CQE is a pointer cast and one virtual call.
// - SQEs prepared during a loop turn go out together with one io_uring_enter.
//   When the SQ is full, prepared SQEs wait in a FIFO and go out next turn.
// - Timers live in a binary heap; the loop sleeps with the nearest deadline as
//   the io_uring_enter timeout (EXT_ARG), so thousands of timers cost no SQE.
// - The ring is set up with SINGLE_ISSUER|DEFER_TASKRUN when the kernel has
//   it, else COOP_TASKRUN, else plain; Reactor::mode() says which.
// - Optionally (ReactorOptions::min_wait, Linux 6.12) a blocking turn waits
//   for as many completions as the last turn handled, for at most min_wait.
// - Errors: io_uring_enter failing with EINTR, EAGAIN or EBUSY is retried on
//   the next turn; any other errno means the ring is unusable and run_once
//   throws std::system_error. An exception thrown by a Completion or a Timer
//   is logged (one error line) and the loop goes on with the next CQE/timer.
#pragma once

#include <chrono>
#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

#include "ringshard/framework/stat_counter.hpp"
#include "ringshard/framework/uring.hpp"

namespace ringshard {

using Clock = std::chrono::steady_clock;

/// The owner of an in-flight operation. Its address is the operation's user_data.
class Completion {
 public:
  /// Called once per CQE. For a multishot operation, every CQE but the last
  /// carries IORING_CQE_F_MORE.
  virtual void complete(const io_uring_cqe& cqe) = 0;

 protected:
  Completion() = default;
  Completion(const Completion&) = default;
  Completion& operator=(const Completion&) = default;
  ~Completion() = default;

 private:
  friend class Reactor;
  uring::Timespec link_timeout_{};  // read by the kernel when the linked timeout is submitted
};

/// A multishot operation that the reactor re-arms when the kernel ends it
/// (a CQE without IORING_CQE_F_MORE) while it is still wanted.
class MultishotCompletion : public Completion {
 public:
  /// Fills the SQE that (re-)arms the operation.
  virtual void prep(io_uring_sqe* sqe) = 0;
  /// Called for every CQE. When the kernel ended the request (no
  /// IORING_CQE_F_MORE) the reactor arms it again afterwards unless stop()
  /// was called. It must not destroy this object (post a task for that).
  virtual void on_cqe(const io_uring_cqe& cqe) = 0;
  [[nodiscard]] bool armed() const noexcept { return armed_; }
  /// No re-arm after the current request ends (cancel it to end it now).
  void stop() noexcept { wanted_ = false; }

 protected:
  MultishotCompletion() = default;
  ~MultishotCompletion() = default;

 private:
  friend class Reactor;
  void complete(const io_uring_cqe& cqe) final;
  class Reactor* reactor_ = nullptr;
  bool wanted_ = false;
  bool armed_ = false;
};

/// A timer in the reactor's heap. Owned by whoever schedules it.
class Timer {
 public:
  virtual void fire() = 0;
  [[nodiscard]] bool scheduled() const noexcept { return heap_index_ != npos; }
  [[nodiscard]] Clock::time_point deadline() const noexcept { return deadline_; }

 protected:
  Timer() = default;
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;
  ~Timer() = default;

 private:
  friend class Reactor;
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);
  Clock::time_point deadline_{};
  std::size_t heap_index_ = npos;
  std::uint64_t seq_ = 0;  // FIFO among equal deadlines
};

/// What a reactor counts (see stat_counter.hpp: written by the reactor's
/// thread, read from any).
struct ReactorStats {
  StatCounter enters;       ///< io_uring_enter calls (submit, wait, or both)
  StatCounter completions;  ///< CQEs reaped
};

struct ReactorOptions {
  unsigned sq_entries = 4096;
  unsigned cq_entries = 0;  ///< 0: 4 x sq_entries
  /// Try SINGLE_ISSUER|DEFER_TASKRUN first (must then be created and used on one thread).
  bool defer_taskrun = true;
  /// Batched waits (6.12, IORING_FEAT_MIN_TIMEOUT): a reactor with nothing to
  /// do sleeps until `wait_batch` completions have come or, once `min_wait`
  /// has passed, until at least one has (a completion may wait up to
  /// min_wait to be handled; an idle reactor still wakes at the first one
  /// after that). Fewer wake-ups and enters per completion under moderate
  /// load, for up to min_wait (at most 1 s) of latency. 0 (the default): wake
  /// at the first completion. Without the kernel feature: one log line, then
  /// plain waits.
  std::chrono::microseconds min_wait{0};
  unsigned wait_batch = 32;
  /// Registered wait region (6.13, IORING_REGISTER_MEM_REGION): the ring is
  /// created disabled, one page of wait arguments is registered with it, and
  /// a wait with a timeout (the next timer) or min_wait names its argument
  /// there instead of passing a pointer to one and to a timespec, which the
  /// kernel copies in at every such wait. Waits without either pass no
  /// argument anyway. Without the kernel feature: one log line, then the
  /// usual waits.
  bool registered_wait = false;
};

class Reactor {
 public:
  explicit Reactor(const ReactorOptions& options = {});
  ~Reactor();
  Reactor(const Reactor&) = delete;
  Reactor& operator=(const Reactor&) = delete;

  [[nodiscard]] uring::Ring& ring() noexcept { return ring_; }
  /// Counts into `stats` from now on (a Shard's, which outlives the reactor
  /// and is read by other threads) instead of the reactor's own.
  void count_into(ReactorStats& stats) noexcept { stats_ = &stats; }
  [[nodiscard]] const ReactorStats& stats() const noexcept { return *stats_; }
  /// "DEFER_TASKRUN", "COOP_TASKRUN" or "plain".
  [[nodiscard]] std::string_view mode() const noexcept { return mode_; }
  /// Waits name their arguments in a registered wait region (asked for with
  /// ReactorOptions::registered_wait and taken by the kernel).
  [[nodiscard]] bool registered_wait() const noexcept { return !ring_.wait_region().empty(); }

  // ---- operations -----------------------------------------------------------
  /// Prepares one operation for `c`: prep(io_uring_sqe*) fills the SQE. It goes
  /// out with this turn's submit (or a later one if the SQ is full).
  template <class Prep>
  void submit(Completion& c, Prep&& prep) {
    io_uring_sqe* sqe = acquire_sqe();
    prep(sqe);
    uring::sqe_set_data(sqe, &c);
    ++in_flight_;
    if (sqe == staging_.get()) stage(nullptr);
  }
  /// As submit(), with a deadline: the operation is cancelled (-ECANCELED)
  /// when it has not completed after `timeout` (a linked timeout).
  template <class Prep>
  void submit(Completion& c, Prep&& prep, std::chrono::nanoseconds timeout) {
    io_uring_sqe* sqe = acquire_sqe(2);
    prep(sqe);
    uring::sqe_set_data(sqe, &c);
    uring::sqe_add_flags(sqe, IOSQE_IO_LINK);
    c.link_timeout_ = uring::Timespec(timeout);
    ++in_flight_;
    if (sqe == staging_.get()) {
      stage(&c);
    } else {
      push_link_timeout(c);
    }
  }
  /// Prepares a fire-and-forget operation whose CQE is ignored (user_data 0).
  template <class Prep>
  void submit_detached(Prep&& prep) {
    io_uring_sqe* sqe = acquire_sqe();
    prep(sqe);
    uring::sqe_set_data64(sqe, 0);
    if (sqe == staging_.get()) stage(nullptr);
  }
  /// Arms a multishot operation; it is re-armed until stop() is called on it.
  void arm(MultishotCompletion& op);
  /// Asks the kernel to cancel `c`'s operation; its CQE (-ECANCELED) still arrives.
  void cancel(const Completion& c);
  /// Cancels every operation in flight (used at shutdown).
  void cancel_all();
  /// Deletes `obj` once the completion being dispatched has returned (at the
  /// end of this turn, or with the reactor if no turn comes): for an
  /// operation object that ends itself from inside its own final CQE.
  template <class T>
  void retire(T* obj) {
    retired_.push_back(Retired{obj, +[](void* p) noexcept { delete static_cast<T*>(p); }});
  }

  /// Operations submitted whose final CQE has not arrived yet.
  [[nodiscard]] std::size_t in_flight() const noexcept { return in_flight_; }
  /// Prepared operations waiting for room in the SQ.
  [[nodiscard]] std::size_t backlog() const noexcept { return backlog_.size() - backlog_head_; }

  // ---- timers ---------------------------------------------------------------
  void schedule(Timer& t, Clock::time_point deadline);
  void schedule(Timer& t, std::chrono::nanoseconds delay) { schedule(t, Clock::now() + delay); }
  /// Removes a scheduled timer; no effect if it is not scheduled.
  void cancel(Timer& t) noexcept;
  [[nodiscard]] std::size_t timers() const noexcept { return heap_.size(); }

  // ---- the loop -------------------------------------------------------------
  /// One turn: submit everything prepared, then either wait (block = true) for
  /// a completion or the next timer, or just collect what is ready; dispatch
  /// the CQEs and fire due timers. Returns the number of CQEs and timers handled.
  /// io_uring_enter failing with EINTR, EAGAIN or EBUSY is not an error (the
  /// CQEs are drained and the next turn submits again); any other failure
  /// throws std::system_error (code: the errno, what(): "io_uring_enter ...")
  /// after this turn's CQEs and timers are handled. The ring is then
  /// unusable: stop driving it. Exceptions from Completion::complete and
  /// Timer::fire do not leave run_once: each is logged once and the turn goes
  /// on with the next CQE or timer (a multishot that threw is still re-armed).
  unsigned run_once(bool block);

 private:
  io_uring_sqe* acquire_sqe(unsigned needed = 1) noexcept {
    if (backlog() == 0 && ring_.sq_space_left() >= needed) return ring_.get_sqe();
    return staging_.get();
  }
  void stage(Completion* linked);
  void push_link_timeout(Completion& c) noexcept;
  void flush_backlog() noexcept;
  void dispatch(const io_uring_cqe& cqe);
  unsigned dispatch_all();
  unsigned fire_timers();
  [[noreturn]] static void throw_enter_error(int ret, bool block);
  void heap_up(std::size_t i) noexcept;
  void heap_down(std::size_t i) noexcept;
  void heap_swap(std::size_t a, std::size_t b) noexcept;
  [[nodiscard]] bool heap_less(std::size_t a, std::size_t b) const noexcept {
    const Timer* x = heap_[a];
    const Timer* y = heap_[b];
    return x->deadline_ < y->deadline_ || (x->deadline_ == y->deadline_ && x->seq_ < y->seq_);
  }

  // io_uring_sqe ends in a zero-length array, so it is kept as raw bytes.
  struct SqeBytes {
    alignas(io_uring_sqe) unsigned char bytes[sizeof(io_uring_sqe)];
    io_uring_sqe* get() noexcept { return reinterpret_cast<io_uring_sqe*>(bytes); }
  };
  struct Staged {
    SqeBytes sqe;
    Completion* linked;  // non-null: a linked timeout follows, from linked->link_timeout_
  };

  // The page of a registered wait region: pinned by the kernel for the
  // ring's life, so it is unmapped after the ring is gone (declared first).
  struct WaitPage {
    void* addr = nullptr;
    std::size_t bytes = 0;
    WaitPage() = default;
    WaitPage(const WaitPage&) = delete;
    WaitPage& operator=(const WaitPage&) = delete;
    ~WaitPage();
  };
  static uring::Ring make_ring(const ReactorOptions& options, std::string_view& mode, WaitPage& page);
  /// Waits as the registered wait says: timeout and min_wait written into it.
  int wait_registered(unsigned want, std::optional<std::chrono::nanoseconds> timeout, unsigned min_wait_usec);
  struct Retired {
    void* obj;
    void (*destroy)(void*) noexcept;
  };
  void destroy_retired() noexcept;

  std::string_view mode_;
  // The ring fd is registered (IORING_REGISTER_RING_FDS, saving a file
  // lookup per enter) by the thread that runs the loop, on its first turn:
  // the registration belongs to the registering thread.
  bool ring_fd_registration_tried_ = false;
  WaitPage wait_page_;
  uring::Ring ring_;
  unsigned min_wait_usec_ = 0;
  unsigned wait_batch_ = 1;  // 1: batched waits off
  unsigned last_batch_ = 1;  // completions the last turn that handled any (or blocked) handled
  ReactorStats own_stats_;
  ReactorStats* stats_ = &own_stats_;
  SqeBytes staging_{};
  std::vector<Staged> backlog_;
  std::size_t backlog_head_ = 0;
  std::size_t in_flight_ = 0;
  std::vector<Timer*> heap_;
  std::uint64_t timer_seq_ = 0;
  std::vector<Retired> retired_;
};

}  // namespace ringshard
