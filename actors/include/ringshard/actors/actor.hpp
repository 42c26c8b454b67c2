// Actors: objects that live on one shard and react to messages.
//
//   struct Counter : ringshard::actors::Actor<Counter> {
//     int n = 0;
//     void on_message(const Add& m) { n += m.by; }
//     int on_message(const Get&) { return n; }            // answers ask()
//   };
//   auto ref = spawn<Counter>(/*shard*/ 1);
//   send(ref, Add{2});
//
// Handlers see the concrete message type (on_message overloads, checked at
// compile time against the ActorRef's type). A message to an actor on the
// same shard goes straight to the run queue, without a heap allocation when
// it fits the 48-byte task slot; to another shard it goes through that
// shard's mailbox, in order per sender shard.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <tuple>
#include <typeinfo>
#include <unordered_map>
#include <type_traits>
#include <utility>
#include <vector>

#include "ringshard/actors/ref.hpp"
#include "ringshard/framework/reactor.hpp"
#include "ringshard/framework/shard.hpp"
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

namespace detail {

struct ActorTimer final : Timer {
  void fire() override;
  ActorTable* table = nullptr;
  ActorBase* owner = nullptr;
  ActorTimer* prev = nullptr;
  ActorTimer* next = nullptr;
  std::uint64_t gen = 0;
  Task task;  // delivers the message
};

struct ActorIo final : Completion {
  void complete(const io_uring_cqe& cqe) override;
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
  InlineFunction<void(io_uring_sqe*), 48> prep;  // kept to re-arm a multishot operation
};

/// Stops the actor at `raw` (parked if it has not started yet).
struct StopTask {
  RawRef raw;
  void operator()() const;
};

/// Runs the callback of ask `id` of actor `a` with the answer (null: no answer comes).
void complete_ask(ActorBase& a, std::uint64_t id, void* value) noexcept;

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
  /// Stops this actor once the current handler returns. Messages that arrive
  /// afterwards are dead letters.
  void stop();

 protected:
  /// Delivers `msg` to this actor after `delay` (no earlier). Cancelled when the actor stops.
  TimerId after_task(std::chrono::nanoseconds delay, Task task);
  /// Cancels a timer; no effect if it already fired.
  void cancel_timer(TimerId id) noexcept;
  /// Cancels an operation; its completion (-ECANCELED) still arrives.
  void cancel_io(IoId id) noexcept;
  IoId start_io(std::uint64_t tag, void (*deliver)(ActorBase*, const IoResult&),
                InlineFunction<void(io_uring_sqe*), 48> prep, bool multishot, std::chrono::nanoseconds timeout);
  std::uint64_t add_pending_ask(InlineFunction<void(void*), 48> on_reply);

 private:
  friend class ActorTable;
  friend struct detail::ActorTimer;
  friend struct detail::ActorIo;
  friend void detail::complete_ask(ActorBase&, std::uint64_t, void*) noexcept;

  RawRef self_{};
  Shard* shard_ = nullptr;
  ActorTable* table_ = nullptr;
  bool stopping_ = false;
  detail::ActorTimer* timers_ = nullptr;
  detail::ActorIo* ios_ = nullptr;
  std::uint64_t next_ask_ = 1;
  std::vector<std::pair<std::uint64_t, InlineFunction<void(void*), 48>>> pending_asks_;
};

/// Per-shard table of actors (a ShardExtension).
class ActorTable final : public ShardExtension {
 public:
  explicit ActorTable(Shard& shard) : shard_(&shard) { local_free_.reserve(kLocalFreeSlots); }
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
  void park(const RawRef& ref, Task retry);
  /// Counts (and logs at debug) a message that found no live actor.
  void dead_letter(const RawRef& ref, const char* what) noexcept;

  [[nodiscard]] std::uint64_t dead_letters() const noexcept {
    return dead_letters_.load(std::memory_order_relaxed);
  }
  [[nodiscard]] std::size_t live() const noexcept { return live_.load(std::memory_order_relaxed); }
  [[nodiscard]] Shard& shard() const noexcept { return *shard_; }

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
  std::unordered_map<std::uint32_t, std::vector<Task>> parked_;
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
    static_cast<T*>(a)->on_message(std::move(msg));
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

/// The answer to an ask(): call it once, now or later, from the target's shard.
/// Dropping it unanswered tells the asker nothing comes (its callback is discarded).
template <class R>
class Reply {
 public:
  /// The callback form: runs on shard `origin` with the answer (nullopt: none comes).
  using Callback = InlineFunction<void(std::optional<R>&&), 48>;

