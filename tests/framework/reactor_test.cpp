// Reactor: completion routing, one submit per turn, SQ-full backlog, linked
// deadlines, multishot re-arm, timers.
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "ringshard/framework/reactor.hpp"
#include "support.hpp"

using namespace ringshard;
using namespace std::chrono_literals;
using test::Fd;

namespace {

struct Recorder final : Completion {
  std::vector<int> results;
  std::vector<unsigned> flags;
  void complete(const io_uring_cqe& cqe) override {
    results.push_back(cqe.res);
    flags.push_back(cqe.flags);
  }
};

struct CountingTimer final : Timer {
  std::vector<int>* log = nullptr;
  int id = 0;
  Clock::time_point fired_at{};
  void fire() override {
    fired_at = Clock::now();
    if (log) log->push_back(id);
  }
};

void run_until(Reactor& r, const std::function<bool()>& done, std::chrono::milliseconds limit = 5s) {
  const auto end = Clock::now() + limit;
  while (!done()) {
    REQUIRE(Clock::now() < end);
    r.run_once(false);
  }
}

}  // namespace

TEST_CASE("reactor picks the strongest ring mode the kernel offers") {
  Reactor r;
  MESSAGE("ring mode: " << r.mode());
  CHECK(r.mode() == "DEFER_TASKRUN");
  CHECK((r.ring().flags() & IORING_SETUP_SINGLE_ISSUER) != 0);
  ReactorOptions no_defer;
  no_defer.defer_taskrun = false;
  Reactor coop(no_defer);
  CHECK(coop.mode() == "COOP_TASKRUN");
}

TEST_CASE("reactor routes each CQE to the completion whose address is the user data") {
  Reactor r;
  Recorder a, b;
  r.submit(a, [](io_uring_sqe* sqe) { uring::prep_nop_result(sqe, 11); });
  r.submit(b, [](io_uring_sqe* sqe) { uring::prep_nop_result(sqe, 22); });
  CHECK(r.in_flight() == 2);
  run_until(r, [&] { return a.results.size() == 1 && b.results.size() == 1; });
  CHECK(a.results[0] == 11);
  CHECK(b.results[0] == 22);
  CHECK(r.in_flight() == 0);
}

TEST_CASE("reactor submits everything prepared in one turn with one enter") {
  Reactor r;
  std::vector<Recorder> recs(50);
  for (auto& rec : recs) r.submit(rec, [](io_uring_sqe* sqe) { uring::prep_nop(sqe); });
  CHECK(r.ring().sq_ready() == 50);  // nothing went out while preparing
  r.run_once(true);
  CHECK(r.ring().sq_ready() == 0);
  run_until(r, [&] { return r.in_flight() == 0; });
  for (auto& rec : recs) CHECK(rec.results.size() == 1);
}

TEST_CASE("a full SQ is not an error: operations wait in the backlog and go out in order") {
  ReactorOptions opt;
  opt.sq_entries = 8;
  Reactor r(opt);
  int pipefd[2];
  REQUIRE(::pipe(pipefd) == 0);
  Fd rd(pipefd[0]), wr(pipefd[1]);
  constexpr int kOps = 100;
  std::vector<Recorder> recs(kOps);
  std::vector<std::string> chunks;
  for (int i = 0; i < kOps; ++i) chunks.push_back(std::to_string(i % 10));
  for (int i = 0; i < kOps; ++i) {
    // IO_LINK keeps writes in order; the chain is split across turns by the backlog,
    // so order here comes from FIFO backlog flushing plus pipe write ordering per turn.
    r.submit(recs[i], [&, i](io_uring_sqe* sqe) { uring::prep_write(sqe, wr.get(), uring::ConstBuffer(chunks[i]), 0); });
  }
  CHECK(r.backlog() == kOps - 8);
  run_until(r, [&] { return r.in_flight() == 0; });
  CHECK(r.backlog() == 0);
  std::string all(kOps, '?');
  REQUIRE(::read(rd.get(), all.data(), all.size()) == kOps);
  for (int i = 0; i < kOps; ++i) CHECK(recs[i].results[0] == 1);
  // Each turn submits its batch in SQ order, so the bytes arrive in submission order.
  for (int i = 0; i < kOps; ++i) CHECK(all[static_cast<std::size_t>(i)] == chunks[i][0]);
}

TEST_CASE("a deadline cancels an operation that does not complete in time") {
  Reactor r;
  auto pair = test::tcp_pair();
  char buf[8];
  Recorder rec;
  const auto start = Clock::now();
  r.submit(rec, [&](io_uring_sqe* sqe) { uring::prep_recv(sqe, pair.server.get(), uring::MutableBuffer(buf, 8), 0); },
           20ms);
  run_until(r, [&] { return !rec.results.empty(); });
  CHECK(rec.results[0] == -ECANCELED);
  CHECK(Clock::now() - start >= 20ms);
  // And one that completes in time is not cancelled.
  Recorder ok;
  r.submit(ok, [&](io_uring_sqe* sqe) { uring::prep_recv(sqe, pair.server.get(), uring::MutableBuffer(buf, 8), 0); },
           5s);
  REQUIRE(::write(pair.client.get(), "x", 1) == 1);
  run_until(r, [&] { return !ok.results.empty(); });
  CHECK(ok.results[0] == 1);
  run_until(r, [&] { return r.in_flight() == 0; });
}

