#include "ringshard/actors/actor.hpp"

#include <algorithm>

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
    s.actor->on_start();
  }
  // Messages that overtook the spawn: deliver them now, in arrival order.
  if (!parked_.empty()) {
    auto it = parked_.find(ref.slot);
    if (it != parked_.end()) {
      std::vector<Task> tasks = std::move(it->second);
      parked_.erase(it);
      for (Task& t : tasks) t();
    }
  }
}

void ActorTable::park(const RawRef& ref, Task retry) { parked_[ref.slot].push_back(std::move(retry)); }

void ActorTable::dead_letter(const RawRef& ref, const char* what) noexcept {
  dead_letters_.fetch_add(1, std::memory_order_relaxed);
  RINGSHARD_LOG_DEBUG("dead letter ({}) for actor {}:{}:{}", what, ref.shard, ref.slot, ref.gen);
}

void ActorTable::finish(ActorBase* a) noexcept {
  a->stopping_ = true;
  a->on_stop();
  Reactor& reactor = shard_->reactor();
  while (detail::ActorTimer* t = a->timers_) {
    unlink(a->timers_, t);
    reactor.cancel(*t);
    give_timer(t);
  }
  while (detail::ActorIo* io = a->ios_) {
    unlink(a->ios_, io);
    io->owner = nullptr;  // its CQE still comes; the op is recycled then
    if (!io->cancelled) {
      io->cancelled = true;
      reactor.cancel(*io);
    }
  }
  a->pending_asks_.clear();
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
  io->prep.reset();
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

TimerId ActorBase::after_task(std::chrono::nanoseconds delay, Task task) {
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
  io->prep = std::move(prep);
  link_front(ios_, io);
  Reactor& r = shard_->reactor();
  auto fill = [io](io_uring_sqe* sqe) { io->prep(sqe); };
  if (timeout > std::chrono::nanoseconds::zero()) {
    r.submit(*io, fill, timeout);
  } else {
    r.submit(*io, fill);
  }
  if (!multishot) io->prep.reset();
  return IoId{io, io->gen};
}

void ActorBase::cancel_io(IoId id) noexcept {
  auto* io = static_cast<detail::ActorIo*>(id.op);
  if (io == nullptr || io->gen != id.gen || io->owner != this || io->cancelled) return;
  io->cancelled = true;
  shard_->reactor().cancel(*io);
}

std::uint64_t ActorBase::add_pending_ask(InlineFunction<void(void*), 48> on_reply) {
  const std::uint64_t id = next_ask_++;
  pending_asks_.emplace_back(id, std::move(on_reply));
  return id;
}

namespace detail {

void StopTask::operator()() const {
  ActorTable& table = ActorTable::of(*Shard::current());
  if (ActorBase* a = table.lookup(raw)) {
    a->stop();
  } else if (table.pending(raw)) {
    table.park(raw, StopTask{raw});
  }
}

void complete_ask(ActorBase& a, std::uint64_t id, void* value) noexcept {
  auto& pending = a.pending_asks_;
  auto it = std::find_if(pending.begin(), pending.end(), [id](const auto& p) { return p.first == id; });
  if (it == pending.end()) return;
  auto callback = std::move(it->second);
  pending.erase(it);
  if (value) callback(value);
}

void ActorTimer::fire() {
  ActorBase* a = owner;
  unlink(a->timers_, this);
  // The message goes through the run queue like any other.
  a->shard_->post(std::move(task));
  table->give_timer(this);
}

void ActorIo::complete(const io_uring_cqe& cqe) {
  const bool final_cqe = !(cqe.flags & IORING_CQE_F_MORE);
  if (owner != nullptr) {
    const IoResult result{tag, cqe.res, cqe.flags};
    owner->shard_->post([raw = target, deliver = deliver, result] {
      ActorTable& t = ActorTable::of(*Shard::current());
      if (ActorBase* a = t.lookup(raw)) deliver(a, result);
    });
    if (final_cqe && multishot && !cancelled) {
      // The kernel ended the multishot request (buffers ran out, ...): arm again.
      owner->shard_->reactor().submit(*this, [this](io_uring_sqe* sqe) { prep(sqe); });
      return;
    }
  }
  if (!final_cqe) return;
  if (owner != nullptr) unlink(owner->ios_, this);
  table->give_io(this);
}

}  // namespace detail
}  // namespace ringshard::actors
