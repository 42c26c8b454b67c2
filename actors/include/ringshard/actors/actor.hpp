// Actors: objects that live on one shard and react to messages.
//
//   struct Counter : ringshard::actors::Actor<Counter> {
//     int n = 0;
//     void on_message(const Add& m) { n += m.by; }
//     int on_message(const Get&) { return n; }            // answers ask()
//   };
//   auto ref = spawn<Counter>(/*shard*/ 1);
//   send(ref, Add{2});
//   // from another actor (or actors::ask from plain shard code):
//   ask(ref, Get{}, 100ms, [](AskResult<int> r) {         // the deadline is optional
//     if (r) use(*r); else log(to_string(r.status()));    // answered, or why not
//   });
//
// Handlers see the concrete message type (on_message overloads, checked at
// compile time against the ActorRef's type). A message to an actor on the
// same shard goes straight to the run queue, without a heap allocation when
// it fits the 48-byte task slot; to another shard it goes through that
// shard's mailbox, in order per sender shard.
//
// An exception that escapes a handler (on_start, on_message, an ask callback,
// a timer message, an I/O completion) is caught where the actors layer
// delivers it: one error line names the actor's type and the exception, then
// on_failure() runs (by default: stop()). The shard and every other actor go
// on. on_stop() throwing is logged and the stop completes.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <typeinfo>
#include <unordered_map>
#include <type_traits>
#include <utility>
#include <vector>

#include "ringshard/actors/ref.hpp"
#include "ringshard/framework/reactor.hpp"
#include "ringshard/framework/shard.hpp"
#include "ringshard/framework/job.hpp"
#include "ringshard/framework/task.hpp"

namespace ringshard::actors {

class ActorBase;
class ActorTable;

/// The completion of an operation an actor started with io(): delivered to
/// the actor as a message.
struct IoResult {
  std::uint64_t tag;  ///< what the actor passed to io()
  int res;            ///< the CQE's result (-errno on failure)
  unsigned flags;     ///< the CQE's flags
  [[nodiscard]] bool more() const noexcept { return flags & IORING_CQE_F_MORE; }
  [[nodiscard]] bool has_buffer() const noexcept { return flags & IORING_CQE_F_BUFFER; }
  [[nodiscard]] std::uint16_t buffer_id() const noexcept {
    return static_cast<std::uint16_t>(flags >> IORING_CQE_BUFFER_SHIFT);
  }
};

/// Handle of a pending timer or I/O operation, for cancellation. Stale
/// handles (already fired or completed) are ignored.
struct TimerId {
  void* timer = nullptr;
  std::uint64_t gen = 0;
};
struct IoId {
  void* op = nullptr;
  std::uint64_t gen = 0;
};

/// What became of an ask: the one thing its callback is always told.
enum class AskStatus : std::uint8_t {
  answered,     ///< the target answered; the result holds the value
  target_gone,  ///< the target was not there, or stopped (or failed) before answering
  dropped,      ///< the target let its Reply<R> go without answering
  timed_out,    ///< the ask's deadline passed first; a later answer is dropped (and counted)
  canceled,     ///< a coroutine awaiting the ask was cancelled; a later answer is dropped
};

/// "answered", "target_gone", "dropped", "timed_out" or "canceled".
[[nodiscard]] constexpr std::string_view to_string(AskStatus s) noexcept {
  switch (s) {
    case AskStatus::answered: return "answered";
    case AskStatus::target_gone: return "target_gone";
    case AskStatus::dropped: return "dropped";
    case AskStatus::timed_out: return "timed_out";
    case AskStatus::canceled: return "canceled";
  }
  return "unknown";
}

/// AskResult<R>::value() on an ask that was not answered.
class BadAskAccess : public std::logic_error {
 public:
  explicit BadAskAccess(AskStatus s)
      : std::logic_error("AskResult::value(): the ask was not answered (" + std::string(to_string(s)) + ")") {}
};

/// What an ask callback receives: the answer, or the reason none came.
///
///   ask(ref, Get{}, [](AskResult<int> r) {
///     if (r.ok()) use(*r);                              // or r.value(), which checks
///     else if (r.status() == AskStatus::timed_out) ...
///   });
template <class R>
class AskResult {
 public:
  /// An answer.
  explicit AskResult(R value) noexcept(std::is_nothrow_move_constructible_v<R>)
      : value_(std::move(value)), status_(AskStatus::answered) {}
  /// No answer, for reason `status` (not AskStatus::answered).
  explicit AskResult(AskStatus status) noexcept : status_(status) {}

