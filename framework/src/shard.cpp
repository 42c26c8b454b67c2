#include "ringshard/framework/shard.hpp"
#include "ringshard/framework/task.hpp"

#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <system_error>

#include "ringshard/framework/log.hpp"

// GCC 12 reports a bogus -Wstringop-overflow deep inside moodycamel's
// enqueue_bulk once it is inlined here (an atomic load it mistakes for a write).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wstringop-overflow"
#endif

namespace ringshard {


namespace {

constexpr std::size_t kOutboxFlushAt = 256;     // a full outbox goes out before the turn ends
constexpr std::size_t kDrainBatch = 256;        // tasks taken from the inbox per bulk dequeue
constexpr std::size_t kLocalBudget = 16384;     // local tasks per turn before I/O gets a look in
constexpr unsigned kMaxDrainRounds = 16;

void write_eventfd(int fd) noexcept {
  const std::uint64_t one = 1;
  // A full counter (EAGAIN) means a wake-up is already pending: nothing to do.
  [[maybe_unused]] ssize_t n = ::write(fd, &one, sizeof one);
}

std::vector<int> allowed_cpus() {
  std::vector<int> cpus;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) == 0) {
    for (int c = 0; c < CPU_SETSIZE; ++c) {
      if (CPU_ISSET(c, &set)) cpus.push_back(c);
    }
  }
  if (cpus.empty()) {
    const long n = ::sysconf(_SC_NPROCESSORS_ONLN);
    for (long c = 0; c < (n > 0 ? n : 1); ++c) cpus.push_back(static_cast<int>(c));
  }
  return cpus;
}

// Blocks SIGINT and SIGTERM in the calling thread for its lifetime, restoring
// the previous mask after.
class BlockStopSignals {
 public:
  BlockStopSignals() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    ::pthread_sigmask(SIG_BLOCK, &set, &old_);
  }
  ~BlockStopSignals() { ::pthread_sigmask(SIG_SETMASK, &old_, nullptr); }
  BlockStopSignals(const BlockStopSignals&) = delete;
  BlockStopSignals& operator=(const BlockStopSignals&) = delete;

 private:
  sigset_t old_;
};

}  // namespace

// Keeps a multishot poll armed on the shard's eventfd, the wake-up path for
// threads that are not shards (and for shards when MSG_RING is missing).
class Shard::WakeWatch final : public MultishotCompletion {
 public:
  explicit WakeWatch(int fd) : fd_(fd) {}
  void prep(io_uring_sqe* sqe) override { uring::prep_poll_multishot(sqe, fd_, POLLIN); }
  void on_cqe(const io_uring_cqe& cqe) override {
    if (cqe.res > 0) {
      std::uint64_t value;
      [[maybe_unused]] ssize_t n = ::read(fd_, &value, sizeof value);
    }
  }

 private:
  int fd_;
};

unsigned Shard::register_extension_key() noexcept {
  static std::atomic<unsigned> next{0};
  const unsigned key = next.fetch_add(1, std::memory_order_relaxed);
  if (key >= kMaxExtensions) std::abort();  // a programming error: raise kMaxExtensions
  return key;
}

void Shard::destroy_extensions() noexcept {
  for (auto& slot : extensions_) delete slot.exchange(nullptr);
}

Shard::Shard(Runtime& runtime, unsigned id)
    : runtime_(&runtime), id_(id), inbox_(kDrainBatch * 4), inbox_consumer_(inbox_) {
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) throw std::system_error(errno, std::generic_category(), "eventfd for shard wake-ups");
  drain_buffer_.resize(kDrainBatch);
}

