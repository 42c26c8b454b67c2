// Job and JobQueue: inline vs boxed storage, FIFO order, growth while a
// task runs.
#include <array>
#include <memory>
#include <string>
#include <vector>

#include "ringshard/framework/job.hpp"
#include "ringshard/framework/job_queue.hpp"
#include "support.hpp"

using namespace ringshard;

TEST_CASE("small captures are stored inline, large ones boxed, both run and are destroyed once") {
  auto counter = std::make_shared<int>(0);
  {
    auto small_fn = [c = counter] { ++*c; };
    std::string big(200, 'b');
    std::array<char, 64> pad{};  // pushes the captures past the 48 inline bytes
    auto large_fn = [c = counter, big, pad] { *c += static_cast<int>(big.size() + pad.size()) - 64; };
    CHECK(Job::fits<decltype(small_fn)>());
    CHECK_FALSE(Job::fits<decltype(large_fn)>());
    Job small(std::move(small_fn));
    Job large(std::move(large_fn));
    Job moved(std::move(large));
    CHECK_FALSE(static_cast<bool>(large));  // NOLINT(bugprone-use-after-move): moved-from is empty
    small();
    moved();
    CHECK(*counter == 201);
    CHECK(counter.use_count() == 3);  // the two tasks' copies
  }
  CHECK(counter.use_count() == 1);  // every capture destroyed exactly once
}

TEST_CASE("the run queue keeps FIFO order across growth") {
  JobQueue q(16);
  std::vector<int> order;
  for (int i = 0; i < 1000; ++i) q.emplace_back([&order, i] { order.push_back(i); });
  CHECK(q.capacity() >= 1000);
  while (!q.empty()) q.run_front();
  REQUIRE(order.size() == 1000);
  for (int i = 0; i < 1000; ++i) CHECK(order[static_cast<std::size_t>(i)] == i);
}

TEST_CASE("after a burst the run queue shrinks on request, keeping its jobs in order") {
  JobQueue q(16);
  std::vector<int> order;
  for (int i = 0; i < 100'000; ++i) q.emplace_back([&order, i] { order.push_back(i); });
  const std::size_t peak = q.capacity();
  CHECK(peak >= 100'000);
  CHECK(q.shrink(1024) == 0);  // still full: nothing to give back
  CHECK(q.capacity() == peak);
  while (q.size() > 300) q.run_front();
  // 300 jobs left, the ring wraps (the head is far from slot 0): they move.
  const std::size_t freed = q.shrink(1024);
  CHECK(freed == (peak - 1024) * sizeof(Job));
  CHECK(q.capacity() == 1024);
  CHECK(q.size() == 300);
  for (int i = 0; i < 2000; ++i) q.emplace_back([&order, i] { order.push_back(100'000 + i); });  // grows again
  while (!q.empty()) q.run_front();
  REQUIRE(order.size() == 102'000);
  for (std::size_t i = 0; i < order.size(); ++i) CHECK(order[i] == static_cast<int>(i));
  CHECK(q.shrink(1024) > 0);
  CHECK(q.shrink(1024) == 0);  // already small
  CHECK(q.capacity() == 1024);
}

TEST_CASE("a running task may push enough tasks to make the queue grow") {
  JobQueue q(16);
  std::vector<int> ran;
  auto keep = std::make_shared<std::string>(100, 'k');  // a non-trivial capture in the running task
  q.emplace_back([&q, &ran, keep] {
    for (int i = 0; i < 40; ++i) q.emplace_back([&ran, i] { ran.push_back(i); });
    ran.push_back(static_cast<int>(keep->size()));  // touches the capture after the growth
  });
  while (!q.empty()) q.run_front();
  REQUIRE(ran.size() == 41);
  CHECK(ran[0] == 100);
  for (int i = 0; i < 40; ++i) CHECK(ran[static_cast<std::size_t>(i) + 1] == i);
}
