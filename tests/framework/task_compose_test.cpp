// when_all and submit_to on real shards: values in order, tasks that really
// run at once, exceptions, cancellation and stop while the parts wait (in
// timers and in the kernel), a runtime stopped meanwhile; steps run on
// another shard with values, void, Tasks and exceptions coming back.
#include <doctest/doctest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <tuple>
#include <vector>

#include "ringshard/framework/submit_to.hpp"
#include "ringshard/framework/task.hpp"
#include "ringshard/framework/when_all.hpp"
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

struct Probe {
  std::atomic<int> stage{0};
  std::atomic<int> destroyed{0};
  std::atomic<int> resumed{0};
  std::atomic<int> ended{0};
  std::string text;
  std::string error;
  int a = 0;
  int b = 0;
  std::vector<int> values;
  bool flag = false;
  char buf[8];
  int fd = -1;
};

Task<int> after(std::chrono::milliseconds d, int v) {
  co_await sleep_for(d);
  co_return v;
}

Task<std::string> word() {
  co_await yield();
  co_return std::string("word");
}

// Waits for a flag another part of the same when_all sets: only finishes
// when the parts run at once.
Task<> waits_for_flag(Probe& p) {
  for (int i = 0; i < 1000 && !p.flag; ++i) co_await yield();
  if (!p.flag) throw std::runtime_error("the other part never ran");
}

Task<> sets_flag(Probe& p) {
  co_await yield();
  p.flag = true;
}

Task<> gather_values(Probe& p) {
  // waits_for_flag only ends if sets_flag, after it, runs meanwhile.
  auto [x, w, nothing, y, set] = co_await when_all(after(5ms, 1), word(), waits_for_flag(p), after(1ms, 2), sets_flag(p));
  static_assert(std::is_same_v<decltype(nothing), std::monostate>);
  p.a = x;
  p.b = y;
  p.text = w;
  std::vector<Task<int>> many;
  for (int i = 0; i < 100; ++i) many.push_back(after(std::chrono::milliseconds(i % 3), i));
  many.push_back(after(0ms, 1000));
  p.values = co_await when_all(std::move(many));
  p.flag = false;
  co_await when_all(sets_flag(p));  // a single part, void
  if (!p.flag) throw std::logic_error("not run");
  p.stage = 1;
}

}  // namespace

TEST_CASE("when_all: the parts run at once and their values come back in argument order") {
  Runtime rt(opts(1));
  rt.start();
  Probe p;
  on_shard(rt, 0, [&] { spawn(gather_values(p)); });
  REQUIRE(eventually([&] { return p.stage.load() == 1; }, std::chrono::seconds(5)));
  CHECK(p.a == 1);
  CHECK(p.b == 2);
  CHECK(p.text == "word");
  REQUIRE(p.values.size() == 101);
  for (int i = 0; i < 100; ++i) CHECK(p.values[static_cast<std::size_t>(i)] == i);
  CHECK(p.values[100] == 1000);
  on_shard(rt, 0, [&] { CHECK(live_tasks() == 0); });
}

namespace {

Task<int> fails_after(std::chrono::milliseconds d, const char* what) {
  co_await sleep_for(d);
  throw std::runtime_error(what);
}

Task<int> counts_end(Probe& p, std::chrono::milliseconds d) {
  co_await sleep_for(d);
  p.ended.fetch_add(1);
  co_return 7;
}

Task<> gather_errors(Probe& p) {
  try {
    co_await when_all(counts_end(p, 10ms), fails_after(5ms, "second"), fails_after(1ms, "third"), counts_end(p, 1ms));
  } catch (const std::runtime_error& e) {
    p.error = e.what();
  }
  p.stage = 1;
}

}  // namespace

TEST_CASE("when_all: an exception waits for the other parts and the first in argument order is rethrown") {
  Runtime rt(opts(1));
  rt.start();
  Probe p;
  on_shard(rt, 0, [&] { spawn(gather_errors(p)); });
  REQUIRE(eventually([&] { return p.stage.load() == 1; }, std::chrono::seconds(5)));
  CHECK(p.error == "second");
  CHECK(p.ended.load() == 2);
}

