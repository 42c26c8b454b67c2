// What the engine does when something goes wrong underneath it: io_uring_enter
// errors (retried or fatal), and exceptions from tasks, completions and timers
// (logged once, the shard keeps running).
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spdlog/sinks/ostream_sink.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>

#include "ringshard/framework/log.hpp"
#include "ringshard/framework/reactor.hpp"
#include "ringshard/framework/shard.hpp"
#include "runtime_support.hpp"
#include "support.hpp"

using namespace ringshard;
using namespace std::chrono_literals;
using ringshard::test::opts;
using test::eventually;
using test::Fd;

namespace {


// Makes the ring's fd name /dev/null instead of the io_uring, as a program that
// closes the wrong descriptor would: the ring itself lives on through its
// mappings, but every io_uring_enter now fails with EOPNOTSUPP. Must run on the
// thread that drives the ring (the ring fd registration belongs to it).
void break_ring_fd(uring::Ring& ring) {
  (void)ring.unregister_ring_fd();
  Fd null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  REQUIRE(null.get() >= 0);
  REQUIRE(::dup2(null.get(), ring.fd()) == ring.fd());
}

// Collects what ringshard::logger() writes while it lives (attach it before
// starting shards, detach after joining them: spdlog's sink list is not
// meant to change while other threads log).
class LogCapture {
 public:
  LogCapture() : sink_(std::make_shared<spdlog::sinks::ostream_sink_mt>(out_)) {
    logger().sinks().push_back(sink_);
  }
  ~LogCapture() {
    auto& sinks = logger().sinks();
    sinks.erase(std::remove(sinks.begin(), sinks.end(), sink_), sinks.end());
  }
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;
  [[nodiscard]] std::string text() {
    sink_->flush();
    return out_.str();
  }
  [[nodiscard]] std::size_t count(const std::string& needle) {
    const std::string t = text();
    std::size_t n = 0;
    for (auto pos = t.find(needle); pos != std::string::npos; pos = t.find(needle, pos + 1)) ++n;
    return n;
  }

 private:
  std::ostringstream out_;
  std::shared_ptr<spdlog::sinks::ostream_sink_mt> sink_;
};

struct Recorder final : Completion {
  int calls = 0;
  int res = 1;
  void complete(const io_uring_cqe& cqe) override {
    ++calls;
    res = cqe.res;
  }
};

struct Thrower final : Completion {
  int calls = 0;
  void complete(const io_uring_cqe&) override {
    ++calls;
    throw std::runtime_error("completion exploded");
  }
};

extern "C" void ignore_signal(int) {}

}  // namespace

// ---- io_uring_enter errors ------------------------------------------------------

TEST_CASE("an io_uring_enter error other than EINTR/EAGAIN/EBUSY makes run_once throw std::system_error") {
  Reactor r;
  r.run_once(false);  // the first turn registers the ring fd
  break_ring_fd(r.ring());
  Recorder nop;
  r.submit(nop, [](io_uring_sqe* sqe) { uring::prep_nop(sqe); });
  bool thrown = false;
  try {
    r.run_once(true);
  } catch (const std::system_error& e) {
    thrown = true;
    CHECK(e.code().value() == EOPNOTSUPP);
    CHECK(std::string(e.what()).find("io_uring_enter") != std::string::npos);
  }
  CHECK(thrown);
}

TEST_CASE("an io_uring_enter interrupted by a signal (EINTR) is retried on the next turn") {
  struct sigaction sa{};
  sa.sa_handler = ignore_signal;  // no SA_RESTART: the enter returns -EINTR
  sigemptyset(&sa.sa_mask);
  struct sigaction old{};
  REQUIRE(::sigaction(SIGUSR1, &sa, &old) == 0);
  std::atomic<bool> waiting{false};
  std::atomic<bool> woke{false};
  std::atomic<int> after{-1};
  std::string error;
  std::thread loop([&] {
    try {
      Reactor r;  // created here: SINGLE_ISSUER rings belong to their thread
      waiting.store(true);
      r.run_once(true);  // nothing in flight, no timer: only a signal ends this wait
      woke.store(true);
      Recorder nop;
      r.submit(nop, [](io_uring_sqe* sqe) { uring::prep_nop(sqe); });
      const auto end = Clock::now() + 5s;
      while (nop.calls == 0 && Clock::now() < end) r.run_once(true);
      after.store(nop.calls == 1 && nop.res == 0 ? 1 : 0);
    } catch (const std::exception& e) {
      error = e.what();
      woke.store(true);
      after.store(0);
    }
  });
  REQUIRE(eventually([&] { return waiting.load(); }, 5s));
  // Until the loop has left its wait: a signal sent before it sleeps is lost.
  const auto end = Clock::now() + 10s;
  while (!woke.load() && Clock::now() < end) {
    ::pthread_kill(loop.native_handle(), SIGUSR1);
    std::this_thread::sleep_for(10ms);
  }
  const bool left_wait = woke.load();
  if (!left_wait) ::pthread_kill(loop.native_handle(), SIGKILL);  // cannot happen: fail loudly
  loop.join();
  ::sigaction(SIGUSR1, &old, nullptr);
  CHECK(error == "");
  CHECK(after.load() == 1);
}