  // Both read the optional itself, so that the compiler sees a value behind
  // ok() / status() == answered (no false maybe-uninitialized warnings).
  [[nodiscard]] AskStatus status() const noexcept { return value_.has_value() ? AskStatus::answered : status_; }
  [[nodiscard]] bool ok() const noexcept { return value_.has_value(); }
  [[nodiscard]] explicit operator bool() const noexcept { return ok(); }

  /// The answer; throws BadAskAccess when there is none.
  [[nodiscard]] R& value() & { return checked(), *value_; }
  [[nodiscard]] const R& value() const& { return checked(), *value_; }
  [[nodiscard]] R&& value() && { return checked(), std::move(*value_); }
  /// The answer, or `fallback` when there is none.
  template <class U>
  [[nodiscard]] R value_or(U&& fallback) const& {
    return ok() ? *value_ : static_cast<R>(std::forward<U>(fallback));
  }
  /// The answer, unchecked: only when ok().
  [[nodiscard]] R& operator*() & noexcept { return *value_; }
  [[nodiscard]] const R& operator*() const& noexcept { return *value_; }
  [[nodiscard]] R&& operator*() && noexcept { return std::move(*value_); }
  [[nodiscard]] R* operator->() noexcept { return &*value_; }
  [[nodiscard]] const R* operator->() const noexcept { return &*value_; }

 private:
  void checked() const {
    if (!ok()) throw BadAskAccess(status_);
  }
  std::optional<R> value_;
  AskStatus status_;
};

namespace detail {

/// Runs an ask's callback: with the status, and the answer (an R*) when answered.
using AskCallback = InlineFunction<void(AskStatus, void*), 48>;

class AskTable;
template <class Target, class Msg, class R>
struct AskTask;

/// One pending ask: a slot of the shard's AskTable. It is its own deadline
/// timer, so an ask with a timeout costs no allocation either.
struct PendingAsk final : Timer {
  void fire() override;
  AskCallback callback;
  AskTable* table = nullptr;
  ActorBase* owner = nullptr;  // the asking actor; null for actors::ask from plain code
  PendingAsk* prev = nullptr;  // the owner's list of pending asks
  PendingAsk* next = nullptr;  // the owner's list, or the free list
  std::uint32_t index = 0;
  std::uint32_t gen = 1;
  bool in_use = false;
};

/// The asks started on one shard and not yet completed (part of ActorTable).
/// An ask's id is its slot and the slot's generation: completing one is an
/// index and a comparison, and an answer that comes after its ask completed
/// (timed out, or its asker stopped) finds a newer generation and is dropped.
class AskTable {
 public:
  explicit AskTable(Shard& shard) noexcept : shard_(&shard) {}
  AskTable(const AskTable&) = delete;
  AskTable& operator=(const AskTable&) = delete;

  /// Registers an ask by `owner` (null: plain shard code) with its callback and
  /// an optional deadline (zero: none); returns its id (never 0). Shard thread.
  std::uint64_t add(ActorBase* owner, AskCallback callback, std::chrono::nanoseconds timeout);
  /// Completes ask `id`: runs its callback once with `status` (and `value`, an
  /// R*, when answered), unless it already completed. Shard thread.
  void complete(std::uint64_t id, AskStatus status, void* value) noexcept;
  /// Discards the pending asks of `owner` (it stops): their callbacks never run.
  void discard(ActorBase& owner) noexcept;

  /// Asks pending on this shard.
  [[nodiscard]] std::size_t pending() const noexcept { return pending_.load(std::memory_order_relaxed); }
  /// Answers that came after their ask had completed or been discarded.
  [[nodiscard]] std::uint64_t late_answers() const noexcept {
    return late_answers_.load(std::memory_order_relaxed);
  }
  /// Asks that completed without an answer (timed out, target gone, dropped).
  [[nodiscard]] std::uint64_t failed() const noexcept { return failed_.get(); }

 private:
  static constexpr unsigned kChunkShift = 10;
  static constexpr unsigned kChunkMask = (1u << kChunkShift) - 1;
  PendingAsk* find(std::uint64_t id) noexcept {
    const auto index = static_cast<std::uint32_t>(id);
    const std::size_t chunk = index >> kChunkShift;
    if (chunk >= chunks_.size()) return nullptr;
    PendingAsk* p = &chunks_[chunk][index & kChunkMask];
    return p->in_use && p->gen == static_cast<std::uint32_t>(id >> 32) ? p : nullptr;
  }
  void release(PendingAsk* p) noexcept;

