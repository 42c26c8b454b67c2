// Per-shard networking state: the receive ring (provided buffers shared by
// every connection of the shard), send-queue memory recycled between
// connections, the batched flush, and live counters other threads may read.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "ringshard/framework/shard.hpp"
#include "ringshard/framework/uring/buffer_ring.hpp"
#include "ringshard/net/buffers.hpp"
#include "ringshard/net/close_reason.hpp"

namespace ringshard::net {

/// The shard's receive ring: `count` buffers of `size` bytes (count a power
/// of two, at most 32768). Multishot receives of every connection on the
/// shard draw from it.
///
/// Where the kernel offers them (probed when the ring is built; a log line
/// says what is missing), two features change how receives use the ring:
/// - incremental consumption (Linux 6.12, IOU_PBUF_RING_INC): a buffer is
///   filled in parts by consecutive receives of any connection of the shard,
///   so a small message takes only its bytes and a large one fits one buffer.
///   The ring's memory (count x size) is then arranged as buffers of
///   `incremental_size` bytes, when that makes at least 8 of them and `size`
///   is smaller; otherwise the shape stays count x size.
/// - receive bundles (Linux 6.10, IORING_RECVSEND_BUNDLE), for a ring that
///   is not incremental: one receive completion may cover several buffers
///   (on_data then runs once per buffer). An incremental buffer holds a whole
///   receive already.
/// Both are on by default; false forces the older path.
struct ReceiveBuffers {
  unsigned count = 4096;
  unsigned size = 4096;
  bool incremental = true;
  unsigned incremental_size = 65536;
  bool bundles = true;
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
  /// [1, 32768], a size of 0 or an incremental_size of 0.
  void set_receive_buffers(const ReceiveBuffers& buffers);
  [[nodiscard]] ReceiveBuffers receive_buffers() const noexcept;
  /// Direct descriptors: each connection's socket is also installed in the
  /// ring's fixed file table (a sparse table of `slots` entries, registered
  /// with the shard's first connection), and its receives, sends, polls and
  /// close name the slot (IOSQE_FIXED_FILE): no lookup in the process's
  /// file table and no reference counting per operation. The descriptor
  /// stays open for the calls that are not io_uring operations (socket
  /// options, shutdown). A connection that finds the table full uses its
  /// plain descriptor (counted in direct_fallbacks). Off (0) by default:
  /// measured level or 1-2% slower per core than plain descriptors on
  /// loopback echo (README, Performance). A kernel without sparse tables (or
  /// a ring whose table is taken) runs without, with one log line. Takes
  /// effect if the table is not registered yet. Any thread.
  void set_fixed_files(unsigned slots) noexcept { want_fixed_files_.store(slots, std::memory_order_relaxed); }

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
  /// Plain recvs made because the ring was empty or low.
  StatCounter buffer_fallbacks;
  /// keep_received() calls that copied because the ring was running low.
  StatCounter kept_copies;
  /// Connections that found the fixed file table full (plain descriptors).
  StatCounter direct_fallbacks;

  // ---- shard thread only ----
  void ensure_buffers();
  [[nodiscard]] std::byte* buffer(std::uint16_t bid) noexcept { return memory_.get() + std::size_t{bid} * size_; }
  /// The ring as built (after ensure_buffers): buffers, bytes each, and the
  /// features in use.
  [[nodiscard]] unsigned buffer_count() const noexcept { return count_; }
  [[nodiscard]] unsigned buffer_size() const noexcept { return size_; }
  [[nodiscard]] bool incremental() const noexcept { return incremental_; }
  [[nodiscard]] bool bundles() const noexcept { return bundles_; }
  /// Direct descriptors (after ensure_buffers): on, the table's slots, and
  /// the slots in use.
  [[nodiscard]] bool direct() const noexcept { return fixed_slots_ != 0; }
  [[nodiscard]] unsigned fixed_slots() const noexcept { return fixed_slots_; }
  [[nodiscard]] unsigned fixed_in_use() const noexcept {
    return fixed_next_ - static_cast<unsigned>(fixed_free_.size());
  }
  /// Installs `fd` in a free slot of the table: the slot, or -1 (no direct
  /// descriptors, or the table is full).
  [[nodiscard]] int install(int fd) noexcept;
  /// The slot's close completed: it may take another socket.
  void uninstalled(unsigned slot) noexcept;

  /// Ring buffers the kernel has used up and the shard has not given back yet
  /// (the application keeps bytes of them).
  [[nodiscard]] unsigned buffers_held() const noexcept { return held_; }
  /// Kept bytes (RecvBuffers from the ring) alive, with incremental buffers
  /// or bundles (several may share a buffer); 0 otherwise.
  [[nodiscard]] unsigned slices_kept() const noexcept { return slices_; }