TEST_CASE("a shard whose ring fails stops the runtime, and run() throws std::system_error naming the errno and the shard") {
  LogCapture log;
  Runtime rt(opts(2));
  rt.start();
  rt.post(1, [] { break_ring_fd(Shard::current()->reactor().ring()); });
  std::exception_ptr error;
  std::atomic<bool> returned{false};
  std::thread runner([&] {
    try {
      rt.run();
    } catch (...) {
      error = std::current_exception();
    }
    returned.store(true);
  });
  // Today's stop timeout is 2 s; a shard that spins on a broken ring never
  // stops the runtime by itself, so give up (and fail) after 10 s.
  const bool stopped_by_itself = eventually([&] { return returned.load(); }, 10s);
  rt.stop();
  runner.join();
  CHECK(stopped_by_itself);
  REQUIRE(error);
  try {
    std::rethrow_exception(error);
  } catch (const std::system_error& e) {
    CHECK(e.code().value() == EOPNOTSUPP);
    const std::string what = e.what();
    CHECK(what.find("shard 1") != std::string::npos);
    CHECK(what.find("io_uring_enter") != std::string::npos);
  } catch (...) {
    FAIL("run() threw something else than std::system_error");
  }
  CHECK(rt.failure() != nullptr);
  CHECK(log.count("io_uring_enter") == 1);  // logged once, never a stream of lines
}

TEST_CASE("start()/wait() users find a fatal ring error in failure(), and wait() itself does not throw") {
  Runtime rt(opts(1));
  rt.start();
  CHECK(rt.failure() == nullptr);
  rt.post(0, [] { break_ring_fd(Shard::current()->reactor().ring()); });
  REQUIRE(eventually([&] { return rt.failure() != nullptr; }, 10s));
  rt.stop();
  CHECK_NOTHROW(rt.wait());
  CHECK_THROWS_AS(std::rethrow_exception(rt.failure()), std::system_error);
}

// ---- exceptions from user code ------------------------------------------------

TEST_CASE("a posted task that throws is logged once and the shard keeps running, and the runtime stops cleanly") {
  LogCapture log;
  std::atomic<int> ran{0};
  Runtime rt(opts(2));
  rt.start();
  // From a thread that is not a shard (the inbox path)...
  rt.post(1, [] { throw std::runtime_error("task exploded 1"); });
  rt.post(1, [&] { ran.fetch_add(1); });
  // ...from the shard itself (the run queue), several in one batch...
  rt.post(1, [&] {
    Shard& self = *Shard::current();
    self.post([] { throw std::runtime_error("task exploded 2"); });
    self.post([&] { ran.fetch_add(1); });
    self.post([] { throw 42; });  // not even a std::exception
    self.post([&] { ran.fetch_add(1); });
  });
  // ...and from another shard (outbox, bulk enqueue, bulk dequeue).
  rt.post(0, [&] {
    for (int i = 0; i < 10; ++i) {
      if (i % 3 == 0) {
        rt.post(1, [] { throw std::runtime_error("task exploded 3"); });
      } else {
        rt.post(1, [&] { ran.fetch_add(1); });
      }
    }
  });
  REQUIRE(eventually([&] { return ran.load() == 1 + 2 + 6; }, 10s));
  // The shard still does I/O.
  std::atomic<bool> io_done{false};
  struct Nop final : Completion {
    std::atomic<bool>* done;
    void complete(const io_uring_cqe&) override { done->store(true); }
  } nop;
  nop.done = &io_done;
  rt.post(1, [&] { Shard::current()->reactor().submit(nop, [](io_uring_sqe* sqe) { uring::prep_nop(sqe); }); });
  REQUIRE(eventually([&] { return io_done.load(); }, 10s));
  const auto start = Clock::now();
  rt.stop();
  rt.wait();
  CHECK(Clock::now() - start < 2s);
  CHECK(rt.failure() == nullptr);
  CHECK(log.count("task exploded 1") == 1);
  CHECK(log.count("task exploded 2") == 1);
  CHECK(log.count("task exploded 3") == 4);
  CHECK(log.count("unknown exception") == 1);
}