  Shard* shard_;
  std::vector<std::unique_ptr<PendingAsk[]>> chunks_;
  PendingAsk* free_ = nullptr;
  std::atomic<std::size_t> pending_{0};
  std::atomic<std::uint64_t> late_answers_{0};
  StatCounter failed_;
};

/// Marks this thread as running a handler of the actors layer that is
/// stopping its actor (on_stop, the actor's destruction): a Reply<R> dropped
/// meanwhile tells its asker target_gone rather than dropped.
inline thread_local int tl_finishing = 0;

/// Logs the exception being handled (call it inside a catch block) as a
/// failure of `a`'s handler, then runs a.on_failure(). Never throws.
void handler_failed(ActorBase& a) noexcept;
/// Logs the exception being handled as thrown by `what` outside any actor.
void exception_swallowed(const char* what) noexcept;

struct ActorTimer final : Timer {
  void fire() override;
  ActorTable* table = nullptr;
  ActorBase* owner = nullptr;
  ActorTimer* prev = nullptr;
  ActorTimer* next = nullptr;
  std::uint64_t gen = 0;
  Job task;  // delivers the message
};

/// An operation started with io(). A multishot one is re-armed by
/// MultishotCompletion (the one copy of that logic) until it is cancelled or
/// its actor stops; a one-shot one is submitted plainly and never re-armed.
struct ActorIo final : MultishotCompletion {
  void prep(io_uring_sqe* sqe) override { fill(sqe); }
  void on_cqe(const io_uring_cqe& cqe) override;
  ActorTable* table = nullptr;
  ActorBase* owner = nullptr;  // null once the actor stopped
  RawRef target{};
  std::uint64_t tag = 0;
  void (*deliver)(ActorBase*, const IoResult&) = nullptr;
  ActorIo* prev = nullptr;
  ActorIo* next = nullptr;
  std::uint64_t gen = 0;
  bool multishot = false;
  bool cancelled = false;
  InlineFunction<void(io_uring_sqe*), 48> fill;  // kept to re-arm a multishot operation
};

/// Stops the actor at `raw` (parked if it has not started yet).
struct StopTask {
  RawRef raw;
  void operator()() const;
};

template <class T, class M>
concept Handles = requires(T& t, M&& m) { t.on_message(std::move(m)); };

}  // namespace detail

class ActorBase {
 public:
  ActorBase() = default;
  virtual ~ActorBase() = default;
  ActorBase(const ActorBase&) = delete;
  ActorBase& operator=(const ActorBase&) = delete;

  /// Runs on the actor's shard once it is installed, before any message.
  virtual void on_start() {}
  /// Runs when the actor stops (stop(), or its shard shutting down); its
  /// timers and I/O are cancelled right after.
  virtual void on_stop() {}

  [[nodiscard]] const RawRef& raw_ref() const noexcept { return self_; }
  [[nodiscard]] Shard& shard() const noexcept { return *shard_; }
  [[nodiscard]] Reactor& reactor() const noexcept { return shard_->reactor(); }
  [[nodiscard]] bool stopping() const noexcept { return stopping_; }
  /// Asks this actor started whose callbacks have not run yet.
  [[nodiscard]] std::size_t pending_asks() const noexcept { return pending_asks_; }
  /// Stops this actor once the current handler returns. Messages that arrive
  /// afterwards are dead letters.
  void stop();

 protected:
  /// Called when one of this actor's handlers (on_start, on_message, an ask
  /// callback, a timer message, an I/O completion) threw `error`, after the
  /// error line has been logged, on the actor's shard. The default stops the
  /// actor; override it to release what the actor holds first (a connection
  /// aborts its socket with CloseReason::error, for instance), and call
  /// ActorBase::on_failure() or stop() unless the actor should go on. An
  /// exception thrown from here is logged and the actor is stopped.
  virtual void on_failure(std::exception_ptr error);
  /// Runs after one of this actor's ask callbacks returned (pending_asks()
  /// already counts any ask the callback started). A connection uses it to
  /// close a half-closed socket once nothing is owed.
  virtual void on_ask_done() {}

  /// Delivers `msg` to this actor after `delay` (no earlier). Cancelled when the actor stops.
  TimerId after_task(std::chrono::nanoseconds delay, Job task);
  /// Cancels a timer; no effect if it already fired.
  void cancel_timer(TimerId id) noexcept;
  /// Cancels an operation; its completion (-ECANCELED) still arrives.
  void cancel_io(IoId id) noexcept;
  IoId start_io(std::uint64_t tag, void (*deliver)(ActorBase*, const IoResult&),
                InlineFunction<void(io_uring_sqe*), 48> prep, bool multishot, std::chrono::nanoseconds timeout);
  /// Registers an ask by this actor (see detail::AskTable::add).
  std::uint64_t add_pending_ask(detail::AskCallback callback, std::chrono::nanoseconds timeout);

