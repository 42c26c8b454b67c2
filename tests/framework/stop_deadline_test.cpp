// stop_timeout bounds the whole stop, counted from the moment it is asked
// for: heavy tasks still queued then do not stretch it.
#include <doctest/doctest.h>

#include <atomic>
#include <algorithm>
#include <chrono>
#include <memory>
#include <thread>

#include "ringshard/framework/shard.hpp"
#include "runtime_support.hpp"
#include "support.hpp"

using namespace ringshard;
using namespace std::chrono_literals;

TEST_CASE("a stop with heavy tasks queued ends within stop_timeout, counted from the request") {
  RuntimeOptions o;
  o.shards = 1;
  o.stop_timeout = 300ms;
  Runtime rt(o);
  rt.start();
  std::atomic<int> ran{0};
  std::atomic<bool> requested_seen{false};
  std::atomic<bool> deadline_ok{false};
  for (int i = 0; i < 40; ++i) {  // 40 x 50 ms: 2 s of work
    rt.post(0, [&] {
      Shard& s = *Shard::current();
      if (s.stop_requested()) {
        requested_seen.store(true);
        deadline_ok.store(s.stop_deadline() != Clock::time_point::max());
      }
      const auto until = Clock::now() + 50ms;
      while (Clock::now() < until) {
      }
      ran.fetch_add(1);
    });
  }
  REQUIRE(test::eventually([&] { return ran.load() >= 1; }, std::chrono::seconds(5)));
  const auto t0 = Clock::now();
  rt.stop();
  rt.wait();
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0);
  MESSAGE("stop took " << took.count() << " ms with stop_timeout 300 ms; " << ran.load() << " of 40 tasks ran");
  CHECK(took < 700ms);
  CHECK(ran.load() < 40);
  CHECK(requested_seen.load());
  CHECK(deadline_ok.load());
}

// ---- the drain --------------------------------------------------------------

namespace {

// Holds the stop from the stop request until released; records when the
// drain's hooks ran.
struct Holder final : ShardExtension {
  std::atomic<bool> hold_at_request{false};
  std::atomic<bool> hold_after_drain{false};
  std::atomic<long> requested_ms{-1};
  std::atomic<long> drain_end_ms{-1};
  Clock::time_point t0{};
  Shard* shard = nullptr;
  bool held = false;
  Timer* after = nullptr;

  long since() const { return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count(); }
  void on_stop_requested() override {
    requested_ms = since();
    if (hold_at_request.load()) {
      shard->hold_stop();
      held = true;
    }
  }
  void on_drain_end() override {
    drain_end_ms = since();
    if (held) {
      held = false;
      shard->release_stop();
    }
    // What is still owed is finished now and takes a while (a response on
    // its way): held 100 ms more.
    if (hold_after_drain.load()) {
      shard->hold_stop();
      struct Release final : Timer {
        Shard* s;
        void fire() override {
          s->release_stop();
          delete this;
        }
      };
      auto* r = new Release();
      r->s = shard;
      shard->reactor().schedule(*r, 100ms);
    }
  }
};

const unsigned kHolderKey = Shard::register_extension_key();

Holder& holder(Runtime& rt, unsigned i) {
  Holder* h = nullptr;
  test::on_shard(rt, i, [&] {
    h = &Shard::current()->extension<Holder>(kHolderKey, [] { return std::make_unique<Holder>(); });
    h->shard = Shard::current();
  });
  return *h;
}

}  // namespace

TEST_CASE("a stop drains: every shard serves on while one holds the stop, and goes on as soon as it is released") {
  RuntimeOptions o;
  o.shards = 2;
  o.stop_timeout = 4000ms;
  Runtime rt(o);
  rt.start();
  Holder& h0 = holder(rt, 0);
  Holder& h1 = holder(rt, 1);
  h1.hold_at_request = true;
  h0.t0 = h1.t0 = Clock::now();
  rt.stop();
  REQUIRE(test::eventually([&] { return h0.requested_ms.load() >= 0 && h1.requested_ms.load() >= 0; }, 2s));
  std::this_thread::sleep_for(100ms);
  // Both shards serve on, and work that crosses shards still crosses.
  std::atomic<int> crossed{0};
  std::atomic<bool> draining{false};
  rt.post(0, [&] {
    draining = Shard::current()->draining();
    Shard::current()->runtime().post(1, Job([&] {
      Shard::current()->runtime().post(0, Job([&] { crossed = 1; }));
    }));
  });
  REQUIRE(test::eventually([&] { return crossed.load() == 1; }, 2s));
  CHECK(draining.load());
  CHECK(h0.drain_end_ms.load() == -1);
  CHECK(h1.drain_end_ms.load() == -1);
  const auto released = Clock::now();
  rt.post(1, [&] {
    h1.held = false;
    Shard::current()->release_stop();
  });
  rt.wait();
  const auto after_release = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - released);
  MESSAGE("stopped " << after_release.count() << " ms after the hold was released; drain ended at "
                     << h0.drain_end_ms.load() << " / " << h1.drain_end_ms.load() << " ms");
  CHECK(h0.drain_end_ms.load() >= 100);
  CHECK(h1.drain_end_ms.load() >= 100);
  CHECK(after_release < 2000ms);  // not the drain deadline (3 s)
}

TEST_CASE("a hold never released ends the drain at its deadline, and holds taken then keep the shard until released") {
  RuntimeOptions o;
  o.shards = 2;
  o.stop_timeout = 1600ms;
  Runtime rt(o);
  rt.start();
  Holder& h0 = holder(rt, 0);
  Holder& h1 = holder(rt, 1);
  h0.hold_at_request = true;
  h0.hold_after_drain = true;
  const auto t0 = Clock::now();
  h0.t0 = h1.t0 = t0;
  rt.stop();
  rt.wait();
  const long took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
  MESSAGE("drain ended at " << h0.drain_end_ms.load() << " / " << h1.drain_end_ms.load() << " ms, stop took " << took
                            << " ms (stop_timeout 1600 ms)");
  // Three quarters of stop_timeout, on both shards (shard 1 held nothing).
  CHECK(h0.drain_end_ms.load() >= 1190);
  CHECK(h1.drain_end_ms.load() >= 1190);
  // The hold taken at the drain's end (100 ms) kept shard 0 running, unless
  // a loaded machine got the drain's end so late that the stop deadline
  // came first.
  CHECK(took >= std::min(h0.drain_end_ms.load() + 90, 1600L));
  CHECK(took < 4000);
}