namespace {

Task<int> sleeps_long(Probe& p) {
  Witness w{&p.destroyed};
  const std::error_code ec = co_await sleep_for(std::chrono::hours(1));
  p.resumed.fetch_add(1);
  co_return ec == std::errc::operation_canceled ? -1 : 1;
}

Task<int> reads_pipe(Probe& p) {
  Witness w{&p.destroyed};
  const int res =
      co_await io([&p](io_uring_sqe* sqe) { uring::prep_read(sqe, p.fd, uring::MutableBuffer(p.buf, sizeof p.buf), 0); });
  p.resumed.fetch_add(1);
  co_return res;
}

Task<> throws_when_canceled(Probe& p) {
  Witness w{&p.destroyed};
  const std::error_code ec = co_await sleep_for(std::chrono::hours(1));
  p.resumed.fetch_add(1);
  if (ec) throw std::system_error(std::make_error_code(std::errc::interrupted));
}

Task<> gather_then_record(Probe& p, bool with_void) {
  Witness w{&p.destroyed};
  try {
    if (with_void) {
      co_await when_all(sleeps_long(p), throws_when_canceled(p));
    } else {
      auto [x, y] = co_await when_all(sleeps_long(p), reads_pipe(p));
      p.a = x;
      p.b = y;
    }
    p.text = "values";
  } catch (const std::system_error& e) {
    p.text = e.code() == std::errc::operation_canceled ? "canceled" : "other";
  }
  p.stage = 1;
  // Awaits after the cancel fail at once.
  const std::error_code ec = co_await sleep_for(1ms);
  if (ec == std::errc::operation_canceled) p.stage = 2;
}

}  // namespace

TEST_CASE("when_all: cancelling the awaiting task cancels every part, in a timer and in the kernel") {
  Runtime rt(opts(1));
  rt.start();
  Pipe pipe;
  Probe values;
  Probe thrown;
  values.fd = pipe.fds[0];
  TaskHandle hv;
  TaskHandle ht;
  on_shard(rt, 0, [&] {
    hv = spawn(gather_then_record(values, false));
    ht = spawn(gather_then_record(thrown, true));
    CHECK(live_tasks() == 6);  // two awaiting, four parts
  });
  std::this_thread::sleep_for(10ms);
  CHECK(values.resumed.load() + thrown.resumed.load() == 0);
  on_shard(rt, 0, [&] {
    hv.cancel();
    ht.cancel();
  });
  REQUIRE(eventually([&] { return values.stage.load() == 2 && thrown.stage.load() == 2; }, std::chrono::seconds(5)));
  CHECK(values.text == "values");
  CHECK(values.a == -1);
  CHECK(values.b == -ECANCELED);
  CHECK(thrown.text == "other");  // the part's own exception, not a cancel of when_all's
  on_shard(rt, 0, [&] { CHECK(live_tasks() == 0); });
  CHECK(values.destroyed.load() == 3);
  CHECK(thrown.destroyed.load() == 3);
}

TEST_CASE("when_all: stopping the awaiting task stops every part, never resumed, frames destroyed after their CQEs") {
  Runtime rt(opts(1));
  rt.start();
  Pipe pipe;
  Probe p;
  p.fd = pipe.fds[0];
  on_shard(rt, 0, [&] {
    TaskHandle h = spawn(gather_then_record(p, false));
    CHECK(live_tasks() == 3);
    h.stop();
    CHECK(p.destroyed.load() == 1);  // the sleeping part at once; the reader after its CQE
  });
  REQUIRE(eventually([&] { return p.destroyed.load() == 3; }, std::chrono::seconds(5)));
  std::this_thread::sleep_for(10ms);
  CHECK(p.resumed.load() == 0);
  CHECK(p.stage.load() == 0);
  on_shard(rt, 0, [&] { CHECK(live_tasks() == 0); });
}

TEST_CASE("when_all: stopping the runtime with parts suspended in timers and in the kernel destroys every frame") {
  Pipe pipe;
  Probe p;
  p.fd = pipe.fds[0];
  {
    Runtime rt(opts(2));
    rt.start();
    for (unsigned s = 0; s < 2; ++s) {
      on_shard(rt, s, [&] {
        for (int i = 0; i < 10; ++i) spawn(gather_then_record(p, i % 2 == 0));
      });
    }
    rt.stop();
    rt.wait();
  }
  CHECK(p.destroyed.load() == 60);
  CHECK(p.stage.load() == 0);
}

// ---- submit_to ------------------------------------------------------------