 private:
  friend class ActorTable;
  friend class detail::AskTable;
  friend struct detail::ActorTimer;
  friend struct detail::ActorIo;
  friend void detail::handler_failed(ActorBase&) noexcept;

  RawRef self_{};
  Shard* shard_ = nullptr;
  ActorTable* table_ = nullptr;
  bool stopping_ = false;
  detail::ActorTimer* timers_ = nullptr;
  detail::ActorIo* ios_ = nullptr;
  detail::PendingAsk* asks_ = nullptr;  // this actor's pending asks, discarded when it stops
  std::size_t pending_asks_ = 0;        // the length of asks_
};

/// Per-shard table of actors (a ShardExtension).
class ActorTable final : public ShardExtension {
 public:
  explicit ActorTable(Shard& shard) : shard_(&shard), asks_(shard) { local_free_.reserve(kLocalFreeSlots); }
  ~ActorTable() override;

  /// The table of `shard`, created on first use (from any thread).
  static ActorTable& of(Shard& shard) {
    if (ShardExtension* ext = shard.find_extension(key_)) return static_cast<ActorTable&>(*ext);
    return create(shard);
  }

  /// Reserves an address for an actor to be installed later (any thread).
  RawRef reserve();
  /// Installs `actor` at `ref` and runs its on_start (shard thread).
  void install(const RawRef& ref, std::unique_ptr<ActorBase> actor);
  /// The live actor at `ref`, or nullptr when it stopped or never started (shard thread).
  [[nodiscard]] ActorBase* lookup(const RawRef& ref) const noexcept {
    const std::size_t chunk = ref.slot >> kChunkShift;
    if (chunk >= chunks_.size()) return nullptr;
    const Slot& s = chunks_[chunk][ref.slot & kChunkMask];
    if (s.gen != ref.gen || s.actor == nullptr || s.actor->stopping_) return nullptr;
    return s.actor;
  }
  /// True when `ref` was reserved by spawn() but its actor is not installed
  /// yet: a message from a thread other than the spawner's can overtake the
  /// spawn itself, and is parked until the actor starts (shard thread).
  [[nodiscard]] bool pending(const RawRef& ref) const noexcept {
    const std::size_t chunk = ref.slot >> kChunkShift;
    if (chunk >= chunks_.size()) return ref.slot < next_fresh_.load(std::memory_order_relaxed);
    const Slot& s = chunks_[chunk][ref.slot & kChunkMask];
    return s.actor == nullptr && s.gen < ref.gen;
  }
  /// Keeps `retry` until the actor at `ref` is installed, then runs it (shard thread).
  void park(const RawRef& ref, Job retry);
  /// Counts (and logs at debug) a message that found no live actor.
  void dead_letter(const RawRef& ref, const char* what) noexcept;

  [[nodiscard]] std::uint64_t dead_letters() const noexcept {
    return dead_letters_.load(std::memory_order_relaxed);
  }
  [[nodiscard]] std::size_t live() const noexcept { return live_.load(std::memory_order_relaxed); }
  [[nodiscard]] Shard& shard() const noexcept { return *shard_; }
  /// The asks started on this shard and not completed yet.
  [[nodiscard]] detail::AskTable& asks() noexcept { return asks_; }
  [[nodiscard]] std::size_t pending_asks() const noexcept { return asks_.pending(); }
  /// Answers to asks from this shard that came too late (after the deadline,
  /// or after the asking actor stopped) and were dropped.
  [[nodiscard]] std::uint64_t late_answers() const noexcept { return asks_.late_answers(); }
  /// Asks from this shard that completed without an answer (timed out, target
  /// gone, dropped). Any thread.
  [[nodiscard]] std::uint64_t failed_asks() const noexcept { return asks_.failed(); }

  // Pools (shard thread).
  detail::ActorTimer* take_timer();
  void give_timer(detail::ActorTimer* t) noexcept;
  detail::ActorIo* take_io();
  void give_io(detail::ActorIo* io) noexcept;

