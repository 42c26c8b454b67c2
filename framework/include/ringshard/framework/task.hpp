// Task<T>: a coroutine that runs on one shard.
//
//   ringshard::Task<int> answer() { co_return 42; }
//   ringshard::Task<> main_loop() {
//     int a = co_await answer();                       // a Task awaits a Task
//     co_await ringshard::sleep_for(10ms);             // the shard's timers
//     int res = co_await ringshard::io([](io_uring_sqe* sqe) { uring::prep_nop(sqe); });
//   }
//   ringshard::spawn(main_loop());                     // on the calling shard
//
// - Lazy: a Task starts when awaited, or when spawn() starts it as a
//   detached task (a root). Resumed only on the shard that started it, and
//   only from its event loop (a CQE, a timer, a run-queue job): never from
//   another thread.
// - Exceptions propagate to the awaiter. A root whose exception escapes logs
//   one error line; the shard goes on.
// - Frames come from a per-thread pool of size classes (frame_pool_stats()):
//   once warm, starting a task allocates nothing.
//
// Cancellation. A root (the tasks it awaits included) is suspended in at
// most one leaf await at a time: an I/O operation, a timer, a stream read.
// - TaskHandle::cancel(): the pending await is cancelled (I/O through the
//   ring) and the coroutine resumes with std::errc::operation_canceled, in
//   the form that await reports errors (an error_code, a negative errno for
//   io(), ...). Awaits started after it fail the same way at once.
// - TaskHandle::stop() (and the shard stopping, and an owning connection
//   closing): the coroutine is never resumed again; its frames are
//   destroyed, running the destructors of its locals, as soon as nothing of
//   them is in the kernel (an I/O operation in flight is cancelled first and
//   its CQE awaited). No CQE ever resumes a destroyed frame.
#pragma once

#include <cerrno>
#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <optional>
#include <system_error>
#include <type_traits>
#include <utility>

#include "ringshard/framework/reactor.hpp"

namespace ringshard {

class Shard;
class TaskRoot;
template <class T = void>
class Task;

// ---- frame pool ------------------------------------------------------------

struct FramePoolStats {
  std::uint64_t allocated = 0;  ///< frames taken from malloc (a pool miss)
  std::uint64_t reused = 0;     ///< frames taken from the pool
  std::uint64_t live = 0;       ///< frames in use now
};
/// The calling thread's frame pool counters.
[[nodiscard]] FramePoolStats frame_pool_stats() noexcept;

namespace detail {
void* frame_alloc(std::size_t size);
void frame_free(void* p, std::size_t size) noexcept;
}  // namespace detail

// ---- the await a root is suspended in --------------------------------------

/// A leaf await: registered with its root while suspended.
class Suspension {
 public:
  /// Cancels the wait. True when nothing of the frame is in the kernel any
  /// more: the root may resume (cancel) or destroy (stop) the coroutine now.
  /// False: an operation is still in the kernel; the leaf calls
  /// TaskRoot::settled() from its completion instead of resuming.
  virtual bool cancel() noexcept = 0;
  /// Resumes the coroutine that is suspended here (after cancel() returned
  /// true, with the wait's cancelled result).
  virtual void resume_cancelled() noexcept = 0;

 protected:
  Suspension() = default;
  ~Suspension() = default;
};

/// A detached task and the state its awaits share: pooled per thread.
class TaskRoot {
 public:
  [[nodiscard]] bool cancel_requested() const noexcept { return cancelled_; }
  [[nodiscard]] bool stopping() const noexcept { return stopping_; }
  [[nodiscard]] bool done() const noexcept { return !top_; }

  // ---- for leaf awaits ----
  enum class Admit {
    proceed,    ///< start the operation and suspend
    cancelled,  ///< the root was cancelled: complete at once, cancelled, without suspending
    parked,     ///< the root is stopping: suspend without starting anything (the frames go)
  };
  /// Called from await_suspend, before anything is started.
  Admit suspend_in(Suspension& leaf) noexcept;
  /// Called when the leaf resumes its coroutine.
  void resumed() noexcept { pending_ = nullptr; }
  /// The leaf's operation ended after cancel() returned false. True: resume
  /// as usual (a cancel). False: the root is stopping and has destroyed the
  /// frames; the leaf must not touch itself any more.
  bool settled() noexcept;