TEST_CASE("a multishot operation is re-armed when the kernel ends it") {
  Reactor r;
  Fd efd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  struct Watch final : MultishotCompletion {
    int fd = -1;
    int events = 0;
    int ends = 0;
    void prep(io_uring_sqe* sqe) override { uring::prep_poll_multishot(sqe, fd, POLLIN); }
    void on_cqe(const io_uring_cqe& cqe) override {
      if (cqe.res > 0) {
        ++events;
        std::uint64_t v;
        [[maybe_unused]] auto n = ::read(fd, &v, sizeof v);
      }
      if (!(cqe.flags & IORING_CQE_F_MORE)) ++ends;
    }
  } watch;
  watch.fd = efd.get();
  r.arm(watch);
  r.run_once(false);
  for (int i = 0; i < 3; ++i) {
    const std::uint64_t one = 1;
    REQUIRE(::write(efd.get(), &one, sizeof one) == 8);
    run_until(r, [&] { return watch.events == i + 1; });
  }
  // End the request from outside (cancel): the reactor arms it again.
  r.cancel(watch);
  run_until(r, [&] { return watch.ends == 1; });
  r.run_once(false);
  CHECK(watch.armed());
  const std::uint64_t one = 1;
  REQUIRE(::write(efd.get(), &one, sizeof one) == 8);
  run_until(r, [&] { return watch.events == 4; });
  watch.stop();
  r.cancel(watch);
  run_until(r, [&] { return watch.ends == 2; });
  run_until(r, [&] { return r.in_flight() == 0; });
  CHECK_FALSE(watch.armed());
}

TEST_CASE("timers fire in deadline order, never early, and cancelled ones never") {
  Reactor r;
  std::vector<int> log;
  std::vector<CountingTimer> timers(5000);
  std::mt19937 rng(7);
  const auto start = Clock::now();
  for (int i = 0; i < static_cast<int>(timers.size()); ++i) {
    timers[i].log = &log;
    timers[i].id = i;
    r.schedule(timers[i], start + std::chrono::microseconds(rng() % 30000));
  }
  CHECK(r.timers() == 5000);
  for (int i = 0; i < 5000; i += 2) r.cancel(timers[i]);
  CHECK(r.timers() == 2500);
  CHECK(r.ring().sq_ready() == 0);  // no SQE per timer
  while (r.timers() != 0) {
    REQUIRE(Clock::now() - start < 5s);
    r.run_once(true);  // sleeps until the nearest deadline
  }
  REQUIRE(log.size() == 2500);
  for (std::size_t k = 1; k < log.size(); ++k) {
    CHECK(timers[log[k - 1]].deadline() <= timers[log[k]].deadline());
  }
  for (int id : log) {
    CHECK(id % 2 == 1);
    CHECK(timers[id].fired_at >= timers[id].deadline());
  }
}

TEST_CASE("a blocking turn wakes for the nearest timer") {
  Reactor r;
  CountingTimer t;
  const auto start = Clock::now();
  r.schedule(t, 30ms);
  while (t.scheduled()) r.run_once(true);
  const auto waited = Clock::now() - start;
  CHECK(waited >= 30ms);
  CHECK(waited < 2s);
}