  /// Stops `actor` now: on_stop, cancel its timers and I/O, free its slot, delete it.
  void finish(ActorBase* actor) noexcept;
  /// finish() for the actor at `ref` if it is still there (its stop() was deferred).
  void finish_stopping(const RawRef& ref) noexcept {
    const std::size_t chunk = ref.slot >> kChunkShift;
    if (chunk >= chunks_.size()) return;
    Slot& s = chunks_[chunk][ref.slot & kChunkMask];
    if (s.gen == ref.gen && s.actor != nullptr) finish(s.actor);
  }

  void on_shard_stop() override;

 private:
  static constexpr unsigned kChunkShift = 10;
  static constexpr unsigned kChunkMask = (1u << kChunkShift) - 1;
  struct Slot {
    ActorBase* actor = nullptr;
    std::uint32_t gen = 0;
  };
  struct FreeSlot {
    std::uint32_t slot;
    std::uint32_t gen;
  };
  Slot& slot_for(std::uint32_t slot);
  static ActorTable& create(Shard& shard);
  static const unsigned key_;  // this extension's key on every shard

  Shard* shard_;
  std::vector<std::unique_ptr<Slot[]>> chunks_;
  // Freed slots go to a plain vector that only the shard's own spawns use
  // (no atomics), and past kLocalFreeSlots to the queue that spawns from
  // other threads draw from.
  static constexpr std::size_t kLocalFreeSlots = 1024;
  std::vector<FreeSlot> local_free_;
  moodycamel::ConcurrentQueue<FreeSlot> free_;
  std::atomic<std::uint32_t> next_fresh_{0};
  std::atomic<std::uint64_t> dead_letters_{0};
  std::atomic<std::size_t> live_{0};
  bool closed_ = false;
  std::vector<std::unique_ptr<detail::ActorTimer>> timer_store_;
  std::vector<detail::ActorTimer*> free_timers_;
  std::vector<std::unique_ptr<detail::ActorIo>> io_store_;
  std::vector<detail::ActorIo*> free_ios_;
  std::unordered_map<std::uint32_t, std::vector<Job>> parked_;
  detail::AskTable asks_;
};

namespace detail {
inline Runtime& runtime_or_die() {
  if (Shard* s = Shard::current()) return s->runtime();
  Runtime* rt = Runtime::current();
  if (rt == nullptr) std::abort();  // no Runtime started: a programming error
  return *rt;
}

/// Delivers `msg` to the actor at `raw` on the calling shard (or parks it
/// until that actor starts, or counts a dead letter).
template <class T, class M>
void deliver_here(const RawRef& raw, M& msg) {
  ActorTable& table = ActorTable::of(*Shard::current());
  if (ActorBase* a = table.lookup(raw)) {
    try {
      static_cast<T*>(a)->on_message(std::move(msg));
    } catch (...) {
      handler_failed(*a);
    }
  } else if (table.pending(raw)) {
    table.park(raw, [raw, m = std::move(msg)]() mutable { deliver_here<T>(raw, m); });
  } else {
    table.dead_letter(raw, typeid(M).name());
  }
}
}  // namespace detail

/// Creates a T on shard `shard` of `rt` with `args` (moved to that shard) and
/// returns its address at once; messages sent to it afterwards from the same
/// thread arrive after its on_start.
template <class T, class... Args>
ActorRef<T> spawn(Runtime& rt, unsigned shard, Args&&... args) {
  static_assert(std::is_base_of_v<ActorBase, T>, "spawn<T>: T must derive from ringshard::actors::Actor<T>");
  Shard& s = rt.shard(shard);
  ActorTable& table = ActorTable::of(s);
  RawRef ref = table.reserve();
  ref.shard = shard;
  s.post([&table, ref, args = std::make_tuple(std::decay_t<Args>(std::forward<Args>(args))...)]() mutable {
    table.install(ref, std::apply([](auto&&... a) { return std::make_unique<T>(std::move(a)...); },
                                  std::move(args)));
  });
  return ActorRef<T>(ref);
}
template <class T, class... Args>
ActorRef<T> spawn(unsigned shard, Args&&... args) {
  return spawn<T>(detail::runtime_or_die(), shard, std::forward<Args>(args)...);
}

/// Sends `msg` to the actor at `to` (from any thread; from outside a shard the
/// runtime is the one started last).
template <class T, class M>
void send(const ActorRef<T>& to, M&& msg) {
  using Msg = std::decay_t<M>;
  static_assert(detail::Handles<T, Msg>, "send: the target actor has no on_message for this message type");
  detail::runtime_or_die().shard(to.shard()).post([raw = to.raw(), m = Msg(std::forward<M>(msg))]() mutable {
    detail::deliver_here<T>(raw, m);
  });
}

/// Stops the actor at `to` (from any thread). Unknown or stopped actors: no effect.
template <class T>
void stop(const ActorRef<T>& to) {
  detail::runtime_or_die().shard(to.shard()).post(detail::StopTask{to.raw()});
}

/// The answer to an ask(): call it once, now or later, from the target's
/// shard. Dropping it unanswered tells the asker AskStatus::dropped (or
/// target_gone when it goes with its actor: the actor stopped or failed).
template <class R>
class Reply {
 public:
  /// A Reply that answers nothing (a placeholder to move a real one into).
  Reply() noexcept = default;
  Reply(unsigned asker_shard, std::uint64_t id) noexcept : shard_(asker_shard), id_(id) {}
  Reply(Reply&& o) noexcept : shard_(o.shard_), id_(std::exchange(o.id_, 0)) {}
  Reply& operator=(Reply&& o) noexcept {
    if (this != &o) {
      abandon();
      shard_ = o.shard_;
      id_ = std::exchange(o.id_, 0);
    }
    return *this;
  }
  Reply(const Reply&) = delete;
  Reply& operator=(const Reply&) = delete;
  ~Reply() { abandon(); }