namespace {

Task<std::string> remote_sleep_then_id() {
  co_await sleep_for(1ms);
  co_return "shard " + std::to_string(Shard::current()->id());
}

Task<> submits(Probe& p) {
  const unsigned here = Shard::current()->id();
  p.a = co_await submit_to(1, [] { return static_cast<int>(Shard::current()->id()); });
  if (Shard::current()->id() != here) throw std::logic_error("resumed on another shard");
  std::atomic<int>* ran = &p.ended;
  co_await submit_to(1, [ran] { ran->fetch_add(1); });
  p.text = co_await submit_to(1, [] { return remote_sleep_then_id(); });
  p.b = co_await submit_to(here, [] { return 5; });
  try {
    co_await submit_to(1, []() -> int { throw std::runtime_error("thrown there"); });
  } catch (const std::runtime_error& e) {
    p.error = e.what();
  }
  try {
    co_await submit_to(1, []() -> Task<> {
      co_await yield();
      throw std::invalid_argument("thrown by a task there");
    });
  } catch (const std::invalid_argument& e) {
    p.error += std::string(", ") + e.what();
  }
  try {
    co_await submit_to(7, [] {});
  } catch (const std::out_of_range&) {
    p.error += ", out of range";
  }
  if (Shard::current()->id() != here) throw std::logic_error("resumed on another shard");
  p.stage = 1;
}

}  // namespace

TEST_CASE("submit_to: a step runs on the other shard and the task resumes on its own with the result") {
  Runtime rt(opts(2));
  rt.start();
  Probe p;
  on_shard(rt, 0, [&] { spawn(submits(p)); });
  REQUIRE(eventually([&] { return p.stage.load() == 1; }, std::chrono::seconds(5)));
  CHECK(p.a == 1);
  CHECK(p.ended.load() == 1);
  CHECK(p.text == "shard 1");
  CHECK(p.b == 5);
  CHECK(p.error == "thrown there, thrown by a task there, out of range");
}

namespace {

Task<int> remote_long(std::atomic<int>* finished, std::atomic<bool>* release) {
  while (!release->load()) co_await sleep_for(1ms);
  finished->fetch_add(1);
  co_return 3;
}

struct Remote {
  std::atomic<int> finished{0};
  std::atomic<bool> release{false};
};

Task<> waits_on_remote(Probe& p, Remote& r) {
  Witness w{&p.destroyed};
  try {
    std::atomic<int>* finished = &r.finished;
    std::atomic<bool>* release = &r.release;
    p.a = co_await submit_to(1, [finished, release] { return remote_long(finished, release); });
    p.text = "value";
  } catch (const std::system_error& e) {
    p.text = e.code() == std::errc::operation_canceled ? "canceled" : "other";
  }
  p.resumed.fetch_add(1);
  p.stage = 1;
}

}  // namespace

TEST_CASE("submit_to: a cancelled or stopped waiter resumes at once or goes, and the late result is dropped") {
  Runtime rt(opts(2));
  rt.start();
  Probe canceled;
  Probe stopped;
  Remote r;
  TaskHandle hc;
  TaskHandle hs;
  on_shard(rt, 0, [&] {
    hc = spawn(waits_on_remote(canceled, r));
    hs = spawn(waits_on_remote(stopped, r));
  });
  std::this_thread::sleep_for(10ms);
  on_shard(rt, 0, [&] {
    hc.cancel();
    hs.stop();
    CHECK(stopped.destroyed.load() == 1);
  });
  REQUIRE(eventually([&] { return canceled.stage.load() == 1; }, std::chrono::seconds(5)));
  CHECK(canceled.text == "canceled");
  CHECK(r.finished.load() == 0);  // still running there
  r.release = true;
  REQUIRE(eventually([&] { return r.finished.load() == 2; }, std::chrono::seconds(5)));
  std::this_thread::sleep_for(10ms);  // the two results travel back and are dropped
  CHECK(canceled.resumed.load() == 1);
  CHECK(stopped.resumed.load() == 0);
  on_shard(rt, 0, [&] { CHECK(live_tasks() == 0); });
  on_shard(rt, 1, [&] { CHECK(live_tasks() == 0); });
}

namespace {

Task<> hands_over_strings(Probe& p) {
  std::string key(40, 'k');  // on the heap
  p.text = co_await submit_to(1, [](std::string k, const std::string& suffix) { return k + suffix; }, key,
                              std::string(30, '!'));
  auto local = [key] { return key.size(); };  // a capturing lambda: built outside the co_await (g++ 12)
  p.a = static_cast<int>(co_await submit_to(1, std::move(local)));
  p.stage = 1;
}

}  // namespace

TEST_CASE("submit_to: strings handed over as arguments and in a lambda built beforehand") {
  Runtime rt(opts(2));
  rt.start();
  Probe p;
  on_shard(rt, 0, [&] { spawn(hands_over_strings(p)); });
  REQUIRE(eventually([&] { return p.stage.load() == 1; }, std::chrono::seconds(5)));
  CHECK(p.text == std::string(40, 'k') + std::string(30, '!'));
  CHECK(p.a == 40);
}