Shard::~Shard() {
  destroy_extensions();
  wake_watch_.reset();
  reactor_.reset();
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void Shard::post(Job&& t) {
  Shard* sender = tl_current_;
  if (sender == this) {
    run_queue_.push_back(std::move(t));
    return;
  }
  if (sender != nullptr && &sender->runtime() == runtime_) {
    auto& box = sender->outboxes_[id_];
    if (box.empty()) sender->dirty_outboxes_.push_back(id_);
    box.push_back(std::move(t));
    if (box.size() >= kOutboxFlushAt) {
      enqueue_from(*sender, box);
    }
    return;
  }
  inbox_.enqueue(std::move(t));
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (sleeping_.load(std::memory_order_relaxed) && sleeping_.exchange(false)) wake_external();
}

void Shard::enqueue_from(Shard& sender, std::vector<Job>& batch) {
  if (batch.empty()) return;
  inbox_.enqueue_bulk(*sender.tokens_[id_], std::make_move_iterator(batch.begin()), batch.size());
  batch.clear();
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (sleeping_.load(std::memory_order_relaxed) && sleeping_.exchange(false)) wake_from_shard(sender);
}

void Shard::wake_from_shard(Shard& sender) {
  const int fd = ring_fd_.load(std::memory_order_acquire);
  if (sender.use_msg_ring_ && fd >= 0) {
    ++sender.stats_.wakeups_msg_ring;
    // A CQE with user_data 0 lands in our ring: enough to end its wait.
    sender.reactor_->submit_detached([fd](io_uring_sqe* sqe) {
      uring::prep_msg_ring(sqe, fd, 0, 0, 0);
      uring::sqe_add_flags(sqe, IOSQE_CQE_SKIP_SUCCESS);
    });
  } else {
    ++sender.stats_.wakeups_eventfd;
    write_eventfd(wake_fd_);
  }
}

std::size_t Shard::shrink_run_queue() noexcept {
  try {
    return run_queue_.shrink();
  } catch (const std::bad_alloc&) {
    return 0;  // the bigger ring stays
  }
}

std::string Shard::describe() const {
  return "shard " + std::to_string(id_) + ": sleeping=" + std::to_string(sleeping_.load()) +
         " inbox~" + std::to_string(inbox_.size_approx()) + " run_queue=" + std::to_string(run_queue_.size()) +
         " turns=" + std::to_string(stats_.loop_turns.get()) + " sleeps=" + std::to_string(stats_.sleeps.get()) +
         " tasks=" + std::to_string(stats_.tasks_run.get()) +
         " wakeups_sent=" + std::to_string(stats_.wakeups_msg_ring.get() + stats_.wakeups_eventfd.get()) +
         " in_flight=" + std::to_string(reactor_ ? reactor_->in_flight() : 0);
}

void Shard::wake_external() { write_eventfd(wake_fd_); }

void Shard::flush_outboxes() {
  for (unsigned target : dirty_outboxes_) {
    runtime_->shards_[target]->enqueue_from(*this, outboxes_[target]);
  }
  dirty_outboxes_.clear();
}

unsigned Shard::drain_inbox() {
  unsigned total = 0;
  for (unsigned round = 0; round < kMaxDrainRounds; ++round) {
    const std::size_t n = inbox_.try_dequeue_bulk(inbox_consumer_, drain_buffer_.begin(), kDrainBatch);
    // A task that throws is the last resort (user code catches its own):
    // logged, and the batch resumes after it. The try costs nothing until
    // something throws; it is entered again only after a catch.
    std::size_t i = 0;
    for (;;) {
      try {
        for (; i < n; ++i) {
          if (out_of_time()) [[unlikely]] {
            // A stop's deadline passed before it began: the rest of the
            // batch is set aside, not run.
            const auto ran = total + static_cast<unsigned>(i);
            for (; i < n; ++i) set_aside_.push_back(std::move(drain_buffer_[i]));
            stats_.remote_tasks_received += total + static_cast<unsigned>(n);
            stats_.tasks_run += ran;
            return ran;
          }
          drain_buffer_[i]();
          drain_buffer_[i].reset();
        }
        break;
      } catch (...) {
        drain_buffer_[i].reset();
        ++i;
        log_current_exception("a task");
      }
    }
    total += static_cast<unsigned>(n);
    if (n < kDrainBatch) break;
  }
  stats_.remote_tasks_received += total;
  stats_.tasks_run += total;
  return total;
}

unsigned Shard::run_local(std::size_t budget) {
  unsigned ran = 0;
  for (;;) {
    try {
      while (!run_queue_.empty() && ran < budget) {
        if (out_of_time()) [[unlikely]] break;
        ++ran;
        run_queue_.run_front();  // the task is out of the queue before it runs
      }
      break;
    } catch (...) {
      log_current_exception("a task");  // as in drain_inbox
    }
  }
  stats_.tasks_run += ran;
  return ran;
}

bool Shard::can_sleep() noexcept {
  sleeping_.store(true, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (inbox_.size_approx() != 0 || stop_requested_.load(std::memory_order_relaxed)) {
    sleeping_.store(false, std::memory_order_relaxed);
    return false;
  }
  return true;
}

bool Shard::past_stop_deadline() const noexcept { return Clock::now() >= stop_deadline(); }

bool Shard::out_of_time() const noexcept {
  return stop_requested_.load(std::memory_order_relaxed) && !stopping_ && past_stop_deadline();
}

Clock::time_point Shard::stop_deadline() const noexcept {
  const Clock::rep d = runtime_->stop_deadline_.load(std::memory_order_acquire);
  return d == 0 ? Clock::time_point::max() : Clock::time_point(Clock::duration(d));
}

void Shard::turn() {
  ++stats_.loop_turns;
  if (!stopping_ && stop_requested_.load(std::memory_order_acquire) && stop_may_begin()) {
    // Work posted before stop() was called is delivered before anything
    // stops, as long as the stop's deadline allows: stop_timeout bounds the
    // whole stop, the tasks queued included (both task loops stop at the
    // deadline once a stop is asked for).
    drain_inbox();
    while (!run_queue_.empty() && !past_stop_deadline() && !runtime_->hurry_.load(std::memory_order_relaxed)) {
      run_local(kLocalBudget);
    }
    // Out of time: the work still queued is set aside (destroyed with the
    // shard, never run); what the stop itself posts from here on (cleanup
    // after cancellations) runs.
    while (!run_queue_.empty()) set_aside_.push_back(run_queue_.pop_front());
    begin_stop();
  }
  drain_inbox();
  run_local(kLocalBudget);
  flush_outboxes();
  const bool block = !busy_poll_ && run_queue_.empty() && can_sleep();
  if (block) ++stats_.sleeps;
  reactor_->run_once(block);
  if (block) sleeping_.store(false, std::memory_order_relaxed);
}

// ---- the drain ---------------------------------------------------------------
//
// From the stop request the shard runs on as usual while any shard holds the
// stop (the runtime counts the shards that have not begun their drain and the
// draining shards with holds), until the drain deadline; then on_drain_end,
// then the shard's own holds until the stop deadline, then the stop.

void Shard::notify_extensions(void (ShardExtension::*hook)(), const char* what) noexcept {
  for (auto& slot : extensions_) {
    if (ShardExtension* ext = slot.load(std::memory_order_acquire)) {
      try {
        (ext->*hook)();
      } catch (...) {
        log_current_exception(what);
      }
    }
  }
}

bool Shard::stop_may_begin() {
  if (!drain_started_) start_drain();
  if (!drain_ended_ && drain_done()) end_drain();
  return drain_ended_ &&
         (stop_holds_ == 0 || past_stop_deadline() || runtime_->hurry_.load(std::memory_order_relaxed));
}

Clock::time_point Shard::drain_deadline() const noexcept {
  return stop_deadline() - runtime_->options_.stop_timeout / 4;
}

bool Shard::drain_done() const noexcept {
  if (runtime_->hurry_.load(std::memory_order_relaxed) || Clock::now() >= drain_deadline()) return true;
  return runtime_->drain_pending_.load(std::memory_order_acquire) == 0 &&
         runtime_->held_shards_.load(std::memory_order_acquire) == 0;
}

void Shard::start_drain() {
  drain_started_ = true;
  notify_extensions(&ShardExtension::on_stop_requested, "on_stop_requested");
  // Holds counted before this shard counts as begun: another shard sees
  // either this one pending or its holds.
  if (stop_holds_ > 0 && !in_held_) {
    in_held_ = true;
    runtime_->held_shards_.fetch_add(1, std::memory_order_acq_rel);
  }
  if (!drain_counted_) {
    drain_counted_ = true;
    runtime_->drain_pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
  drain_tick_.shard = this;
  reactor_->schedule(drain_tick_, std::chrono::milliseconds(5));
}

void Shard::end_drain() {
  drain_ended_ = true;
  if (in_held_) {
    in_held_ = false;
    runtime_->held_shards_.fetch_sub(1, std::memory_order_acq_rel);
  }
  notify_extensions(&ShardExtension::on_drain_end, "on_drain_end");
}

void Shard::leave_drain() noexcept {
  if (!drain_counted_) {
    drain_counted_ = true;
    runtime_->drain_pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
  if (in_held_) {
    in_held_ = false;
    runtime_->held_shards_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

void Shard::DrainTick::fire() {
  // The turn after this one looks at the drain again; tick until the stop.
  if (!shard->stopping_) shard->reactor().schedule(*this, std::chrono::milliseconds(5));
}

void Shard::hold_stop() noexcept {
  if (stop_holds_++ == 0 && drain_started_ && !drain_ended_ && !in_held_) {
    in_held_ = true;
    runtime_->held_shards_.fetch_add(1, std::memory_order_acq_rel);
  }
}

void Shard::release_stop() noexcept {
  if (--stop_holds_ == 0 && in_held_) {
    in_held_ = false;
    runtime_->held_shards_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

void Shard::request_stop() {
  stop_requested_.store(true, std::memory_order_release);
  write_eventfd(wake_fd_);
}

void Shard::begin_stop() {
  stopping_ = true;
  leave_drain();
  reactor_->cancel(drain_tick_);
  RINGSHARD_LOG_DEBUG("stopping: {} operations in flight", reactor_->in_flight());
  for (auto& slot : extensions_) {
    if (ShardExtension* ext = slot.load(std::memory_order_acquire)) ext->on_shard_stop();
  }
  stop_all_tasks();  // coroutines: frames destroyed, or their I/O cancelled first
  if (wake_watch_) wake_watch_->stop();
  reactor_->cancel_all();
  reactor_->schedule(stop_deadline_, stop_deadline());  // counted from the request, not from here
  cancel_sweep_.shard = this;
  reactor_->schedule(cancel_sweep_, std::chrono::milliseconds(20));
}

void Shard::CancelSweep::fire() {
  Reactor& r = shard->reactor();
  if (r.in_flight() == 0) return;
  r.cancel_all();
  r.schedule(*this, std::chrono::milliseconds(20));
}

void Shard::thread_main() {
  tl_current_ = this;
  set_log_shard(static_cast<int>(id_));
  Runtime& rt = *runtime_;
  try {
    reactor_ = std::make_unique<Reactor>(rt.options_.reactor);
    reactor_->count_into(stats_.ring);
    use_msg_ring_ = !rt.options_.eventfd_wakeups && reactor_->ring().probe().opcode_supported(IORING_OP_MSG_RING);
    wake_watch_ = std::make_unique<WakeWatch>(wake_fd_);
    reactor_->arm(*wake_watch_);
    ring_fd_.store(reactor_->ring().fd(), std::memory_order_release);
    if (id_ == 0) {
      RINGSHARD_LOG_INFO("ring mode {}, cross-shard wake-ups by {}", reactor_->mode(),
                         use_msg_ring_ ? "MSG_RING" : "eventfd");
    }
  } catch (const std::exception& e) {
    RINGSHARD_LOG_ERROR("shard failed to start: {}", e.what());
    rt.failed_.store(true);
    leave_drain();
    rt.ready_.fetch_add(1);
    rt.ready_.notify_all();
    rt.shard_exited();
    return;
  }
  rt.ready_.fetch_add(1);
  rt.ready_.notify_all();

  busy_poll_ = rt.options_.busy_poll;
  bool failed = false;
  for (;;) {
    try {
      turn();
    } catch (...) {
      // Tasks, completions and timers catch their own exceptions: what gets
      // here is the ring failing (Reactor::run_once), or an allocation
      // failure in the loop itself. Neither goes away by retrying.
      failed = true;
      fail(std::current_exception());
      break;
    }
    if (!stopping_) continue;
    const bool idle = run_queue_.empty() && inbox_.size_approx() == 0 && dirty_outboxes_.empty();
    if (idle && reactor_->in_flight() == 0) break;
    if (stop_deadline_.expired) {
      RINGSHARD_LOG_WARN("stop timeout: {} operations in flight and {} tasks left: cancelling", reactor_->in_flight(),
                         run_queue_.size());
      break;
    }
    if (rt.hurry_.load(std::memory_order_relaxed)) {
      RINGSHARD_LOG_WARN("stop cut short: {} operations in flight and {} tasks left: cancelling", reactor_->in_flight(),
                         run_queue_.size());
      break;
    }
  }
  if (failed) {
    // The ring cannot cancel anything any more: extensions still get their
    // on_shard_stop (actors' on_stop), then the shard ends.
    if (!stopping_) {
      stopping_ = true;
      notify_extensions(&ShardExtension::on_shard_stop, "on_shard_stop");
      stop_all_tasks();
    }
  }
  if (!failed && (reactor_->in_flight() > 0 || !run_queue_.empty())) {
    // The stop gave up waiting (deadline, or a second signal), but memory the
    // kernel holds for an operation (a socket's send queue, a kept buffer)
    // is released by that operation's final CQE, and some completions post
    // their cleanup as a task (an actor's I/O result, for instance; objects that
    // end themselves at their final CQE use Reactor::retire instead).
    // Cancel everything once more and collect the cancellations, which take
    // microseconds, running the tasks they post, for at most 100 ms; what is
    // still in flight after that (uncancellable file I/O) is left to the
    // ring's teardown.
    StopDeadline last;
    reactor_->cancel_all();
    reactor_->schedule(last, std::chrono::milliseconds(100));
    try {
      for (;;) {
        run_local(kLocalBudget);
        if (reactor_->in_flight() == 0 || last.expired) break;
        reactor_->run_once(true);
      }
    } catch (...) {
      log_current_exception("the last collection of cancelled operations");
    }
    reactor_->cancel(last);
    if (reactor_->in_flight() > 0) RINGSHARD_LOG_WARN("{} operations still in flight at exit", reactor_->in_flight());
  }
  reactor_->cancel(stop_deadline_);
  reactor_->cancel(cancel_sweep_);
  reactor_->cancel(drain_tick_);
  leave_drain();
  // Coroutines still there (one whose I/O never completed, or started by a
  // task that ran in the last collection) go now; the ring is not driven
  // any more.
  TaskRoot::abandon_all();
  // Tasks posted from now on stay in the inbox and are destroyed with the
  // shard; extensions live until then too, since other threads may still
  // reach them (for example to reserve an actor slot).
  RINGSHARD_LOG_DEBUG("stopped after {} turns, {} tasks", stats_.loop_turns.get(), stats_.tasks_run.get());
  rt.shard_exited();
}

void Shard::fail(std::exception_ptr error) {
  std::string what = "unknown error";
  int code = 0;
  try {
    std::rethrow_exception(error);
  } catch (const std::system_error& e) {
    what = e.what();
    code = e.code().value();
  } catch (const std::exception& e) {
    what = e.what();
  } catch (...) {
  }
  RINGSHARD_LOG_ERROR("shard {} failed, stopping the runtime: {}", id_, what);
  if (code != 0) {
    // system_error's what() ends with ": <strerror>", which the new one adds again.
    const std::string suffix = ": " + std::system_category().message(code);
    if (what.size() > suffix.size() && what.compare(what.size() - suffix.size(), suffix.size(), suffix) == 0) {
      what.resize(what.size() - suffix.size());
    }
  }
  const std::string context = "ringshard shard " + std::to_string(id_) + ": ";
  std::exception_ptr reported;
  try {
    if (code != 0) {
      throw std::system_error(code, std::system_category(), context + what);
    }
    throw std::runtime_error(context + what);
  } catch (...) {
    reported = std::current_exception();
  }
  runtime_->record_failure(std::move(reported));
  runtime_->stop();
}

// ---- Runtime ---------------------------------------------------------------------

namespace {
std::atomic<Runtime*> g_last_started{nullptr};
}  // namespace

Runtime* Runtime::current() noexcept {
  if (Shard* s = Shard::current()) return &s->runtime();
  return g_last_started.load(std::memory_order_acquire);
}

Runtime::Runtime(const RuntimeOptions& options) : options_(options), cpus_(allowed_cpus()) {
  const unsigned n = options.shards ? options.shards : static_cast<unsigned>(cpus_.size());
  shards_.reserve(n);
  for (unsigned i = 0; i < n; ++i) shards_.push_back(std::make_unique<Shard>(*this, i));
  for (auto& sender : shards_) {
    sender->outboxes_.resize(n);
    for (auto& box : sender->outboxes_) box.reserve(kOutboxFlushAt);
    sender->tokens_.reserve(n);
    for (auto& target : shards_) {
      sender->tokens_.push_back(std::make_unique<moodycamel::ProducerToken>(target->inbox_));
    }
  }
  stop_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (stop_fd_ < 0) throw std::system_error(errno, std::generic_category(), "eventfd for Runtime::run");
  // Created up front so that the process's descriptors do not change once
  // the runtime is serving. Reads see SIGINT/SIGTERM only while run() blocks them.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  signal_fd_ = ::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
}

Runtime::~Runtime() {
  stop();
  wait();
  Runtime* self = this;
  g_last_started.compare_exchange_strong(self, nullptr);
  shards_.clear();
  if (stop_fd_ >= 0) ::close(stop_fd_);
  if (signals_taken_) {
    // SIGINT/SIGTERM have been blocked in run()'s thread since run() began.
    // One that arrived since (a second Ctrl-C, timeout(1)'s second TERM)
    // asked for what is happening anyway: the process is stopping. Consume
    // it, and if any signal asked for this stop, leave them blocked: a
    // pending one then dies with the process instead of killing it with
    // status 143 on the way out. Otherwise run() was ended by stop(), and
    // the thread gets its mask back.
    signals_received_ += drain_signals();
    if (signals_received_ == 0 && ::pthread_equal(::pthread_self(), signals_thread_)) {
      ::pthread_sigmask(SIG_SETMASK, &signals_old_mask_, nullptr);
    }
  }
  if (signal_fd_ >= 0) ::close(signal_fd_);
}

unsigned Runtime::drain_signals() noexcept {
  unsigned n = 0;
  signalfd_siginfo info{};
  while (signal_fd_ >= 0 && ::read(signal_fd_, &info, sizeof info) == sizeof info) ++n;
  return n;
}

void Runtime::record_failure(std::exception_ptr error) noexcept {
  std::lock_guard lock(failure_mutex_);
  if (!failure_) failure_ = std::move(error);
}

std::exception_ptr Runtime::failure() const {
  std::lock_guard lock(failure_mutex_);
  return failure_;
}

void Runtime::shard_exited() noexcept {
  exited_.fetch_add(1, std::memory_order_acq_rel);
  if (stop_fd_ >= 0) write_eventfd(stop_fd_);
}

void Runtime::hurry() noexcept {
  hurry_.store(true, std::memory_order_relaxed);
  stop();
}

void Runtime::start() {
  if (started_) return;
  started_ = true;
  drain_pending_.store(static_cast<unsigned>(shards_.size()), std::memory_order_relaxed);
  {
    // Shard threads inherit a mask with SIGINT/SIGTERM blocked, so the signals
    // reach run() (signalfd) instead of killing a shard.
    BlockStopSignals block;
    for (auto& s : shards_) {
      Shard* shard = s.get();
      shard->thread_ = std::thread([this, shard] {
        if (options_.pin) {
          cpu_set_t set;
          CPU_ZERO(&set);
          CPU_SET(cpus_[shard->id_ % cpus_.size()], &set);
          ::pthread_setaffinity_np(::pthread_self(), sizeof set, &set);
        }
        shard->thread_main();
      });
    }
  }
  for (unsigned seen = ready_.load(); seen < shards_.size(); seen = ready_.load()) ready_.wait(seen);
  if (failed_.load()) {
    stop();
    wait();
    throw std::runtime_error("ringshard: a shard could not set up its ring (see the log)");
  }
  g_last_started.store(this, std::memory_order_release);
  RINGSHARD_LOG_INFO("{} shards running", shards_.size());
}

void Runtime::stop() noexcept {
  // The first request sets the deadline every shard stops by.
  Clock::rep none = 0;
  const Clock::rep deadline = (Clock::now() + options_.stop_timeout).time_since_epoch().count();
  stop_deadline_.compare_exchange_strong(none, deadline == 0 ? 1 : deadline, std::memory_order_acq_rel);
  stop_requested_.store(true);
  for (auto& s : shards_) s->request_stop();
  if (stop_fd_ >= 0) write_eventfd(stop_fd_);
}

void Runtime::wait() {
  if (!started_ || joined_) return;
  for (auto& s : shards_) {
    if (s->thread_.joinable()) s->thread_.join();
  }
  joined_ = true;
}

void Runtime::run() {
  // A process started in the background by a shell without job control has
  // SIGINT ignored, and an ignored signal never reaches a signalfd: run()
  // promises to stop on SIGINT/SIGTERM, so it takes them back.
  ::signal(SIGINT, SIG_DFL);
  ::signal(SIGTERM, SIG_DFL);
  // Blocked from here until the runtime is destroyed (see ~Runtime), not
  // only while run() runs: a signal that arrives while the shards stop, or
  // after run() returns, must not kill the process half-way through its
  // orderly exit.
  if (!signals_taken_) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    ::pthread_sigmask(SIG_BLOCK, &set, &signals_old_mask_);
    signals_thread_ = ::pthread_self();
    signals_taken_ = true;
  }
  start();
  const int sfd = signal_fd_;
  const auto shards = static_cast<unsigned>(shards_.size());
  // Until every shard has ended: the first signal stops the runtime, one
  // during the stop (a second signal, or one after stop()) cuts it short.
  while (exited_.load(std::memory_order_acquire) < shards) {
    pollfd fds[2] = {{stop_fd_, POLLIN, 0}, {sfd, POLLIN, 0}};
    const int n = ::poll(fds, sfd >= 0 ? 2 : 1, 1000);
    if (n <= 0) continue;
    if (fds[0].revents & POLLIN) {
      std::uint64_t value;
      [[maybe_unused]] ssize_t r = ::read(stop_fd_, &value, sizeof value);
    }
    if (sfd >= 0 && (fds[1].revents & POLLIN)) {
      signalfd_siginfo info{};
      while (::read(sfd, &info, sizeof info) == sizeof info) {
        const char* name = info.ssi_signo == SIGINT ? "SIGINT" : "SIGTERM";
        ++signals_received_;
        if (!stop_requested_.load()) {
          RINGSHARD_LOG_INFO("{} received, stopping", name);
          stop();
        } else if (!hurry_.load()) {
          RINGSHARD_LOG_WARN("{} received while stopping: no more waiting for operations in flight", name);
          hurry();
        }
      }
    }
  }
  wait();
  if (std::exception_ptr error = failure()) {
    RINGSHARD_LOG_ERROR("all shards stopped, after a failure");
    std::rethrow_exception(error);
  }
  RINGSHARD_LOG_INFO("all shards stopped");
}

}  // namespace ringshard
