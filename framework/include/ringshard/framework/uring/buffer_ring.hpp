// BufferRing: a provided-buffer ring (IORING_REGISTER_PBUF_RING), the
// liburing io_uring_setup_buf_ring / io_uring_buf_ring_* family as one RAII type.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "ringshard/framework/uring/ring.hpp"

namespace ringshard::uring {

// ---- free functions on a mapped io_uring_buf_ring (liburing names) -------------
/// io_uring_buf_ring_mask.
inline constexpr int buf_ring_mask(unsigned entries) noexcept { return static_cast<int>(entries - 1); }
/// io_uring_buf_ring_init: resets the tail.
inline void buf_ring_init(io_uring_buf_ring* br) noexcept { br->tail = 0; }
/// io_uring_buf_ring_add: writes slot tail+offset; visible to the kernel after buf_ring_advance.
/// The slots start at the ring's first byte. `br->bufs` is not used: in C++ the
/// 6.1 header's __DECLARE_FLEX_ARRAY wraps it after an empty struct of size 1,
/// which puts it 8 bytes past where the kernel reads.
inline void buf_ring_add(io_uring_buf_ring* br, void* addr, unsigned len, std::uint16_t bid, int mask,
                         int buf_offset) noexcept {
  io_uring_buf* buf = reinterpret_cast<io_uring_buf*>(br) + ((br->tail + buf_offset) & mask);
  buf->addr = reinterpret_cast<std::uintptr_t>(addr);
  buf->len = len;
  buf->bid = bid;
}
/// io_uring_buf_ring_advance: publishes `count` added buffers (release store of the tail).
inline void buf_ring_advance(io_uring_buf_ring* br, int count) noexcept {
  const auto tail = static_cast<std::uint16_t>(br->tail + count);
  std::atomic_ref<std::uint16_t>(br->tail).store(tail, std::memory_order_release);
}

class BufferRing {
 public:
  /// io_uring_setup_buf_ring: maps `entries` (a power of two, at most 32768)
  /// slots and registers them as group `bgid`. flags: IOU_PBUF_RING_INC for
  /// incremental consumption. Throws std::system_error on failure.
  BufferRing(Ring& ring, unsigned entries, std::uint16_t bgid, unsigned flags = 0);
  ~BufferRing();
  BufferRing(const BufferRing&) = delete;
  BufferRing& operator=(const BufferRing&) = delete;

  [[nodiscard]] std::uint16_t bgid() const noexcept { return bgid_; }
  [[nodiscard]] unsigned entries() const noexcept { return entries_; }
  [[nodiscard]] int mask() const noexcept { return buf_ring_mask(entries_); }
  [[nodiscard]] io_uring_buf_ring* get() const noexcept { return br_; }

  /// Resets the ring to empty (only while the kernel holds no buffer of it).
  void init() noexcept { buf_ring_init(br_); }
  /// Stages buffer `bid` at position `offset` past the tail.
  void add(void* addr, unsigned len, std::uint16_t bid, int offset = 0) noexcept {
    buf_ring_add(br_, addr, len, bid, mask(), offset);
  }
  /// Publishes `count` staged buffers.
  void advance(int count) noexcept { buf_ring_advance(br_, count); }
  /// io_uring_buf_ring_cq_advance: publishes `count` buffers and marks `cq_count`
  /// CQEs seen, the two stores a recv loop needs per batch.
  void cq_advance(Ring& ring, int count, unsigned cq_count) noexcept {
    advance(count);
    ring.cq_advance(cq_count);
  }
  /// Buffers the kernel can still take (-errno if the kernel cannot tell).
  int available(Ring& ring) const noexcept;

 private:
  Ring* ring_;
  io_uring_buf_ring* br_ = nullptr;
  std::size_t size_ = 0;
  unsigned entries_;
  std::uint16_t bgid_;
};

}  // namespace ringshard::uring
