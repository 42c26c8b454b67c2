#pragma once
// Counters and gauges that one thread writes and any thread reads: the
// per-shard metrics (shard, reactor, connections, actors, HTTP).
//
// Only the owning shard's thread writes one, with a relaxed load and a
// relaxed store (x86: a plain add to memory, no locked instruction, no
// fence), so counting costs what a plain field costs. Other threads (a
// metrics scrape on another shard) read it relaxed: a value at most a few
// increments old, never torn.
#include <atomic>
#include <cstdint>

namespace ringshard {

class StatCounter {
 public:
  /// Owner thread only.
  void add(std::uint64_t n = 1) noexcept { v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
  StatCounter& operator++() noexcept {
    add(1);
    return *this;
  }
  StatCounter& operator+=(std::uint64_t n) noexcept {
    add(n);
    return *this;
  }
  /// Any thread.
  [[nodiscard]] std::uint64_t get() const noexcept { return v_.load(std::memory_order_relaxed); }
  operator std::uint64_t() const noexcept { return get(); }  // NOLINT: reads like the plain field it replaces

 private:
  std::atomic<std::uint64_t> v_{0};
};

/// A value that goes up and down (actors alive, asks outstanding); same rules.
class StatGauge {
 public:
  void add(std::int64_t n) noexcept { v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
  void set(std::int64_t n) noexcept { v_.store(n, std::memory_order_relaxed); }
  [[nodiscard]] std::int64_t get() const noexcept { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::int64_t> v_{0};
};

}  // namespace ringshard
