// Shared helper for the suites that start a Runtime (not the uring suite,
// whose liburing headers clash with the framework's).
#pragma once

#include <atomic>
#include <chrono>

#include "ringshard/framework/shard.hpp"
#include "support.hpp"

namespace ringshard::test {

/// Runtime options with `shards` shards and every other default.
inline RuntimeOptions opts(unsigned shards) {
  RuntimeOptions o;
  o.shards = shards;
  return o;
}

/// Runs `f` on shard `i` of `rt` and waits (bounded) for it.
template <class F>
void on_shard(Runtime& rt, unsigned i, F f) {
  std::atomic<bool> done{false};
  rt.post(i, [&] {
    f();
    done = true;
  });
  REQUIRE(eventually([&] { return done.load(); }, std::chrono::seconds(10)));
}

}  // namespace ringshard::test