  Reply(RawRef asker, std::uint64_t id) noexcept : asker_(asker), id_(id) {}
  Reply(unsigned origin, Callback callback)
      : asker_{origin, 0, 0}, id_(1), callback_(std::make_unique<Callback>(std::move(callback))) {}
  Reply(Reply&& o) noexcept
      : asker_(o.asker_), id_(std::exchange(o.id_, 0)), callback_(std::move(o.callback_)) {}
  Reply& operator=(Reply&& o) noexcept {
    if (this != &o) {
      abandon();
      asker_ = o.asker_;
      id_ = std::exchange(o.id_, 0);
      callback_ = std::move(o.callback_);
    }
    return *this;
  }
  Reply(const Reply&) = delete;
  Reply& operator=(const Reply&) = delete;
  ~Reply() { abandon(); }

  void operator()(R value) {
    if (id_ == 0) return;
    post(std::exchange(id_, 0), std::optional<R>(std::move(value)));
  }
  [[nodiscard]] explicit operator bool() const noexcept { return id_ != 0; }

 private:
  void abandon() noexcept {
    if (id_ != 0) post(std::exchange(id_, 0), std::nullopt);
  }
  void post(std::uint64_t id, std::optional<R> value) noexcept;

  RawRef asker_;
  std::uint64_t id_;
  std::unique_ptr<Callback> callback_;  // set in the callback form
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
        table.dead_letter(raw, typeid(Msg).name());  // the Reply's destructor tells the asker
      }
      return;
    }
    auto* t = static_cast<Target*>(a);
    if constexpr (requires { t->on_message(std::move(m), std::move(reply)); }) {
      t->on_message(std::move(m), std::move(reply));
    } else {
      static_assert(std::is_convertible_v<decltype(t->on_message(std::move(m))), R>,
                    "ask: the target needs on_message(Req, Reply<Response>) or Response on_message(Req)");
      reply(t->on_message(std::move(m)));
    }
  }
};
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

  /// Request/reply: sends `req` to `to`; `on_reply(Response)` runs on this
  /// actor's shard when the answer comes (not at all if this actor stopped,
  /// or if the target was gone). Req names its answer type as Req::Response.
  template <class Target, class Req, class F>
  void ask(const ActorRef<Target>& to, Req&& req, F&& on_reply) {
    using Msg = std::decay_t<Req>;
    using R = typename Msg::Response;
    const std::uint64_t id = add_pending_ask([f = std::forward<F>(on_reply)](void* p) mutable {
      f(std::move(*static_cast<R*>(p)));
    });
    Reply<R> reply(raw_ref(), id);
    detail::runtime_or_die().shard(to.shard()).post(
        detail::AskTask<Target, Msg, R>{to.raw(), Msg(std::forward<Req>(req)), std::move(reply)});
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
void Reply<R>::post(std::uint64_t id, std::optional<R> value) noexcept {
  Runtime* rt = Runtime::current();
  if (rt == nullptr || !asker_.valid()) return;
  if (callback_) {
    // The callback goes home to run (or be destroyed) on the shard that asked.
    rt->shard(asker_.shard).post([cb = std::move(callback_), v = std::move(value)]() mutable { (*cb)(std::move(v)); });
    return;
  }
  rt->shard(asker_.shard).post([asker = asker_, id, v = std::move(value)]() mutable {
    ActorTable& table = ActorTable::of(*Shard::current());
    ActorBase* a = table.lookup(asker);
    if (a == nullptr) {
      if (v) table.dead_letter(asker, "reply");
      return;
    }
    detail::complete_ask(*a, id, v ? &*v : nullptr);
  });
}

/// Request/reply from any code running on a shard (not only actors):
/// `on_reply(Response)` runs on the calling shard when the answer comes, and
/// not at all if the target was gone.
template <class Target, class Req, class F>
void ask(const ActorRef<Target>& to, Req&& req, F&& on_reply) {
  using Msg = std::decay_t<Req>;
  using R = typename Msg::Response;
  Shard* here = Shard::current();
  if (here == nullptr) std::abort();  // ask() needs a shard to come back to
  Reply<R> reply(here->id(), typename Reply<R>::Callback([f = std::forward<F>(on_reply)](std::optional<R>&& v) mutable {
                   if (v) f(std::move(*v));
                 }));
  detail::runtime_or_die().shard(to.shard()).post(
      detail::AskTask<Target, Msg, R>{to.raw(), Msg(std::forward<Req>(req)), std::move(reply)});
}

}  // namespace ringshard::actors