  /// Delivers the bytes of a receive completion (cqe.res > 0, a buffer
  /// selected) as the buffers that hold them, in order: deliver(bytes, bid)
  /// returns true when the application kept the bytes (keep()). A buffer
  /// goes back to the ring once the kernel has used it up and nothing keeps
  /// bytes of it.
  template <class Deliver>
  void take_received(const io_uring_cqe& cqe, Deliver&& deliver);
  /// Keeps received bytes (inside ring buffer `bid`) in a RecvBuffer, or a
  /// copy when the ring runs low (fewer than 1/8 of its buffers left), so
  /// that kept buffers cannot starve the shard's receives.
  [[nodiscard]] RecvBuffer keep(std::uint16_t bid, std::span<const std::byte> bytes);
  /// A RecvBuffer holding a copy of `bytes`.
  [[nodiscard]] static RecvBuffer copy_of(std::span<const std::byte> bytes);
  /// A RecvBuffer owning `heap`, of which the first `size` bytes were received.
  [[nodiscard]] static RecvBuffer adopt(std::unique_ptr<std::byte[]> heap, std::size_t size) noexcept;
  /// Fewer than 1/8 of the ring's buffers are free: received bytes kept are
  /// copied, and sockets receiving without the ring stay so.
  [[nodiscard]] bool ring_low() const noexcept { return held_ + count_ / 8 >= count_; }

  /// Send-queue strings are recycled through the shard, so that a steady
  /// stream of sends allocates nothing and idle connections keep no memory.
  [[nodiscard]] std::string take_chunk() noexcept;
  void recycle_chunk(std::string&& chunk) noexcept;

  /// Gives back to the system the memory the shard keeps for reuse: the
  /// spare send strings and send-queue blocks, the run queue's peak
  /// (Shard::shrink_run_queue), and, when no connection is
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
  friend class RecvBuffer;
  void each_drainable(void (Drainable::*hook)());
  /// A RecvBuffer of buffer `bid` is gone.
  void release(std::uint16_t bid) noexcept;
  /// Buffer `bid` goes back to the ring (at its tail).
  void give_back(std::uint16_t bid) noexcept;
  [[noreturn]] static void out_of_step(const char* what) noexcept;

  Shard* shard_;
  Drainable* drainables_ = nullptr;
  std::unique_ptr<detail::NetShardState> state_;
  // The kernel writes into the buffers until the ring is unregistered:
  // declared first, their memory is freed last.
  std::unique_ptr<std::byte[]> memory_;
  std::unique_ptr<uring::BufferRing> ring_;
  std::atomic<unsigned> want_count_{4096};
  std::atomic<unsigned> want_size_{4096};
  std::atomic<unsigned> want_fixed_files_{0};
  void ensure_files();
  unsigned fixed_slots_ = 0;
  unsigned fixed_next_ = 0;           // slots below were used at least once
  std::vector<unsigned> fixed_free_;  // slots used before and free again
  std::atomic<bool> want_incremental_{true};
  std::atomic<bool> want_bundles_{true};
  std::atomic<unsigned> want_incremental_size_{65536};
  unsigned count_ = 0;
  unsigned size_ = 0;
  unsigned held_ = 0;
  bool incremental_ = false;
  bool bundles_ = false;
  // With incremental buffers or bundles the kernel takes buffers in ring
  // order and a completion names only the first: which buffer sits at each
  // ring position is recorded here (head_: the next the kernel takes,
  // head_offset_ bytes into it; filled_: positions given to the kernel), and
  // several RecvBuffers may share a buffer (kept_ counts them; out_: the
  // kernel has used the buffer up).
  bool tracked_ = false;
  std::vector<std::uint16_t> ring_bids_;
  std::vector<std::uint32_t> kept_;
  std::vector<std::uint8_t> out_;
  unsigned head_ = 0;
  unsigned head_offset_ = 0;
  unsigned filled_ = 0;
  unsigned slices_ = 0;
  std::array<StatCounter, static_cast<std::size_t>(CloseReason::timeout) + 1> closed_{};
};

template <class Deliver>
void NetShard::take_received(const io_uring_cqe& cqe, Deliver&& deliver) {
  const auto first = static_cast<std::uint16_t>(cqe.flags >> IORING_CQE_BUFFER_SHIFT);
  if (!tracked_) {  // one whole buffer, named by the completion
    ++held_;
    if (!deliver(std::span<const std::byte>(buffer(first), static_cast<std::size_t>(cqe.res)), first)) {
      give_back(first);
    }
    return;
  }
  const unsigned mask = count_ - 1;
  if (ring_bids_[head_ & mask] != first) out_of_step("the completion's buffer is not at the ring's head");
  std::size_t left = static_cast<std::size_t>(cqe.res);
  bool partial = false;
  while (left > 0) {
    if (head_ == filled_) out_of_step("the completion has more bytes than the ring gave out");
    const std::uint16_t bid = ring_bids_[head_ & mask];
    const std::size_t room = size_ - head_offset_;
    const std::size_t take = left < room ? left : room;
    const std::span<const std::byte> bytes(buffer(bid) + head_offset_, take);
    left -= take;
    // Without incremental consumption a receive uses its buffers up, even
    // the last one partly filled; with it the kernel goes on filling.
    const bool used_up = !incremental_ || take == room;
    if (used_up) {
      ++head_;
      head_offset_ = 0;
    } else {
      head_offset_ += static_cast<unsigned>(take);
      partial = true;
    }
    // Marked used up only after delivery: a RecvBuffer released during it
    // must not give the buffer back, the line below does.
    (void)deliver(bytes, bid);
    if (used_up) {
      out_[bid] = 1;
      ++held_;
      if (kept_[bid] == 0) give_back(bid);
    }
    if (partial) break;
  }
  if (left > 0 || (incremental_ && partial != ((cqe.flags & IORING_CQE_F_BUF_MORE) != 0))) {
    out_of_step("the completion's byte count does not match the ring's buffers");
  }
}

}  // namespace ringshard::net
