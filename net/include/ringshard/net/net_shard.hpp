// Per-shard networking state: the receive ring (provided buffers shared by
// every connection of the shard), send-queue memory recycled between
// connections, the batched flush, and live counters other threads may read.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "ringshard/framework/shard.hpp"
#include "ringshard/framework/uring/buffer_ring.hpp"
#include "ringshard/net/buffers.hpp"
#include "ringshard/net/close_reason.hpp"

namespace ringshard::net {

/// The shard's receive ring: `count` buffers of `size` bytes (count a power
/// of two, at most 32768). Multishot receives of every connection on the
/// shard draw from it.
struct ReceiveBuffers {
  unsigned count = 4096;
  unsigned size = 4096;
};

namespace detail {
struct NetShardState;
}
class NetShard;

/// Something on a shard that takes part in a graceful stop (see
/// RuntimeOptions::stop_timeout): a listener stops accepting, an HTTP
/// connection finishes what it owes. Enlisted with its shard's NetShard;
/// leaves the list when destroyed.
class Drainable {
 public:
  Drainable(const Drainable&) = delete;
  Drainable& operator=(const Drainable&) = delete;
  /// The stop was asked for: take no new work, hold the stop
  /// (Shard::hold_stop) for what is owed.
  virtual void on_stop_requested() = 0;
  /// The drain is over: finish what is still owed now.
  virtual void on_drain_end() {}

 protected:
  Drainable() = default;
  ~Drainable() { delist(); }
  void enlist(NetShard& net) noexcept;
  void delist() noexcept;

 private:
  friend class NetShard;
  void link(Drainable** list) noexcept;
  Drainable* prev_ = nullptr;
  Drainable* next_ = nullptr;
  Drainable** list_ = nullptr;  // the head of the list it is on
};

class NetShard final : public ShardExtension {
 public:
  static constexpr std::uint16_t kBufferGroup = 0x5253;  // "RS"
  static NetShard& of(Shard& shard);
  /// The shard's NetShard if it has one (nullptr before its first
  /// connection or listener). Any thread.
  static NetShard* find(Shard& shard) noexcept;

  explicit NetShard(Shard& shard);
  ~NetShard() override;

  /// Sets the receive ring's shape; takes effect if the ring is not built yet
  /// (it is built for the shard's first connection). Any thread. Throws
  /// std::invalid_argument for a count that is not a power of two in
  /// [1, 32768] or a size of 0.
  void set_receive_buffers(const ReceiveBuffers& buffers);
  [[nodiscard]] ReceiveBuffers receive_buffers() const noexcept;

  /// Live connections on this shard (read by listeners on other shards).
  std::atomic<int> connections{0};
  /// Accepted connections handed to this shard (counted by the listener's shard).
  std::atomic<std::uint64_t> accepted{0};

  // Counted by this shard's thread alone (StatCounter: no locked
  // instruction), readable from any thread.
  /// Connections closed, by reason.
  [[nodiscard]] std::uint64_t closed_by(CloseReason reason) const noexcept {
    return closed_[static_cast<std::size_t>(reason)].get();
  }
  void count_close(CloseReason reason) noexcept { ++closed_[static_cast<std::size_t>(reason)]; }
  StatCounter bytes_in;          ///< bytes received on connections
  StatCounter bytes_out;         ///< bytes sent
  StatCounter recv_completions;  ///< receive completions that carried data
  StatCounter send_completions;  ///< send completions
  /// Receives that found the ring empty and fell back to a plain recv.
  StatCounter buffer_fallbacks;
  /// keep_received() calls that copied because the ring was running low.
  StatCounter kept_copies;

  // ---- shard thread only ----
  void ensure_buffers();
  [[nodiscard]] std::byte* buffer(std::uint16_t bid) noexcept { return memory_.get() + std::size_t{bid} * size_; }
  [[nodiscard]] unsigned buffer_size() const noexcept { return size_; }
  /// Ring buffers handed out and not given back yet.
  [[nodiscard]] unsigned buffers_held() const noexcept { return held_; }
  /// A received ring buffer becomes the application's (counted as held).
  void took(std::uint16_t) noexcept { ++held_; }
  void give_back(std::uint16_t bid) noexcept;
  /// Keeps the received bytes of ring buffer `bid` in a RecvBuffer, or a
  /// copy when the ring runs low (fewer than 1/8 of its buffers left), so
  /// that kept buffers cannot starve the shard's receives.
  [[nodiscard]] RecvBuffer keep(std::uint16_t bid, std::size_t size);
  /// A RecvBuffer that owns heap memory (the fallback receive buffer).
  [[nodiscard]] static RecvBuffer keep_heap(std::unique_ptr<std::byte[]> heap, std::size_t size) noexcept {
    return RecvBuffer(std::move(heap), size);
  }

  /// Send-queue strings are recycled through the shard, so that a steady
  /// stream of sends allocates nothing and idle connections keep no memory.
  [[nodiscard]] std::string take_chunk() noexcept;
  void recycle_chunk(std::string&& chunk) noexcept;

  /// Gives back to the system the memory the shard keeps for reuse: the
  /// spare send strings and send-queue blocks, and, when no connection is
  /// open on the shard and no receive buffer is held, the pages of the
  /// receive ring (madvise(MADV_DONTNEED): the kernel fills them again, as
  /// fresh zeroed pages, when receives use them). For a shard that went idle
  /// after a load. Returns the bytes given back (approximately).
  std::size_t release_idle_memory() noexcept;

  /// The shard's stop: passed on to every Drainable enlisted here.
  void on_stop_requested() override;
  void on_drain_end() override;

  [[nodiscard]] detail::NetShardState& state() noexcept { return *state_; }
  [[nodiscard]] Shard& shard() const noexcept { return *shard_; }

 private:
  friend class Drainable;
  void each_drainable(void (Drainable::*hook)());

  Shard* shard_;
  Drainable* drainables_ = nullptr;
  std::unique_ptr<detail::NetShardState> state_;
  std::unique_ptr<uring::BufferRing> ring_;
  std::unique_ptr<std::byte[]> memory_;
  std::atomic<unsigned> want_count_{4096};
  std::atomic<unsigned> want_size_{4096};
  unsigned count_ = 0;
  unsigned size_ = 0;
  unsigned held_ = 0;
  std::array<StatCounter, static_cast<std::size_t>(CloseReason::timeout) + 1> closed_{};
};

}  // namespace ringshard::net
