#include "ringshard/framework/shard.hpp"

#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
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

void Shard::post(Task&& t) {
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

void Shard::enqueue_from(Shard& sender, std::vector<Task>& batch) {
  if (batch.empty()) return;
  inbox_.enqueue_bulk(*sender.tokens_[id_], std::make_move_iterator(batch.begin()), batch.size());
  batch.clear();
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (sleeping_.load(std::memory_order_relaxed) && sleeping_.exchange(false)) wake_from_shard(sender);
}

void Shard::wake_from_shard(Shard& sender) {
  ++sender.stats_.wakeups_sent;
  const int fd = ring_fd_.load(std::memory_order_acquire);
  if (sender.use_msg_ring_ && fd >= 0) {
    // A CQE with user_data 0 lands in our ring: enough to end its wait.
    sender.reactor_->submit_detached([fd](io_uring_sqe* sqe) {
      uring::prep_msg_ring(sqe, fd, 0, 0, 0);
      uring::sqe_add_flags(sqe, IOSQE_CQE_SKIP_SUCCESS);
    });
  } else {
    write_eventfd(wake_fd_);
  }
}

std::string Shard::describe() const {
  return "shard " + std::to_string(id_) + ": sleeping=" + std::to_string(sleeping_.load()) +
         " inbox~" + std::to_string(inbox_.size_approx()) + " run_queue=" + std::to_string(run_queue_.size()) +
         " turns=" + std::to_string(stats_.loop_turns) + " sleeps=" + std::to_string(stats_.sleeps) +
         " tasks=" + std::to_string(stats_.tasks_run) + " wakeups_sent=" + std::to_string(stats_.wakeups_sent) +
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
    for (std::size_t i = 0; i < n; ++i) {
      drain_buffer_[i]();
      drain_buffer_[i].reset();
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
  while (!run_queue_.empty() && ran < budget) {
    run_queue_.run_front();
    ++ran;
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

void Shard::turn() {
  ++stats_.loop_turns;
  if (!stopping_ && stop_requested_.load(std::memory_order_acquire)) {
    // Work posted before stop() was called is delivered before anything stops.
    drain_inbox();
    while (!run_queue_.empty()) run_local(kLocalBudget);
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

void Shard::request_stop() {
  stop_requested_.store(true, std::memory_order_release);
  write_eventfd(wake_fd_);
}

void Shard::begin_stop() {
  stopping_ = true;
  RINGSHARD_LOG_DEBUG("stopping: {} operations in flight", reactor_->in_flight());
  for (auto& slot : extensions_) {
    if (ShardExtension* ext = slot.load(std::memory_order_acquire)) ext->on_shard_stop();
  }
  if (wake_watch_) wake_watch_->stop();
  reactor_->cancel_all();
  reactor_->schedule(stop_deadline_, stop_timeout_);
  cancel_sweep_.shard = this;
  reactor_->schedule(cancel_sweep_, std::chrono::milliseconds(20));
}

void Shard::CancelSweep::fire() {
  Reactor& r = shard->reactor();
  if (r.in_flight() == 0) return;
  r.cancel_all();
  r.schedule(*this, std::chrono::milliseconds(20));
}

void Shard::thread_main(std::chrono::milliseconds stop_timeout) {
  tl_current_ = this;
  set_log_shard(static_cast<int>(id_));
  Runtime& rt = *runtime_;
  try {
    reactor_ = std::make_unique<Reactor>(rt.options_.reactor);
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
    rt.ready_.fetch_add(1);
    rt.ready_.notify_all();
    return;
  }
  rt.ready_.fetch_add(1);
  rt.ready_.notify_all();

  stop_timeout_ = stop_timeout;
  busy_poll_ = rt.options_.busy_poll;
  for (;;) {
    turn();
    if (!stopping_) continue;
    const bool idle = run_queue_.empty() && inbox_.size_approx() == 0 && dirty_outboxes_.empty();
    if (idle && reactor_->in_flight() == 0) break;
    if (stop_deadline_.expired) {
      RINGSHARD_LOG_WARN("stop timeout: leaving {} operations in flight and {} tasks", reactor_->in_flight(),
                         run_queue_.size());
      break;
    }
  }
  reactor_->cancel(stop_deadline_);
  reactor_->cancel(cancel_sweep_);
  // Tasks posted from now on stay in the inbox and are destroyed with the
  // shard; extensions live until then too, since other threads may still
  // reach them (for example to reserve an actor slot).
  RINGSHARD_LOG_DEBUG("stopped after {} turns, {} tasks", stats_.loop_turns, stats_.tasks_run);
}

// ---- Runtime ---------------------------------------------------------------------

unsigned shards_from_args(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--shards" && i + 1 < argc) return static_cast<unsigned>(std::stoul(argv[i + 1]));
    if (arg.rfind("--shards=", 0) == 0) return static_cast<unsigned>(std::stoul(arg.substr(9)));
  }
  return 0;
}

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
  if (signal_fd_ >= 0) ::close(signal_fd_);
}

void Runtime::start() {
  if (started_) return;
  started_ = true;
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
        shard->thread_main(options_.stop_timeout);
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
  BlockStopSignals block;
  start();
  const int sfd = signal_fd_;
  while (!stop_requested_.load()) {
    pollfd fds[2] = {{stop_fd_, POLLIN, 0}, {sfd, POLLIN, 0}};
    const int n = ::poll(fds, sfd >= 0 ? 2 : 1, 1000);
    if (n > 0 && sfd >= 0 && (fds[1].revents & POLLIN)) {
      signalfd_siginfo info{};
      if (::read(sfd, &info, sizeof info) == sizeof info) {
        RINGSHARD_LOG_INFO("{} received, stopping", info.ssi_signo == SIGINT ? "SIGINT" : "SIGTERM");
        stop();
      }
    }
  }
  wait();
  RINGSHARD_LOG_INFO("all shards stopped");
}

}  // namespace ringshard
