#include "ringshard/framework/reactor.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <optional>
#include <string>
#include <system_error>

#include "ringshard/framework/log.hpp"

namespace ringshard {

Reactor::WaitPage::~WaitPage() {
  if (addr) ::munmap(addr, bytes);
}

namespace {

// Registers one page of wait arguments with a ring created disabled. A
// refusal (a kernel before 6.13) leaves the ring without a region: its waits
// pass their arguments as before. A page registered with a ring that then
// fails to enable is offered again to the next ring mode tried.
void register_wait_page(uring::Ring& ring, void*& addr, std::size_t& bytes) {
  int ret = -ENOMEM;
  if (!addr) {
    const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    void* p = ::mmap(nullptr, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p != MAP_FAILED) {
      addr = p;
      bytes = page;
    }
  }
  if (addr) {
    ret = ring.register_wait_region({static_cast<uring::abi::RegWait*>(addr), bytes / sizeof(uring::abi::RegWait)});
    if (ret == 0) return;
    ::munmap(addr, bytes);
    addr = nullptr;
  }
  static std::atomic<bool> said{false};  // once per process, not per shard
  if (!said.exchange(true)) {
    RINGSHARD_LOG_WARN("registered wait regions (IORING_REGISTER_MEM_REGION, Linux 6.13) refused: {}; waits pass "
                       "their arguments",
                       std::strerror(-ret));
  }
}

}  // namespace

uring::Ring Reactor::make_ring(const ReactorOptions& options, std::string_view& mode, WaitPage& page) {
  uring::SetupOptions base;
  base.cq_entries = options.cq_entries ? options.cq_entries : options.sq_entries * 4;
  struct Choice {
    unsigned flags;
    std::string_view name;
  };
  const Choice choices[] = {
      {IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG, "DEFER_TASKRUN"},
      {IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG, "COOP_TASKRUN"},
      {0, "plain"},
  };
  for (const auto& choice : choices) {
    if (!options.defer_taskrun && (choice.flags & IORING_SETUP_DEFER_TASKRUN)) continue;
    uring::SetupOptions opt = base;
    opt.flags = choice.flags;
    // A wait region can only be registered before the ring is enabled.
    if (options.registered_wait) opt.flags |= IORING_SETUP_R_DISABLED;
    try {
      uring::Ring ring(options.sq_entries, opt);
      if (options.registered_wait) {
        register_wait_page(ring, page.addr, page.bytes);
        // Enabled by this thread, which becomes the ring's single issuer.
        if (const int ret = ring.enable_rings(); ret < 0) {
          throw std::system_error(-ret, std::system_category(), "io_uring: enabling a ring created disabled");
        }
      }
      mode = choice.name;
      return ring;
    } catch (const std::system_error& e) {
      if (choice.flags == 0) throw;
    }
  }
  throw std::logic_error("unreachable");
}

Reactor::Reactor(const ReactorOptions& options) : ring_(make_ring(options, mode_, wait_page_)) {
  backlog_.reserve(64);
  heap_.reserve(64);
  if (options.min_wait.count() > 0 && options.wait_batch > 1) {
    if (ring_.features() & IORING_FEAT_MIN_TIMEOUT) {
      min_wait_usec_ = static_cast<unsigned>(std::min<std::chrono::microseconds::rep>(options.min_wait.count(),
                                                                                       1'000'000));
      wait_batch_ = options.wait_batch;
    } else {
      static std::atomic<bool> said{false};  // once per process, not per shard
      if (!said.exchange(true)) {
        RINGSHARD_LOG_WARN("batched waits (min_wait) need IORING_FEAT_MIN_TIMEOUT (Linux 6.12): waking at every "
                           "completion");
      }
    }
  }
}

void Reactor::stage(Completion* linked) {
  backlog_.push_back(Staged{staging_, linked});
}

void Reactor::push_link_timeout(Completion& c) noexcept {
  io_uring_sqe* t = ring_.get_sqe();  // room was checked by acquire_sqe(2)
  uring::prep_link_timeout(t, &c.link_timeout_, 0);
  uring::sqe_set_data64(t, 0);
}

void Reactor::flush_backlog() noexcept {
  while (backlog_head_ < backlog_.size()) {
    Staged& s = backlog_[backlog_head_];
    const unsigned needed = s.linked ? 2 : 1;
    if (ring_.sq_space_left() < needed) return;
    io_uring_sqe* sqe = ring_.get_sqe();
    std::memcpy(sqe, s.sqe.bytes, sizeof(io_uring_sqe));
    if (s.linked) push_link_timeout(*s.linked);
    ++backlog_head_;
  }
  backlog_.clear();
  backlog_head_ = 0;
}

void Reactor::arm(MultishotCompletion& op) {
  op.reactor_ = this;
  op.wanted_ = true;
  op.armed_ = true;
  submit(op, [&op](io_uring_sqe* sqe) { op.prep(sqe); });
}

void MultishotCompletion::complete(const io_uring_cqe& cqe) {
  const bool ended = !(cqe.flags & IORING_CQE_F_MORE);
  if (ended) armed_ = false;
  try {
    on_cqe(cqe);
  } catch (...) {
    // Still wanted: an exception must not silently end a listener's accept.
    if (ended && wanted_ && !armed_ && reactor_) reactor_->arm(*this);
    throw;
  }
  if (ended && wanted_ && !armed_ && reactor_) reactor_->arm(*this);
}

void Reactor::cancel(const Completion& c) {
  submit_detached([&](io_uring_sqe* sqe) { uring::prep_cancel(sqe, &c, 0); });
}

void Reactor::cancel_all() {
  submit_detached([](io_uring_sqe* sqe) { uring::prep_cancel_any(sqe, IORING_ASYNC_CANCEL_ALL); });
}

void Reactor::dispatch(const io_uring_cqe& cqe) {
  if (cqe.user_data == 0) return;  // detached operation, linked timeout or wake-up message
  auto* c = uring::cqe_get_data<Completion>(&cqe);
  if (!(cqe.flags & IORING_CQE_F_MORE)) --in_flight_;
  c->complete(cqe);
}

unsigned Reactor::run_once(bool block) {
  if (!ring_fd_registration_tried_) [[unlikely]] {
    ring_fd_registration_tried_ = true;
    (void)ring_.register_ring_fd();  // optional: without it, enter uses the plain fd
  }
  flush_backlog();
  int ret;
  if (block) {
    stats_->enters.add();
    // Until the nearest timer, if any.
    std::optional<std::chrono::nanoseconds> timeout;
    if (!heap_.empty()) {
      timeout = std::chrono::duration_cast<std::chrono::nanoseconds>(
          std::max(heap_.front()->deadline_ - Clock::now(), Clock::duration::zero()));
    }
    // Batched (wait_batch_ is 1 when off): wait for as many completions as
    // the last turn handled, for at most min_wait. One completion last time
    // (a lone client, light load): a plain wait, no delay.
    const unsigned want = std::min(last_batch_, wait_batch_);
    io_uring_cqe* cqe = nullptr;
    if (want > 1 && ring_.cq_ready() == 0) {
      // The kernel counts only completions that come during the wait: with
      // some already posted it would sleep min_wait for one more. Without a
      // general timeout it would end every wait at min_wait, even idle.
      const auto general = timeout.value_or(std::chrono::hours(24));
      ret = registered_wait() ? wait_registered(want, general, min_wait_usec_)
                              : ring_.submit_and_wait_min_timeout(&cqe, want, general, min_wait_usec_);
    } else if (timeout) {
      ret = registered_wait() ? wait_registered(1, *timeout, 0) : ring_.submit_and_wait_timeout(&cqe, 1, *timeout);
    } else {
      ret = ring_.submit_and_wait(1);
    }
    if (ret == -ETIME || ret == -EAGAIN) ret = 0;
  } else if (ring_.sq_ready() != 0 || ring_.cq_needs_flush()) {
    stats_->enters.add();
    ret = ring_.submit_and_get_events();
  } else {
    ret = 0;
  }
  // -EINTR: a signal; -EBUSY/-EAGAIN: the kernel wants the CQ drained first
  // (or is short of memory). The loop continues: drain, then submit again
  // next turn. Anything else (EBADF, EOPNOTSUPP, EEXIST from a second
  // issuer, EFAULT, ...) will fail again on every turn: report it, after
  // handling what the CQ already holds.
  const bool failed = ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY;
  unsigned handled = dispatch_all();
  if (handled != 0) stats_->completions.add(handled);
  if (block || handled != 0) last_batch_ = std::max(handled, 1u);
  if (!heap_.empty()) handled += fire_timers();
  if (!retired_.empty()) destroy_retired();
  if (failed) [[unlikely]] throw_enter_error(ret, block);
  return handled;
}

int Reactor::wait_registered(unsigned want, std::optional<std::chrono::nanoseconds> timeout,
                             unsigned min_wait_usec) {
  uring::abi::RegWait& w = ring_.wait_region()[0];
  w.min_wait_usec = min_wait_usec;
  if (timeout) {
    const uring::Timespec ts(*timeout);
    w.ts = ts;
    w.flags = uring::abi::reg_wait_ts;
  } else {
    w.flags = 0;
  }
  io_uring_cqe* cqe = nullptr;
  return ring_.submit_and_wait_reg(&cqe, want, 0);
}

Reactor::~Reactor() { destroy_retired(); }

void Reactor::destroy_retired() noexcept {
  // A destructor may retire another object: take the list first.
  while (!retired_.empty()) {
    std::vector<Retired> batch;
    batch.swap(retired_);
    for (const Retired& r : batch) r.destroy(r.obj);
  }
}

void Reactor::throw_enter_error(int ret, bool block) {
  throw std::system_error(-ret, std::system_category(),
                          std::string("io_uring_enter failed (") + (block ? "submit and wait" : "submit") +
                              "): the ring is unusable");
}

// A completion that throws is the last resort (user code is expected to catch
// its own exceptions): log it and go on with the next CQE. The try is entered
// once per batch, not per CQE; for_each_cqe has consumed the CQE that threw.
unsigned Reactor::dispatch_all() {
  unsigned handled = 0;
  const auto each = [this, &handled](const io_uring_cqe& cqe) {
    ++handled;
    dispatch(cqe);
  };
  for (;;) {
    try {
      ring_.for_each_cqe(each);
      return handled;
    } catch (...) {
      log_current_exception("a completion");
    }
  }
}

// ---- timers ---------------------------------------------------------------------

void Reactor::schedule(Timer& t, Clock::time_point deadline) {
  if (t.scheduled()) cancel(t);
  t.deadline_ = deadline;
  t.seq_ = timer_seq_++;
  t.heap_index_ = heap_.size();
  heap_.push_back(&t);
  heap_up(t.heap_index_);
}

void Reactor::cancel(Timer& t) noexcept {
  if (!t.scheduled()) return;
  const std::size_t i = t.heap_index_;
  const std::size_t last = heap_.size() - 1;
  if (i != last) heap_swap(i, last);
  heap_.pop_back();
  t.heap_index_ = Timer::npos;
  if (i < heap_.size()) {
    heap_down(i);
    heap_up(i);
  }
}

unsigned Reactor::fire_timers() {
  const auto now = Clock::now();
  unsigned fired = 0;
  for (;;) {
    try {
      while (!heap_.empty() && heap_.front()->deadline_ <= now) {
        Timer* t = heap_.front();
        cancel(*t);
        ++fired;
        t->fire();  // may reschedule itself or others
      }
      return fired;
    } catch (...) {
      log_current_exception("a timer");  // it is out of the heap already
    }
  }
}

void Reactor::heap_swap(std::size_t a, std::size_t b) noexcept {
  std::swap(heap_[a], heap_[b]);
  heap_[a]->heap_index_ = a;
  heap_[b]->heap_index_ = b;
}

void Reactor::heap_up(std::size_t i) noexcept {
  while (i > 0) {
    const std::size_t parent = (i - 1) / 2;
    if (!heap_less(i, parent)) break;
    heap_swap(i, parent);
    i = parent;
  }
}

void Reactor::heap_down(std::size_t i) noexcept {
  const std::size_t n = heap_.size();
  for (;;) {
    const std::size_t l = 2 * i + 1;
    const std::size_t r = l + 1;
    std::size_t m = i;
    if (l < n && heap_less(l, m)) m = l;
    if (r < n && heap_less(r, m)) m = r;
    if (m == i) return;
    heap_swap(i, m);
    i = m;
  }
}

}  // namespace ringshard