  // ---- for owners ----
  /// See the file comment. No effect once done.
  void cancel() noexcept;
  void stop() noexcept;
  /// Called once when the task ends (returned, threw, or stopped), before its
  /// frames are gone; `error` is the escaping exception, if any.
  using EndHook = void (*)(void* context, std::exception_ptr error) noexcept;
  void on_end(EndHook hook, void* context) noexcept {
    end_hook_ = hook;
    end_context_ = context;
  }
  /// Counts suspensions in leaves: a job posted to resume one checks it.
  [[nodiscard]] std::uint64_t suspensions() const noexcept { return suspensions_; }
  [[nodiscard]] Suspension* pending() const noexcept { return pending_; }
  /// The generation of this pooled object (TaskHandle checks it).
  [[nodiscard]] std::uint32_t generation() const noexcept { return generation_; }

  // ---- internal ----
  static TaskRoot* start(std::coroutine_handle<> top, void (*set_root)(std::coroutine_handle<>, TaskRoot*));
  void finished(std::exception_ptr error) noexcept;  // the top frame reached its end
  /// At the thread's end (the ring is gone): frames of roots still there are
  /// destroyed, unless one is in the kernel (then left, and counted).
  static std::size_t abandon_all() noexcept;

 private:
  friend struct RootList;
  friend void stop_all_tasks() noexcept;
  void destroy_frames() noexcept;
  void end(std::exception_ptr error) noexcept;
  void release() noexcept;

  std::coroutine_handle<> top_{};
  Suspension* pending_ = nullptr;
  bool cancelled_ = false;
  bool stopping_ = false;
  bool in_kernel_ = false;  // the pending leaf's cancel() returned false
  bool ending_ = false;     // end() runs: no second one
  std::uint32_t generation_ = 0;
  std::uint64_t suspensions_ = 0;
  EndHook end_hook_ = nullptr;
  void* end_context_ = nullptr;
  TaskRoot* prev_ = nullptr;  // the thread's list of live roots
  TaskRoot* next_ = nullptr;
};

/// Refers to a root without owning it; stale once the task ended.
class TaskHandle {
 public:
  TaskHandle() = default;
  explicit TaskHandle(TaskRoot* root) noexcept : root_(root), generation_(root ? root->generation() : 0) {}
  /// True while the task runs (call on its shard).
  [[nodiscard]] bool running() const noexcept { return root_ && root_->generation() == generation_; }
  void cancel() noexcept {
    if (running()) root_->cancel();
  }
  void stop() noexcept {
    if (running()) root_->stop();
  }
  [[nodiscard]] TaskRoot* root() const noexcept { return running() ? root_ : nullptr; }

 private:
  TaskRoot* root_ = nullptr;
  std::uint32_t generation_ = 0;
};

/// Live roots on the calling thread.
[[nodiscard]] std::size_t live_tasks() noexcept;
/// Stops every root of the calling thread (the shard does this when it stops).
void stop_all_tasks() noexcept;

namespace detail {

struct PromiseBase {
  std::coroutine_handle<> continuation{};
  TaskRoot* root = nullptr;
  std::exception_ptr error{};

  static void* operator new(std::size_t size) { return frame_alloc(size); }
  static void operator delete(void* p, std::size_t size) noexcept { frame_free(p, size); }

  std::suspend_always initial_suspend() noexcept { return {}; }
  struct Final {
    bool await_ready() noexcept { return false; }
    template <class P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> h) noexcept {
      PromiseBase& p = h.promise();
      if (p.continuation) return p.continuation;
      // A root's top frame: the root destroys it.
      if (p.root != nullptr) p.root->finished(std::exchange(p.error, nullptr));
      return std::noop_coroutine();
    }
    void await_resume() noexcept {}
  };
  Final final_suspend() noexcept { return {}; }
  void unhandled_exception() noexcept { error = std::current_exception(); }
};

template <class P>
inline TaskRoot* root_of(std::coroutine_handle<P> h) noexcept {
  if constexpr (std::is_base_of_v<PromiseBase, P>) {
    return h.promise().root;
  } else {
    return nullptr;
  }
}

}  // namespace detail

