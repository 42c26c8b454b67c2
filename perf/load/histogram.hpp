// A log-linear latency histogram: fixed memory, O(1) record, mergeable.
//
// Values (nanoseconds) below 256 have a bucket each. Above, every power of two
// [2^e, 2^(e+1)) is cut into 128 equal buckets, so a bucket is at most 1/128
// of its lower bound wide: reporting its midpoint is within 0.4% of any value
// that fell into it (well inside the 1% the load generator promises). The
// whole 64-bit range takes 7,424 counters (58 KiB); one histogram per shard,
// merged once at the end, and no per-sample storage anywhere.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>

namespace ringshard::load {

class Histogram {
 public:
  static constexpr unsigned kSubBits = 7;                   // 128 buckets per power of two
  static constexpr unsigned kSub = 1u << kSubBits;
  static constexpr unsigned kBuckets = (64 - kSubBits) * kSub + kSub;

  void record(std::uint64_t value) noexcept {
    ++counts_[index_of(value)];
    ++count_;
    sum_ += value;
    max_ = std::max(max_, value);
  }

  void merge(const Histogram& other) noexcept {
    for (unsigned i = 0; i < kBuckets; ++i) counts_[i] += other.counts_[i];
    count_ += other.count_;
    sum_ += other.sum_;
    max_ = std::max(max_, other.max_);
  }

  [[nodiscard]] std::uint64_t count() const noexcept { return count_; }
  [[nodiscard]] std::uint64_t max() const noexcept { return max_; }
  [[nodiscard]] double mean() const noexcept {
    return count_ == 0 ? 0.0 : static_cast<double>(sum_) / static_cast<double>(count_);
  }

  /// The value at quantile q (0 < q <= 1): the midpoint of the bucket that
  /// holds the ceil(q * count)-th smallest sample, never above the maximum,
  /// so quantiles never decrease as q grows. 0 when empty.
  [[nodiscard]] double quantile(double q) const noexcept {
    if (count_ == 0) return 0.0;
    auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(count_)));
    rank = std::clamp<std::uint64_t>(rank, 1, count_);
    std::uint64_t seen = 0;
    for (unsigned i = 0; i < kBuckets; ++i) {
      seen += counts_[i];
      if (seen >= rank) return std::min(midpoint(i), static_cast<double>(max_));
    }
    return static_cast<double>(max_);
  }

  static constexpr unsigned index_of(std::uint64_t v) noexcept {
    if (v < 2 * kSub) return static_cast<unsigned>(v);
    const unsigned shift = static_cast<unsigned>(std::bit_width(v)) - 1 - kSubBits;  // >= 1
    return (shift + 1) * kSub + static_cast<unsigned>((v >> shift) - kSub);
  }
  /// Smallest value of bucket i.
  static constexpr std::uint64_t lower_bound(unsigned i) noexcept {
    if (i < 2 * kSub) return i;
    const unsigned shift = i / kSub - 1;
    return (std::uint64_t{kSub} + i % kSub) << shift;
  }
  /// Number of values in bucket i.
  static constexpr std::uint64_t width(unsigned i) noexcept {
    return i < 2 * kSub ? 1 : std::uint64_t{1} << (i / kSub - 1);
  }
  static constexpr double midpoint(unsigned i) noexcept {
    return static_cast<double>(lower_bound(i)) + static_cast<double>(width(i) - 1) / 2.0;
  }

 private:
  std::array<std::uint64_t, kBuckets> counts_{};
  std::uint64_t count_ = 0;
  std::uint64_t sum_ = 0;
  std::uint64_t max_ = 0;
};

static_assert(Histogram::index_of(255) == 255);
static_assert(Histogram::index_of(256) == 256);
static_assert(Histogram::index_of(257) == 256);
static_assert(Histogram::lower_bound(Histogram::index_of(1'000'000)) <= 1'000'000);
static_assert(Histogram::index_of(~std::uint64_t{0}) == Histogram::kBuckets - 1);

}  // namespace ringshard::load