  /// Answers the ask (no effect if this Reply already answered or is empty).
  void operator()(R value) {
    if (id_ == 0) return;
    std::optional<R> v(std::move(value));
    post(std::exchange(id_, 0), AskStatus::answered, v);
  }
  /// True until it answered (or was moved from).
  [[nodiscard]] explicit operator bool() const noexcept { return id_ != 0; }

 private:
  template <class, class, class>
  friend struct detail::AskTask;
  /// Tells the asker no answer comes, for reason `status`.
  void fail(AskStatus status) noexcept {
    if (id_ == 0) return;
    std::optional<R> none;
    post(std::exchange(id_, 0), status, none);
  }
  void abandon() noexcept {
    // Destroyed with its actor (stopping), or by an exception leaving the
    // handler that held it: the target is gone rather than silent.
    if (id_ != 0)
      fail(detail::tl_finishing != 0 || std::uncaught_exceptions() > 0 ? AskStatus::target_gone : AskStatus::dropped);
  }
  void post(std::uint64_t id, AskStatus status, std::optional<R>& value) noexcept;

  unsigned shard_ = 0;
  std::uint64_t id_ = 0;
};

namespace detail {
/// Delivers an ask to its target on the target's shard.
template <class Target, class Msg, class R>
struct AskTask {
  RawRef raw;
  Msg m;
  Reply<R> reply;
  void operator()() {
    ActorTable& table = ActorTable::of(*Shard::current());
    ActorBase* a = table.lookup(raw);
    if (a == nullptr) {
      if (table.pending(raw)) {
        table.park(raw, std::move(*this));
      } else {
        table.dead_letter(raw, typeid(Msg).name());
        reply.fail(AskStatus::target_gone);
      }
      return;
    }
    auto* t = static_cast<Target*>(a);
    try {
      if constexpr (requires { t->on_message(std::move(m), std::move(reply)); }) {
        t->on_message(std::move(m), std::move(reply));
      } else {
        static_assert(std::is_convertible_v<decltype(t->on_message(std::move(m))), R>,
                      "ask: the target needs on_message(Req, Reply<Response>) or Response on_message(Req)");
        reply(t->on_message(std::move(m)));
      }
    } catch (...) {
      handler_failed(*a);
      reply.fail(AskStatus::target_gone);  // still here when the handler threw before taking it
    }
  }
};

/// Checks an ask callback's signature and wraps it for the AskTable.
template <class R, class F>
AskCallback ask_callback(F&& on_result) {
  using Fn = std::decay_t<F>;
  if constexpr (!std::is_invocable_v<Fn&, AskResult<R>&&>) {
    if constexpr (std::is_invocable_v<Fn&, R&&>) {
      static_assert(sizeof(Fn) == 0,
                    "ask: the callback must take AskResult<Response> (it tells an answer from a lost ask: "
                    "[](AskResult<R> r) { if (r) use(*r); }), not the bare Response");
    } else {
      static_assert(sizeof(Fn) == 0, "ask: the callback must be callable as f(AskResult<Response>)");
    }
    return AskCallback();
  } else {
    return AskCallback([f = std::forward<F>(on_result)](AskStatus status, void* value) mutable {
      if (value != nullptr) {
        f(AskResult<R>(std::move(*static_cast<R*>(value))));
      } else {
        f(AskResult<R>(status));
      }
    });
  }
}

/// Sends the ask `id` (from shard `asker_shard`) to `to`.
template <class Target, class Req>
void post_ask(const ActorRef<Target>& to, Req&& req, unsigned asker_shard, std::uint64_t id) {
  using Msg = std::decay_t<Req>;
  using R = typename Msg::Response;
  runtime_or_die().shard(to.shard()).post(
      AskTask<Target, Msg, R>{to.raw(), Msg(std::forward<Req>(req)), Reply<R>(asker_shard, id)});
}
}  // namespace detail

template <class Derived>
class Actor : public ActorBase {
 public:
  [[nodiscard]] ActorRef<Derived> self() const noexcept { return ActorRef<Derived>(raw_ref()); }