// Batched waits (ReactorOptions::min_wait): a blocking turn waits for as many
// completions as the last one handled, for at most min_wait; after a turn of
// one it waits plainly. min_wait is 200 ms here, so that "waited for the
// batch" and "did not" are far apart.
// Run plainly and with the waits' arguments in a registered wait region.
namespace {
void batched_waits(bool registered) {
  ReactorOptions options;
  options.min_wait = 200ms;
  options.wait_batch = 8;
  options.registered_wait = registered;
  Reactor r(options);
  CHECK(r.registered_wait() == (registered && test::kernel_at_least(6, 13)));
  if (!r.ring().has_feature(IORING_FEAT_MIN_TIMEOUT)) {
    MESSAGE("no IORING_FEAT_MIN_TIMEOUT: the reactor waits plainly, nothing to check");
    return;
  }
  std::vector<test::TcpPair> pairs;
  for (int i = 0; i < 3; ++i) pairs.push_back(test::tcp_pair());
  char bufs[3][8];
  Recorder recs[3];
  const auto receive = [&](int i) {
    recs[i].results.clear();
    r.submit(recs[i], [&, i](io_uring_sqe* sqe) {
      uring::prep_recv(sqe, pairs[i].server.get(), uring::MutableBuffer(bufs[i], 8), 0);
    });
  };
  const auto write_after = [&](int i, std::chrono::milliseconds delay) {
    return std::thread([&, i, delay] {
      std::this_thread::sleep_for(delay);
      REQUIRE(::write(pairs[i].client.get(), "x", 1) == 1);
    });
  };
  // A blocking turn; returns how long it took.
  const auto blocking_turn = [&](unsigned expect_handled) {
    const auto start = Clock::now();
    CHECK(r.run_once(true) == expect_handled);
    return Clock::now() - start;
  };
  // Two completions in one turn (their bytes are there before it).
  const auto turn_of_two = [&] {
    receive(0);
    receive(1);
    REQUIRE(::write(pairs[0].client.get(), "x", 1) == 1);
    REQUIRE(::write(pairs[1].client.get(), "x", 1) == 1);
    r.run_once(false);
    run_until(r, [&] { return recs[0].results.size() == 1 && recs[1].results.size() == 1; });
  };

  SUBCASE("after a turn of two: one byte in 5 ms is handled after min_wait, then the next plainly") {
    r.run_once(false);
    turn_of_two();
    receive(0);
    receive(1);
    r.run_once(false);  // submitted
    std::thread w = write_after(0, 5ms);
    const auto batched = blocking_turn(1);  // waited for two, got one
    w.join();
    CHECK(batched >= 200ms);  // a plain wait returns at 5 ms
    CHECK(batched < 4s);
    CHECK(recs[0].results == std::vector<int>{1});
    // The last turn handled one: the next wait is plain.
    std::thread w2 = write_after(1, 5ms);
    const auto plain = blocking_turn(1);
    w2.join();
    CHECK(plain < 150ms);
    CHECK(recs[1].results == std::vector<int>{1});
  }
  SUBCASE("after a turn of two: a byte 300 ms later wakes the only wait (min_wait does not end it)") {
    turn_of_two();
    receive(2);
    r.run_once(false);
    const std::uint64_t enters_before = r.stats().enters.get();
    // The clock starts before the writer's thread: its 300 ms sleep may begin
    // before this thread reads the clock (the TSan stage measured 298.9 ms).
    const auto start = Clock::now();
    std::thread w = write_after(2, 300ms);
    while (recs[2].results.empty()) r.run_once(true);
    const auto waited = Clock::now() - start;
    w.join();
    CHECK(waited >= 300ms);
    CHECK(r.stats().enters.get() - enters_before == 1);
  }
  SUBCASE("after a turn of two: a timer 150 ms away fires on time from the only wait") {
    turn_of_two();
    CountingTimer t;
    const std::uint64_t enters_before = r.stats().enters.get();
    const auto start = Clock::now();
    r.schedule(t, 150ms);
    while (t.scheduled()) r.run_once(true);
    CHECK(t.fired_at >= start + 150ms);
    CHECK(t.fired_at < start + 2s);
    CHECK(r.stats().enters.get() - enters_before == 1);
  }
}
}  // namespace

TEST_CASE("batched waits: as many as last time within min_wait, a plain wait after a lone completion") {
  batched_waits(false);
}

TEST_CASE("batched waits with a registered wait region: the same, the arguments read from the region") {
  batched_waits(true);
}

// With a registered wait region a wait for the nearest timer passes its
// timeout through the region; an io_uring_enter that ignored it would sleep
// until the thread's write 3 s later.
TEST_CASE("registered waits: a blocking turn wakes for the nearest timer, and plain waits still work") {
  ReactorOptions options;
  options.registered_wait = true;
  Reactor r(options);
  if (!test::kernel_at_least(6, 13)) {
    MESSAGE("kernel before 6.13: no wait region; the reactor waits as before");
    CHECK_FALSE(r.registered_wait());
  } else {
    CHECK(r.registered_wait());
  }
  CHECK(r.mode() == "DEFER_TASKRUN");  // enabled by this thread, its single issuer
  auto pair = test::tcp_pair();
  char buf[8];
  Recorder rec;
  r.submit(rec, [&](io_uring_sqe* sqe) {
    uring::prep_recv(sqe, pair.server.get(), uring::MutableBuffer(buf, 8), 0);
  });
  r.run_once(false);
  std::mutex m;
  std::condition_variable cv;
  bool go = false;
  const auto start = Clock::now();
  std::thread backstop([&] {
    std::unique_lock lock(m);
    cv.wait_for(lock, 3s, [&] { return go; });
    REQUIRE(::write(pair.client.get(), "late", 4) == 4);
  });
  CountingTimer t;
  r.schedule(t, 40ms);
  while (t.scheduled()) r.run_once(true);
  {
    std::lock_guard lock(m);
    go = true;
  }
  cv.notify_one();
  CHECK(t.fired_at >= start + 40ms);
  CHECK(t.fired_at < start + 2s);
  // No timer left: a plain wait (no argument) for the backstop's bytes.
  while (rec.results.empty()) r.run_once(true);
  backstop.join();
  CHECK(rec.results == std::vector<int>{4});
}