template <class T>
class [[nodiscard]] Task {
 public:
  struct promise_type : detail::PromiseBase {
    std::optional<T> value;
    Task get_return_object() noexcept { return Task(std::coroutine_handle<promise_type>::from_promise(*this)); }
    template <class U>
    void return_value(U&& v) {
      value.emplace(std::forward<U>(v));
    }
  };
  using Handle = std::coroutine_handle<promise_type>;

  Task() = default;
  explicit Task(Handle h) noexcept : h_(h) {}
  Task(Task&& o) noexcept : h_(std::exchange(o.h_, {})) {}
  Task& operator=(Task&& o) noexcept {
    if (this != &o) {
      if (h_) h_.destroy();
      h_ = std::exchange(o.h_, {});
    }
    return *this;
  }
  ~Task() {
    if (h_) h_.destroy();
  }

  bool await_ready() const noexcept { return false; }
  template <class P>
  std::coroutine_handle<> await_suspend(std::coroutine_handle<P> awaiter) noexcept {
    h_.promise().continuation = awaiter;
    h_.promise().root = detail::root_of(awaiter);
    return h_;
  }
  T await_resume() {
    auto& p = h_.promise();
    if (p.error) std::rethrow_exception(p.error);
    return std::move(*p.value);
  }

  /// Gives up ownership of the coroutine (for spawn).
  Handle release() noexcept { return std::exchange(h_, {}); }

 private:
  Handle h_{};
};

template <>
class [[nodiscard]] Task<void> {
 public:
  struct promise_type : detail::PromiseBase {
    Task get_return_object() noexcept { return Task(std::coroutine_handle<promise_type>::from_promise(*this)); }
    void return_void() noexcept {}
  };
  using Handle = std::coroutine_handle<promise_type>;

  Task() = default;
  explicit Task(Handle h) noexcept : h_(h) {}
  Task(Task&& o) noexcept : h_(std::exchange(o.h_, {})) {}
  Task& operator=(Task&& o) noexcept {
    if (this != &o) {
      if (h_) h_.destroy();
      h_ = std::exchange(o.h_, {});
    }
    return *this;
  }
  ~Task() {
    if (h_) h_.destroy();
  }

  bool await_ready() const noexcept { return false; }
  template <class P>
  std::coroutine_handle<> await_suspend(std::coroutine_handle<P> awaiter) noexcept {
    h_.promise().continuation = awaiter;
    h_.promise().root = detail::root_of(awaiter);
    return h_;
  }
  void await_resume() {
    if (h_.promise().error) std::rethrow_exception(h_.promise().error);
  }

  Handle release() noexcept { return std::exchange(h_, {}); }

 private:
  Handle h_{};
};

/// Starts `task` as a root on the calling shard's thread, at once (it runs
/// until its first suspension before spawn returns).
TaskHandle spawn(Task<> task);
/// As spawn(task), with `hook` called when it ends (see TaskRoot::on_end):
/// set before the task starts running.
TaskHandle spawn(Task<> task, TaskRoot::EndHook hook, void* context);
/// Starts `task` on `shard` (from any thread: posted to it).
void spawn(Shard& shard, Task<> task);

// ---- leaf awaits -----------------------------------------------------------

/// The calling shard's reactor (or the one a ReactorScope set on this
/// thread); throws std::logic_error on any other thread.
Reactor& current_reactor();

/// Lets coroutines on this thread use `reactor` while it is driven by hand
/// (tools, benchmarks): io() and sleep_for() go to it outside a shard.
class ReactorScope {
 public:
  explicit ReactorScope(Reactor& reactor) noexcept;
  ~ReactorScope();
  ReactorScope(const ReactorScope&) = delete;
  ReactorScope& operator=(const ReactorScope&) = delete;

 private:
  Reactor* previous_;
};