 protected:
  /// Delivers `msg` to this actor after `delay` (never earlier).
  template <class M>
  TimerId after(std::chrono::nanoseconds delay, M&& msg) {
    using Msg = std::decay_t<M>;
    static_assert(detail::Handles<Derived, Msg>, "after: this actor has no on_message for this message type");
    return after_task(delay, [raw = raw_ref(), m = Msg(std::forward<M>(msg))]() mutable {
      detail::deliver_here<Derived>(raw, m);
    });
  }
  using ActorBase::cancel_timer;

  /// Starts an operation on this shard's ring; prep(io_uring_sqe*) fills the SQE.
  /// The completion arrives as on_message(const IoResult&) with `tag`.
  /// Memory the SQE points at (buffers, iovecs, addresses, timespecs) must
  /// stay where it is until the final IoResult (more() false) arrives: keep
  /// it in the actor, and cancel_io() before freeing it early.
  template <class Prep>
  IoId io(std::uint64_t tag, Prep&& prep) {
    return start_io(tag, &deliver_io, std::forward<Prep>(prep), false, std::chrono::nanoseconds::zero());
  }
  /// As io(), cancelled (-ECANCELED) if not complete after `timeout`.
  template <class Prep>
  IoId io(std::uint64_t tag, Prep&& prep, std::chrono::nanoseconds timeout) {
    return start_io(tag, &deliver_io, std::forward<Prep>(prep), false, timeout);
  }
  /// A multishot operation: one IoResult per CQE; re-armed when the kernel
  /// ends it, until cancel_io() or the actor stops.
  template <class Prep>
  IoId io_multishot(std::uint64_t tag, Prep&& prep) {
    return start_io(tag, &deliver_io, std::forward<Prep>(prep), true, std::chrono::nanoseconds::zero());
  }
  using ActorBase::cancel_io;

  /// Request/reply: sends `req` to `to`; `on_result(AskResult<Response>)`
  /// runs once on this actor's shard with the answer, or with why none came
  /// (target_gone, dropped, timed_out). It never runs if this actor stopped
  /// first. Req names its answer type as Req::Response. An exception from
  /// the callback is this actor's failure (see on_failure).
  template <class Target, class Req, class F>
  void ask(const ActorRef<Target>& to, Req&& req, F&& on_result) {
    ask(to, std::forward<Req>(req), std::chrono::nanoseconds::zero(), std::forward<F>(on_result));
  }
  /// As ask(), with a deadline: if no answer came after `timeout` (> 0), the
  /// callback runs with AskStatus::timed_out and a later answer is dropped.
  template <class Target, class Req, class F>
  void ask(const ActorRef<Target>& to, Req&& req, std::chrono::nanoseconds timeout, F&& on_result) {
    using R = typename std::decay_t<Req>::Response;
    const std::uint64_t id = add_pending_ask(detail::ask_callback<R>(std::forward<F>(on_result)), timeout);
    detail::post_ask(to, std::forward<Req>(req), raw_ref().shard, id);
  }

