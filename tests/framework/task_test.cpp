// Task<T> on real shards: awaiting tasks, values and exceptions, io() through
// the ring, the shard's timers, cancellation (resumed with
// operation_canceled) and stop (frames destroyed, never resumed) at every
// kind of suspension, a runtime stopped with coroutines suspended
// everywhere, and the frame pool.
#include <doctest/doctest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>

#include "ringshard/framework/task.hpp"
#include "framework/task_support.hpp"
#include "runtime_support.hpp"
#include "support.hpp"

using namespace ringshard;
using namespace std::chrono_literals;
using test::eventually;
using test::on_shard;
using test::opts;
using test::Pipe;
using test::Witness;

namespace {

Task<int> add(int a, int b) {
  co_await yield();
  co_return a + b;
}

Task<std::string> twice(std::string s) {
  const int n = co_await add(1, 1);
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  co_return out;
}

Task<int> throws_after_a_sleep() {
  co_await sleep_for(1ms);
  throw std::runtime_error("from a task");
}

}  // namespace

// Coroutines take what they use as parameters (copied into the frame): a
// capturing lambda's captures live in the lambda object, which is gone once
// the spawn expression ends.

struct Probe {
  std::atomic<int> stage{0};
  std::atomic<int> res{1};
  std::atomic<int> later{0};
  std::atomic<int> destroyed{0};
  std::atomic<int> resumed{0};
  std::atomic<long> slept_us{0};
  std::string got;
  std::string error;
  char buf[8];
  int fd = -1;
};

Task<> values_and_errors(Probe& p) {
  p.got = co_await twice("ab");
  try {
    co_await throws_after_a_sleep();
  } catch (const std::runtime_error& e) {
    p.error = e.what();
  }
  p.stage = 1;
}

TEST_CASE("task: a task awaits tasks, gets their values, and exceptions reach the awaiter") {
  Runtime rt(opts(1));
  rt.start();
  Probe p;
  on_shard(rt, 0, [&] { spawn(values_and_errors(p)); });
  REQUIRE(eventually([&] { return p.stage.load() == 1; }, std::chrono::seconds(5)));
  CHECK(p.got == "abab");
  CHECK(p.error == "from a task");
}

Task<> nop_then_sleep(Probe& p) {
  p.res = co_await io([](io_uring_sqe* sqe) { uring::prep_nop_result(sqe, -ENOENT); });
  const auto t0 = Clock::now();
  const std::error_code ec = co_await sleep_for(20ms);
  CHECK_FALSE(ec);
  p.slept_us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count();
  p.stage = 1;
}

TEST_CASE("task: io() goes through the ring, sleep_for waits at least its time") {
  Runtime rt(opts(1));
  rt.start();
  Probe p;
  on_shard(rt, 0, [&] { spawn(nop_then_sleep(p)); });
  REQUIRE(eventually([&] { return p.stage.load() == 1; }, std::chrono::seconds(5)));
  CHECK(p.res.load() == -ENOENT);
  CHECK(p.slept_us.load() >= 20000);
}

Task<> long_sleep(Probe& p) {
  Witness w{&p.destroyed};
  const std::error_code ec = co_await sleep_for(std::chrono::hours(1));
  p.resumed.fetch_add(1);
  p.res = ec == std::errc::operation_canceled ? 1 : 2;
  const std::error_code again = co_await sleep_for(1ms);
  if (again == std::errc::operation_canceled) p.stage = 1;
}

// A read on an empty pipe: only a cancellation ends it.
Task<int> read_pipe(Probe& p) {
  Witness w{&p.destroyed};
  co_return co_await io([&p](io_uring_sqe* sqe) { uring::prep_read(sqe, p.fd, uring::MutableBuffer(p.buf, sizeof p.buf), 0); });
}

Task<> pipe_reader(Probe& p) {
  Witness w{&p.destroyed};
  p.res = co_await read_pipe(p);
  p.resumed.fetch_add(1);
  p.later = co_await io([](io_uring_sqe* sqe) { uring::prep_nop(sqe); });
  p.stage = 1;
}

TEST_CASE("task: cancel resumes a sleep and an I/O with operation_canceled, and later awaits fail at once") {
  Runtime rt(opts(1));
  rt.start();
  Pipe pipe;
  Probe sleeping;
  Probe reading;
  reading.fd = pipe.fds[0];
  TaskHandle sleeper;
  TaskHandle reader;
  on_shard(rt, 0, [&] {
    sleeper = spawn(long_sleep(sleeping));
    reader = spawn(pipe_reader(reading));
  });
  std::this_thread::sleep_for(20ms);
  CHECK(sleeping.resumed.load() == 0);
  CHECK(reading.resumed.load() == 0);
  on_shard(rt, 0, [&] {
    CHECK(sleeper.running());
    sleeper.cancel();
    reader.cancel();
  });
  REQUIRE(eventually([&] { return sleeping.stage.load() == 1 && reading.stage.load() == 1; }, std::chrono::seconds(5)));
  CHECK(sleeping.res.load() == 1);
  CHECK(reading.res.load() == -ECANCELED);
  CHECK(reading.later.load() == -ECANCELED);
  on_shard(rt, 0, [&] {
    CHECK_FALSE(sleeper.running());
    CHECK_FALSE(reader.running());
    CHECK(live_tasks() == 0);
  });
}

Task<int> deep(Probe& p, int depth) {
  Witness w{&p.destroyed};
  if (depth == 0) co_return co_await read_pipe(p);
  const int r = co_await deep(p, depth - 1);
  p.resumed.fetch_add(1);
  co_return r;
}

