// OrderedSlots: the ring behind every "answer in request order" in net/
// (ReplyQueue, and the HTTP session's Responders). Each request takes the
// next sequence number and a slot; answers fill slots in any order; the
// oldest slot leaves first, and only once filled. Slots are reused: steady
// traffic allocates nothing once the ring has grown to the open-slot peak.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace ringshard::net::detail {

template <class Slot>
class OrderedSlots {
 public:
  /// A fresh slot at the back, and its sequence number. A slot is made fresh
  /// by its reset() when it has one (to keep buffers' capacity), else by
  /// assigning Slot{}.
  std::pair<Slot&, std::uint64_t> push() {
    if (count_ == ring_.size()) grow();
    Slot& s = ring_[(head_ + count_) & (ring_.size() - 1)];
    if constexpr (requires { s.reset(); }) {
      s.reset();
    } else {
      s = Slot{};
    }
    ++count_;
    return {s, head_seq_ + count_ - 1};
  }
  /// The slot of `seq`, or nullptr once it left (or never was).
  Slot* find(std::uint64_t seq) noexcept {
    if (seq < head_seq_ || seq - head_seq_ >= count_) return nullptr;
    return &ring_[(head_ + (seq - head_seq_)) & (ring_.size() - 1)];
  }
  [[nodiscard]] Slot& front() noexcept { return ring_[head_]; }
  [[nodiscard]] Slot& back() noexcept { return ring_[(head_ + count_ - 1) & (ring_.size() - 1)]; }
  /// The sequence number of front() (or of the next push() when empty).
  [[nodiscard]] std::uint64_t front_seq() const noexcept { return head_seq_; }
  /// While empty: the next number was answered without a slot (at once).
  void skip() noexcept { ++head_seq_; }
  /// Drops every slot (nothing more will leave).
  void clear() noexcept {
    head_seq_ += count_;
    head_ = ring_.empty() ? 0 : (head_ + count_) & (ring_.size() - 1);
    count_ = 0;
  }
  /// Removes the oldest slot.
  void pop() noexcept {
    head_ = (head_ + 1) & (ring_.size() - 1);
    --count_;
    ++head_seq_;
  }
  [[nodiscard]] std::size_t size() const noexcept { return count_; }
  [[nodiscard]] bool empty() const noexcept { return count_ == 0; }
  /// The sequence number the next push() gets.
  [[nodiscard]] std::uint64_t next_seq() const noexcept { return head_seq_ + count_; }

 private:
  void grow() {
    std::vector<Slot> bigger(ring_.empty() ? 8 : ring_.size() * 2);
    for (std::size_t i = 0; i < count_; ++i) bigger[i] = std::move(ring_[(head_ + i) & (ring_.size() - 1)]);
    ring_.swap(bigger);
    head_ = 0;
  }
  std::vector<Slot> ring_;  // size 0 or a power of two
  std::size_t head_ = 0;
  std::size_t count_ = 0;
  std::uint64_t head_seq_ = 0;
};

}  // namespace ringshard::net::detail
