#include "ringshard/actors/actor.hpp"

#include <cxxabi.h>

#include <cstdlib>
#include <string>

#include "ringshard/framework/log.hpp"

namespace ringshard::actors {

const unsigned ActorTable::key_ = Shard::register_extension_key();

namespace {

template <class Node>
void link_front(Node*& head, Node* n) noexcept {
  n->prev = nullptr;
  n->next = head;
  if (head) head->prev = n;
  head = n;
}
template <class Node>
void unlink(Node*& head, Node* n) noexcept {
  if (n->prev) n->prev->next = n->next;
  else head = n->next;
  if (n->next) n->next->prev = n->prev;
  n->prev = n->next = nullptr;
}

/// The readable name of a type (abi::__cxa_demangle), or the mangled one.
std::string demangled(const char* mangled) {
  int status = 0;
  char* readable = abi::__cxa_demangle(mangled, nullptr, nullptr, &status);
  std::string name = status == 0 && readable != nullptr ? readable : mangled;
  std::free(readable);
  return name;
}

/// what() of the exception being handled, or "unknown exception".
std::string current_what() {
  try {
    throw;
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown exception";
  }
}
}  // namespace

// ---- ActorTable ------------------------------------------------------------------

ActorTable& ActorTable::create(Shard& shard) {
  return shard.extension<ActorTable>(key_, [&shard] { return std::make_unique<ActorTable>(shard); });
}

ActorTable::~ActorTable() {
  // Actors still here were installed after the shard stopped (or the shard
  // never ran): destroy them without running handlers on a foreign thread.
  for (auto& chunk : chunks_) {
    for (unsigned i = 0; i <= kChunkMask; ++i) delete chunk[i].actor;
  }
}

RawRef ActorTable::reserve() {
  FreeSlot f{};
  if (Shard::current() == shard_ && !local_free_.empty()) {
    f = local_free_.back();
    local_free_.pop_back();
    return RawRef{UINT32_MAX, f.slot, f.gen};
  }
  if (free_.try_dequeue(f)) return RawRef{UINT32_MAX, f.slot, f.gen};
  return RawRef{UINT32_MAX, next_fresh_.fetch_add(1, std::memory_order_relaxed), 1};
}

ActorTable::Slot& ActorTable::slot_for(std::uint32_t slot) {
  const std::size_t chunk = slot >> kChunkShift;
  while (chunks_.size() <= chunk) chunks_.push_back(std::make_unique<Slot[]>(kChunkMask + 1));
  return chunks_[chunk][slot & kChunkMask];
}

void ActorTable::install(const RawRef& ref, std::unique_ptr<ActorBase> actor) {
  Slot& s = slot_for(ref.slot);
  s.gen = ref.gen;
  if (closed_) {
    dead_letter(ref, "spawn on a stopping shard");
  } else {
    s.actor = actor.release();
    s.actor->self_ = ref;
    s.actor->shard_ = shard_;
    s.actor->table_ = this;
    live_.fetch_add(1, std::memory_order_relaxed);
    ActorBase* a = s.actor;
    try {
      a->on_start();
    } catch (...) {
      detail::handler_failed(*a);
    }
  }
  // Messages that overtook the spawn: deliver them now, in arrival order.
  if (!parked_.empty()) {
    auto it = parked_.find(ref.slot);
    if (it != parked_.end()) {
      std::vector<Job> tasks = std::move(it->second);
      parked_.erase(it);
      for (Job& t : tasks) t();
    }
  }
}

void ActorTable::park(const RawRef& ref, Job retry) { parked_[ref.slot].push_back(std::move(retry)); }

void ActorTable::dead_letter(const RawRef& ref, const char* what) noexcept {
  dead_letters_.fetch_add(1, std::memory_order_relaxed);
  RINGSHARD_LOG_DEBUG("dead letter ({}) for actor {}:{}:{}", what, ref.shard, ref.slot, ref.gen);
}

void ActorTable::finish(ActorBase* a) noexcept {
  a->stopping_ = true;
  // Replies the actor still holds go with it: their askers hear target_gone.
  ++detail::tl_finishing;
  try {
    a->on_stop();
  } catch (...) {
    try {
      RINGSHARD_LOG_ERROR("actor {} ({}:{}:{}) threw from on_stop: {}", demangled(typeid(*a).name()), a->self_.shard,
                          a->self_.slot, a->self_.gen, current_what());
    } catch (...) {
    }
  }
  Reactor& reactor = shard_->reactor();
  while (detail::ActorTimer* t = a->timers_) {
    unlink(a->timers_, t);
    reactor.cancel(*t);
    give_timer(t);
  }
  while (detail::ActorIo* io = a->ios_) {
    unlink(a->ios_, io);
    io->owner = nullptr;  // its CQE still comes; the op is recycled then
    io->stop();           // no re-arm
    if (!io->cancelled) {
      io->cancelled = true;
      reactor.cancel(*io);
    }
  }
  asks_.discard(*a);
  Slot& s = slot_for(a->self_.slot);
  s.actor = nullptr;
  const std::uint32_t next_gen = s.gen + 1 == 0 ? 1 : s.gen + 1;
  if (local_free_.size() < kLocalFreeSlots) {
    local_free_.push_back(FreeSlot{a->self_.slot, next_gen});
  } else {
    free_.enqueue(FreeSlot{a->self_.slot, next_gen});
  }
  live_.fetch_sub(1, std::memory_order_relaxed);
  delete a;
  --detail::tl_finishing;
}

void ActorTable::on_shard_stop() {
  closed_ = true;
  for (auto& chunk : chunks_) {
    for (unsigned i = 0; i <= kChunkMask; ++i) {
      if (ActorBase* a = chunk[i].actor) finish(a);
    }
  }
}

detail::ActorTimer* ActorTable::take_timer() {
  if (free_timers_.empty()) {
    timer_store_.push_back(std::make_unique<detail::ActorTimer>());
    timer_store_.back()->table = this;
    return timer_store_.back().get();
  }
  detail::ActorTimer* t = free_timers_.back();
  free_timers_.pop_back();
  return t;
}

void ActorTable::give_timer(detail::ActorTimer* t) noexcept {
  ++t->gen;
  t->owner = nullptr;
  t->task.reset();
  free_timers_.push_back(t);
}

detail::ActorIo* ActorTable::take_io() {
  if (free_ios_.empty()) {
    io_store_.push_back(std::make_unique<detail::ActorIo>());
    io_store_.back()->table = this;
    return io_store_.back().get();
  }
  detail::ActorIo* io = free_ios_.back();
  free_ios_.pop_back();
  return io;
}

void ActorTable::give_io(detail::ActorIo* io) noexcept {
  ++io->gen;
  io->owner = nullptr;
  io->fill.reset();
  io->cancelled = false;
  io->multishot = false;
  free_ios_.push_back(io);
}

// ---- ActorBase ---------------------------------------------------------------------

void ActorBase::stop() {
  if (stopping_) return;
  stopping_ = true;
  // Finish after the current handler has returned.
  shard_->post([table = table_, self = self_] { table->finish_stopping(self); });
}

TimerId ActorBase::after_task(std::chrono::nanoseconds delay, Job task) {
  detail::ActorTimer* t = table_->take_timer();
  t->owner = this;
  t->task = std::move(task);
  link_front(timers_, t);
  shard_->reactor().schedule(*t, delay);
  return TimerId{t, t->gen};
}

void ActorBase::cancel_timer(TimerId id) noexcept {
  auto* t = static_cast<detail::ActorTimer*>(id.timer);
  if (t == nullptr || t->gen != id.gen || t->owner != this) return;
  unlink(timers_, t);
  shard_->reactor().cancel(*t);
  table_->give_timer(t);
}

IoId ActorBase::start_io(std::uint64_t tag, void (*deliver)(ActorBase*, const IoResult&),
                         InlineFunction<void(io_uring_sqe*), 48> prep, bool multishot,
                         std::chrono::nanoseconds timeout) {
  detail::ActorIo* io = table_->take_io();
  io->owner = this;
  io->target = self_;
  io->tag = tag;
  io->deliver = deliver;
  io->multishot = multishot;
  io->cancelled = false;
  io->fill = std::move(prep);
  link_front(ios_, io);
  Reactor& r = shard_->reactor();
  if (multishot) {
    r.arm(*io);  // re-armed by MultishotCompletion until stopped
  } else {
    auto fill = [io](io_uring_sqe* sqe) { io->fill(sqe); };
    if (timeout > std::chrono::nanoseconds::zero()) {
      r.submit(*io, fill, timeout);
    } else {
      r.submit(*io, fill);
    }
    io->fill.reset();
  }
  return IoId{io, io->gen};
}

void ActorBase::cancel_io(IoId id) noexcept {
  auto* io = static_cast<detail::ActorIo*>(id.op);
  if (io == nullptr || io->gen != id.gen || io->owner != this || io->cancelled) return;
  io->cancelled = true;
  io->stop();  // a multishot operation ends with this cancellation
  shard_->reactor().cancel(*io);
}

std::uint64_t ActorBase::add_pending_ask(detail::AskCallback callback, std::chrono::nanoseconds timeout) {
  return table_->asks().add(this, std::move(callback), timeout);
}

void ActorBase::on_failure(std::exception_ptr) { stop(); }

namespace detail {

void StopTask::operator()() const {
  ActorTable& table = ActorTable::of(*Shard::current());
  if (ActorBase* a = table.lookup(raw)) {
    a->stop();
  } else if (table.pending(raw)) {
    table.park(raw, StopTask{raw});
  }
}

// ---- failures -----------------------------------------------------------------------

void handler_failed(ActorBase& a) noexcept {
  std::exception_ptr error = std::current_exception();
  try {
    RINGSHARD_LOG_ERROR("actor {} ({}:{}:{}) failed: a handler threw: {}", demangled(typeid(a).name()),
                        a.self_.shard, a.self_.slot, a.self_.gen, current_what());
  } catch (...) {
  }
  try {
    a.on_failure(error);
  } catch (...) {
    try {
      RINGSHARD_LOG_ERROR("actor {}: on_failure threw too: {}", demangled(typeid(a).name()), current_what());
    } catch (...) {
    }
    try {
      a.stop();
    } catch (...) {
    }
  }
}

void exception_swallowed(const char* what) noexcept {
  try {
    RINGSHARD_LOG_ERROR("{} threw (ignored): {}", what, current_what());
  } catch (...) {
  }
}

// ---- asks -------------------------------------------------------------------------

std::uint64_t AskTable::add(ActorBase* owner, AskCallback callback, std::chrono::nanoseconds timeout) {
  PendingAsk* p = free_;
  if (p != nullptr) {
    free_ = p->next;
  } else {
    // A new chunk of slots; they never move, so a slot can be its own timer.
    const auto first = static_cast<std::uint32_t>(chunks_.size() << kChunkShift);
    chunks_.push_back(std::make_unique<PendingAsk[]>(kChunkMask + 1));
    PendingAsk* chunk = chunks_.back().get();
    for (std::uint32_t i = 0; i <= kChunkMask; ++i) {
      chunk[i].table = this;
      chunk[i].index = first + i;
    }
    for (std::uint32_t i = kChunkMask; i >= 1; --i) {
      chunk[i].next = free_;
      free_ = &chunk[i];
    }
    p = &chunk[0];
  }
  p->callback = std::move(callback);
  p->owner = owner;
  p->in_use = true;
  p->prev = p->next = nullptr;
  if (owner != nullptr) {
    link_front(owner->asks_, p);
    ++owner->pending_asks_;
  }
  if (timeout > std::chrono::nanoseconds::zero()) shard_->reactor().schedule(*p, timeout);
  pending_.store(pending_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);  // one writer
  return (static_cast<std::uint64_t>(p->gen) << 32) | p->index;
}

void AskTable::release(PendingAsk* p) noexcept {
  if (p->scheduled()) shard_->reactor().cancel(*p);
  if (p->owner != nullptr) {
    unlink(p->owner->asks_, p);
    --p->owner->pending_asks_;
  }
  p->owner = nullptr;
  p->in_use = false;
  p->callback.reset();
  p->gen = p->gen + 1 == 0 ? 1 : p->gen + 1;  // answers to the old id now miss
  p->prev = nullptr;
  p->next = free_;
  free_ = p;
  pending_.store(pending_.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
}

void AskTable::complete(std::uint64_t id, AskStatus status, void* value) noexcept {
  PendingAsk* p = find(id);
  if (p == nullptr) {
    // Already completed (timed out) or discarded (its actor stopped).
    if (status == AskStatus::answered) {
      late_answers_.store(late_answers_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
      RINGSHARD_LOG_DEBUG("late answer to ask {}:{} dropped", id & 0xffffffffu, id >> 32);
    }
    return;
  }
  ActorBase* owner = p->owner;
  AskCallback callback = std::move(p->callback);
  release(p);  // first: the callback may ask again, and reuse the slot
  if (status != AskStatus::answered && status != AskStatus::canceled) ++failed_;
  if (owner != nullptr && owner->stopping_) {
    // The asker is stopping: its callbacks no longer run.
    if (status == AskStatus::answered) {
      late_answers_.store(late_answers_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    }
    return;
  }
  try {
    callback(status, value);
    if (owner != nullptr && !owner->stopping_) owner->on_ask_done();
  } catch (...) {
    if (owner != nullptr) {
      handler_failed(*owner);
    } else {
      exception_swallowed("an ask callback");
    }
  }
}

void AskTable::discard(ActorBase& owner) noexcept {
  while (PendingAsk* p = owner.asks_) release(p);
}

void PendingAsk::fire() {
  // The timeout goes through the run queue like any other message; an answer
  // that comes before it runs still wins.
  const std::uint64_t id = (static_cast<std::uint64_t>(gen) << 32) | index;
  AskTable* t = table;
  Shard::current()->post([t, id] { t->complete(id, AskStatus::timed_out, nullptr); });
}

void ActorTimer::fire() {
  ActorBase* a = owner;
  unlink(a->timers_, this);
  // The message goes through the run queue like any other.
  a->shard_->post(std::move(task));
  table->give_timer(this);
}

void ActorIo::on_cqe(const io_uring_cqe& cqe) {
  if (owner != nullptr) {
    const IoResult result{tag, cqe.res, cqe.flags};
    owner->shard_->post([raw = target, deliver = deliver, result] {
      ActorTable& t = ActorTable::of(*Shard::current());
      if (ActorBase* a = t.lookup(raw)) {
        try {
          deliver(a, result);
        } catch (...) {
          detail::handler_failed(*a);
        }
      }
    });
  }
  // A multishot request the kernel ended (buffers ran out, ...) while still
  // wanted is re-armed by MultishotCompletion once this returns.
  if ((cqe.flags & IORING_CQE_F_MORE) || (multishot && !cancelled && owner != nullptr)) return;
  // The last CQE: back to the pool. The pool does not free it, so
  // MultishotCompletion may still read it (stopped: no re-arm) as this returns.
  stop();
  if (owner != nullptr) unlink(owner->ios_, this);
  table->give_io(this);
}

}  // namespace detail
}  // namespace ringshard::actors