TEST_CASE("a completion that throws is logged, not delivered twice, and the other CQEs of the batch are dispatched") {
  LogCapture log;
  Reactor r;
  Recorder before;
  Thrower thrower;
  Recorder after;
  r.submit(before, [](io_uring_sqe* sqe) { uring::prep_nop(sqe); });
  r.submit(thrower, [](io_uring_sqe* sqe) { uring::prep_nop(sqe); });
  r.submit(after, [](io_uring_sqe* sqe) { uring::prep_nop(sqe); });
  const auto end = Clock::now() + 5s;
  unsigned handled = 0;
  while (handled < 3 && Clock::now() < end) handled += r.run_once(true);
  CHECK(handled == 3);
  CHECK(before.calls == 1);
  CHECK(thrower.calls == 1);
  CHECK(after.calls == 1);
  CHECK(r.in_flight() == 0);
  // Nothing is delivered again on later turns.
  r.run_once(false);
  CHECK(thrower.calls == 1);
  CHECK(before.calls == 1);
  CHECK(log.count("completion exploded") == 1);
}

TEST_CASE("a timer that throws is logged and the timers due after it still fire") {
  LogCapture log;
  Reactor r;
  struct Boom final : Timer {
    void fire() override { throw std::runtime_error("timer exploded"); }
  } boom;
  struct Flag final : Timer {
    bool fired = false;
    void fire() override { fired = true; }
  } flag;
  const auto now = Clock::now();
  r.schedule(boom, now);
  r.schedule(flag, now + 1ms);
  const auto end = Clock::now() + 5s;
  while (!flag.fired && Clock::now() < end) r.run_once(true);
  CHECK(flag.fired);
  CHECK_FALSE(boom.scheduled());
  CHECK(log.count("timer exploded") == 1);
}

// ---- logging ----------------------------------------------------------------

TEST_CASE("RINGSHARD_LOG_TRACE and _DEBUG lines are compiled in and filtered at run time") {
  LogCapture log;
  const auto level = logger().level();
  logger().set_level(spdlog::level::trace);
  RINGSHARD_LOG_TRACE("trace line {}", 1);
  RINGSHARD_LOG_DEBUG("debug line {}", 2);
  logger().set_level(spdlog::level::info);
  RINGSHARD_LOG_DEBUG("filtered line {}", 3);
  logger().set_level(level);
  CHECK(log.count("trace line 1") == 1);
  CHECK(log.count("debug line 2") == 1);
  CHECK(log.count("filtered line 3") == 0);
}

namespace {

// Counts the final CQEs of reads that never complete by themselves.
struct StuckRead final : Completion {
  std::atomic<int>* finals;
  char buf[8] = {};
  void complete(const io_uring_cqe& cqe) override {
    if (!(cqe.flags & IORING_CQE_F_MORE)) finals->fetch_add(1);
  }
};

}  // namespace

TEST_CASE("a stop cut short by its deadline still collects the cancelled operations' final CQEs") {
  // What the kernel holds (a socket's send queue, for instance) is released
  // by its operation's final CQE: a stop that ends without them leaks it.
  constexpr int kReads = 64;
  for (int round = 0; round < 5; ++round) {
    int p[2];
    REQUIRE(::pipe(p) == 0);
    Fd rd(p[0]), wr(p[1]);
    std::atomic<int> finals{0}, submitted{0};
    std::vector<StuckRead> reads(kReads);
    for (auto& r : reads) r.finals = &finals;
    RuntimeOptions o;
    o.shards = 1;
    o.stop_timeout = 0ms;  // give up on waiting at once
    Runtime rt(o);
    rt.start();
    rt.post(0, [&] {
      for (auto& r : reads) {
        Shard::current()->reactor().submit(r, [&](io_uring_sqe* sqe) {
          uring::prep_read(sqe, rd.get(), uring::MutableBuffer(r.buf, sizeof r.buf), 0);
        });
      }
      submitted = 1;
    });
    REQUIRE(eventually([&] { return submitted.load() == 1; }, 5s));
    std::this_thread::sleep_for(2ms);  // submitted to the kernel
    rt.stop();
    rt.wait();
    CHECK(finals.load() == kReads);
  }
}
