// stop_timeout bounds the whole stop, counted from the moment it is asked
// for: heavy tasks still queued then do not stretch it.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>

#include "ringshard/framework/shard.hpp"
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