 private:
  static void deliver_io(ActorBase* a, const IoResult& r) {
    if constexpr (detail::Handles<Derived, const IoResult&>) {
      static_cast<Derived*>(a)->on_message(r);
    } else {
      static_assert(sizeof(Derived) == 0, "io(): the actor needs on_message(const IoResult&)");
    }
  }
};

template <class R>
void Reply<R>::post(std::uint64_t id, AskStatus status, std::optional<R>& value) noexcept {
  Runtime* rt = Runtime::current();
  if (rt == nullptr) return;
  rt->shard(shard_).post([id, status, v = std::move(value)]() mutable {
    ActorTable::of(*Shard::current()).asks().complete(id, status, v ? &*v : nullptr);
  });
}

/// Request/reply from any code running on a shard (not only actors):
/// `on_result(AskResult<Response>)` runs once on the calling shard with the
/// answer or with why none came. An exception from it is logged and swallowed.
template <class Target, class Req, class F>
  requires std::is_invocable_v<F&, AskResult<typename std::decay_t<Req>::Response>>
void ask(const ActorRef<Target>& to, Req&& req, std::chrono::nanoseconds timeout, F&& on_result) {
  using R = typename std::decay_t<Req>::Response;
  Shard* here = Shard::current();
  if (here == nullptr) std::abort();  // ask() needs a shard to come back to
  const std::uint64_t id =
      ActorTable::of(*here).asks().add(nullptr, detail::ask_callback<R>(std::forward<F>(on_result)), timeout);
  detail::post_ask(to, std::forward<Req>(req), here->id(), id);
}
/// As above, without a deadline.
template <class Target, class Req, class F>
  requires std::is_invocable_v<F&, AskResult<typename std::decay_t<Req>::Response>>
void ask(const ActorRef<Target>& to, Req&& req, F&& on_result) {
  ask(to, std::forward<Req>(req), std::chrono::nanoseconds::zero(), std::forward<F>(on_result));
}

/// co_await ask(ref, req[, timeout]) in a coroutine on a shard: the
/// AskResult<Response>, resumed on the calling shard. Cancelling the task
/// gives AskStatus::canceled at once (a later answer is dropped); stopping
/// it forgets the ask.
template <class Target, class Msg>
class AskAwait final : public Suspension {
 public:
  using R = typename Msg::Response;
  AskAwait(const ActorRef<Target>& to, Msg req, std::chrono::nanoseconds timeout)
      : to_(to), req_(std::move(req)), timeout_(timeout) {}
  AskAwait(const AskAwait&) = delete;
  AskAwait& operator=(const AskAwait&) = delete;
  ~AskAwait() { forget(); }

  bool await_ready() const noexcept { return false; }
  template <class P>
  bool await_suspend(std::coroutine_handle<P> h) {
    root_ = ringshard::detail::root_of(h);
    if (root_ != nullptr) {
      const TaskRoot::Admit admit = root_->suspend_in(*this);
      if (admit == TaskRoot::Admit::cancelled) {
        result_.emplace(AskStatus::canceled);
        return false;
      }
      if (admit == TaskRoot::Admit::parked) return true;
    }
    Shard* here = Shard::current();
    if (here == nullptr) throw std::logic_error("ringshard: co_await ask() outside a shard thread");
    h_ = h;
    table_ = &ActorTable::of(*here).asks();
    id_ = table_->add(nullptr, detail::AskCallback([this](AskStatus status, void* value) {
                        if (resuming_) answered(status, value);  // not when forget() completes it
                      }),
                      timeout_);
    detail::post_ask(to_, std::move(req_), here->id(), id_);
    return true;
  }
  AskResult<R> await_resume() { return std::move(*result_); }

  bool cancel() noexcept override {
    forget();
    return true;
  }
  void resume_cancelled() noexcept override {
    result_.emplace(AskStatus::canceled);
    h_.resume();
  }

 private:
  void answered(AskStatus status, void* value) {
    id_ = 0;
    if (value != nullptr) {
      result_.emplace(std::move(*static_cast<R*>(value)));
    } else {
      result_.emplace(status);
    }
    if (root_ != nullptr) root_->resumed();
    h_.resume();
  }
  // Completes the ask without resuming (its slot is freed; a later answer is
  // a late answer, dropped).
  void forget() noexcept {
    if (id_ == 0 || table_ == nullptr) return;
    const std::uint64_t id = std::exchange(id_, 0);
    resuming_ = false;
    table_->complete(id, AskStatus::canceled, nullptr);
  }

  ActorRef<Target> to_;
  Msg req_;
  std::chrono::nanoseconds timeout_;
  std::coroutine_handle<> h_{};
  TaskRoot* root_ = nullptr;
  detail::AskTable* table_ = nullptr;
  std::uint64_t id_ = 0;
  bool resuming_ = true;
  std::optional<AskResult<R>> result_;
};

template <class Target, class Req>
[[nodiscard]] AskAwait<Target, std::decay_t<Req>> ask(const ActorRef<Target>& to, Req&& req,
                                                      std::chrono::nanoseconds timeout = {}) {
  return {to, std::decay_t<Req>(std::forward<Req>(req)), timeout};
}

}  // namespace ringshard::actors