/// co_await io(prep): one operation through the shard's ring; prep fills the
/// SQE. Resumes with the CQE's res (a negative errno on failure, -ECANCELED
/// when cancelled). Memory the SQE points at must stay valid until the
/// await resumes (a local of the coroutine is enough: a stopped task's frame
/// lives until the CQE).
template <class Prep>
class IoAwait final : public Completion, public Suspension {
 public:
  explicit IoAwait(Prep prep) : prep_(std::move(prep)) {}
  bool await_ready() const noexcept { return false; }
  template <class P>
  bool await_suspend(std::coroutine_handle<P> h) {
    root_ = detail::root_of(h);
    if (root_ != nullptr) {
      const TaskRoot::Admit admit = root_->suspend_in(*this);
      if (admit == TaskRoot::Admit::cancelled) {
        res_ = -ECANCELED;
        return false;
      }
      if (admit == TaskRoot::Admit::parked) return true;
    }
    h_ = h;
    reactor_ = &::ringshard::current_reactor();
    reactor_->submit(*this, [this](io_uring_sqe* sqe) { prep_(sqe); });
    return true;
  }
  int await_resume() const noexcept { return res_; }

  void complete(const io_uring_cqe& cqe) override {
    res_ = cqe.res;
    if (root_ != nullptr) {
      if (cancelling_ && !root_->settled()) return;  // stopped: the frame is gone
      root_->resumed();
    }
    h_.resume();
  }
  bool cancel() noexcept override {
    cancelling_ = true;
    reactor_->cancel(*this);
    return false;  // the CQE decides
  }
  void resume_cancelled() noexcept override {}

 private:
  Prep prep_;
  std::coroutine_handle<> h_{};
  TaskRoot* root_ = nullptr;
  Reactor* reactor_ = nullptr;
  int res_ = 0;
  bool cancelling_ = false;
};

template <class Prep>
IoAwait<std::decay_t<Prep>> io(Prep&& prep) {
  return IoAwait<std::decay_t<Prep>>(std::forward<Prep>(prep));
}

/// co_await sleep_until(t) / sleep_for(d): the shard's timers. Resumes with
/// an empty error_code, or operation_canceled.
class SleepAwait final : public Timer, public Suspension {
 public:
  explicit SleepAwait(Clock::time_point deadline) noexcept : deadline_(deadline) {}
  SleepAwait(const SleepAwait&) = delete;
  SleepAwait& operator=(const SleepAwait&) = delete;
  ~SleepAwait();
  bool await_ready() const noexcept { return false; }
  template <class P>
  bool await_suspend(std::coroutine_handle<P> h) {
    return suspend(h, detail::root_of(h));
  }
  std::error_code await_resume() const noexcept { return result_; }

  void fire() override;
  bool cancel() noexcept override;
  void resume_cancelled() noexcept override;

 private:
  bool suspend(std::coroutine_handle<> h, TaskRoot* root);
  Clock::time_point deadline_;
  std::coroutine_handle<> h_{};
  TaskRoot* root_ = nullptr;
  Reactor* reactor_ = nullptr;
  std::error_code result_{};
};

inline SleepAwait sleep_until(Clock::time_point deadline) noexcept { return SleepAwait(deadline); }
inline SleepAwait sleep_for(std::chrono::nanoseconds delay) { return SleepAwait(Clock::now() + delay); }

/// co_await yield(): lets the shard run what is ready (CQEs, timers, other
/// jobs) and resumes from the run queue. Resumes with operation_canceled
/// when cancelled meanwhile.
class YieldAwait final : public Suspension {
 public:
  bool await_ready() const noexcept { return false; }
  template <class P>
  bool await_suspend(std::coroutine_handle<P> h) {
    return suspend(h, detail::root_of(h));
  }
  std::error_code await_resume() const noexcept { return result_; }
  bool cancel() noexcept override { return true; }
  void resume_cancelled() noexcept override;

 private:
  bool suspend(std::coroutine_handle<> h, TaskRoot* root);
  std::coroutine_handle<> h_{};
  std::error_code result_{};
};
inline YieldAwait yield() noexcept { return {}; }

}  // namespace ringshard