Task<> deep_root(Probe& p) {
  Witness w{&p.destroyed};
  co_await deep(p, 3);
  p.resumed.fetch_add(1);
}

TEST_CASE("task: stop destroys the frames of a task suspended in a sleep, in an I/O, and deep in awaited tasks") {
  Runtime rt(opts(1));
  rt.start();
  Pipe pipe;
  Probe a;
  Probe b;
  Probe c;
  b.fd = c.fd = pipe.fds[0];
  on_shard(rt, 0, [&] {
    TaskHandle ha = spawn(long_sleep(a));
    TaskHandle hb = spawn(pipe_reader(b));
    TaskHandle hc = spawn(deep_root(c));
    CHECK(live_tasks() == 3);
    ha.stop();
    CHECK(a.destroyed.load() == 1);  // a timer: at once
    CHECK_FALSE(ha.running());
    hb.stop();
    hc.stop();
    CHECK(b.destroyed.load() == 0);  // an I/O in the kernel: after its CQE
    CHECK(c.destroyed.load() == 0);
  });
  // pipe_reader: itself and read_pipe; deep_root: itself, 4 deep frames, read_pipe.
  REQUIRE(eventually([&] { return b.destroyed.load() == 2 && c.destroyed.load() == 6; }, std::chrono::seconds(5)));
  std::this_thread::sleep_for(10ms);
  CHECK(a.resumed.load() + b.resumed.load() + c.resumed.load() == 0);
  on_shard(rt, 0, [&] { CHECK(live_tasks() == 0); });
}

TaskHandle g_self;

Task<> stops_itself(Probe& p) {
  Witness w{&p.destroyed};
  co_await yield();
  g_self.stop();
  p.stage = 1;
  co_await sleep_for(1ms);
  p.stage = 2;
}

TEST_CASE("task: a task that stops itself is destroyed at its next await") {
  Runtime rt(opts(1));
  rt.start();
  Probe p;
  on_shard(rt, 0, [&] { g_self = spawn(stops_itself(p)); });
  REQUIRE(eventually([&] { return p.destroyed.load() == 1; }, std::chrono::seconds(5)));
  CHECK(p.stage.load() == 1);
}

Task<> escapes() {
  co_await yield();
  throw std::runtime_error("escaped");
}

Task<> after_a_sleep(Probe& p) {
  co_await sleep_for(1ms);
  p.stage = 1;
}

TEST_CASE("task: an exception escaping a spawned task is logged and the shard goes on") {
  Runtime rt(opts(1));
  rt.start();
  Probe p;
  on_shard(rt, 0, [&] { spawn(escapes()); });
  on_shard(rt, 0, [&] { spawn(after_a_sleep(p)); });
  REQUIRE(eventually([&] { return p.stage.load() == 1; }, std::chrono::seconds(5)));
  on_shard(rt, 0, [&] { CHECK(live_tasks() == 0); });
}

Task<> suspended_somewhere(Probe& p, int kind) {
  Witness w{&p.destroyed};
  p.stage.fetch_add(1);
  if (kind == 0) {
    co_await sleep_for(std::chrono::hours(1));
  } else if (kind == 1) {
    co_await read_pipe(p);
  } else {
    for (;;) co_await yield();
  }
  p.resumed.fetch_add(1);
}

TEST_CASE("task: stopping the runtime with tasks suspended everywhere destroys every frame and does not hang") {
  Pipe pipe;
  Probe p[2];
  p[0].fd = p[1].fd = pipe.fds[0];
  {
    Runtime rt(opts(2));
    rt.start();
    for (unsigned s = 0; s < 2; ++s) {
      on_shard(rt, s, [&, s] {
        for (int i = 0; i < 30; ++i) spawn(suspended_somewhere(p[s], i % 3));
      });
    }
    // Also one on its way to a shard that never starts it.
    spawn(rt.shard(1), suspended_somewhere(p[1], 0));
    const auto t0 = Clock::now();
    rt.stop();
    rt.wait();
    CHECK(Clock::now() - t0 < 5s);
  }
  for (auto& q : p) {
    CHECK(q.resumed.load() == 0);
    // 30 tasks, 10 of them with a read_pipe frame (and its witness) too.
    CHECK(q.destroyed.load() == q.stage.load() + 10);
  }
  CHECK(p[0].stage.load() == 30);
  CHECK(p[1].stage.load() >= 30);
}

Task<> adds(std::atomic<int>& sum) {
  const int v = co_await add(1, 2);
  co_await yield();
  sum.fetch_add(v);
}

TEST_CASE("task: once warm, frames come from the pool and spawning allocates no frame") {
  Runtime rt(opts(1));
  rt.start();
  std::atomic<int> sum{0};
  auto round = [&] {
    on_shard(rt, 0, [&] {
      for (int i = 0; i < 100; ++i) spawn(adds(sum));
    });
  };
  round();
  REQUIRE(eventually([&] { return sum.load() == 300; }, std::chrono::seconds(5)));
  FramePoolStats before{};
  on_shard(rt, 0, [&] { before = frame_pool_stats(); });
  round();
  REQUIRE(eventually([&] { return sum.load() == 600; }, std::chrono::seconds(5)));
  FramePoolStats after{};
  on_shard(rt, 0, [&] { after = frame_pool_stats(); });
  CHECK(after.allocated == before.allocated);
  CHECK(after.reused - before.reused == 200);  // two frames per task
  CHECK(after.live == 0);
}
