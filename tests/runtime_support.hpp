// Shared helper for the suites that start a Runtime (not the uring suite,
// whose liburing headers clash with the framework's).
#pragma once

#include "ringshard/framework/shard.hpp"

namespace ringshard::test {

/// Runtime options with `shards` shards and every other default.
inline RuntimeOptions opts(unsigned shards) {
  RuntimeOptions o;
  o.shards = shards;
  return o;
}

}  // namespace ringshard::test
