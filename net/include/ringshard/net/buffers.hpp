// Memory a send can take without copying.
//
// - SharedBuffer: immutable bytes with an atomic reference count, one heap
//   block. The same buffer can be queued on many connections, on any shard
//   (a broadcast), and is freed when the last send and the last handle let
//   go of it.
// - RecvBuffer: a buffer the connection received into, kept past on_data
//   (ConnectionCore::keep_received()). It goes back to the shard's receive
//   ring when it is destroyed, for instance when the send that carries it
//   completes. Shard-thread only.
// - SendDone: for memory the caller owns, called on the connection's shard
//   once the kernel no longer reads it (sent, or the connection dropped it).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <span>
#include <string_view>
#include <utility>

#include "ringshard/framework/job.hpp"

namespace ringshard::net {

class NetShard;

class SharedBuffer {
 public:
  SharedBuffer() noexcept = default;
  /// A buffer of `size` bytes to fill through writable() before it is shared.
  explicit SharedBuffer(std::size_t size) : block_(Block::make(size)) {}
  /// A buffer holding a copy of `bytes`.
  static SharedBuffer copy_of(std::span<const std::byte> bytes) {
    SharedBuffer b(bytes.size());
    if (!bytes.empty()) std::memcpy(b.block_->data(), bytes.data(), bytes.size());
    return b;
  }
  static SharedBuffer copy_of(std::string_view bytes) {
    return copy_of(std::as_bytes(std::span(bytes.data(), bytes.size())));
  }

  SharedBuffer(const SharedBuffer& o) noexcept : block_(o.block_) {
    if (block_) block_->refs.fetch_add(1, std::memory_order_relaxed);
  }
  SharedBuffer(SharedBuffer&& o) noexcept : block_(std::exchange(o.block_, nullptr)) {}
  SharedBuffer& operator=(SharedBuffer o) noexcept {
    std::swap(block_, o.block_);
    return *this;
  }
  ~SharedBuffer() {
    if (block_ && block_->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) Block::destroy(block_);
  }

  /// The bytes, to fill before the buffer is sent or shared.
  [[nodiscard]] std::span<std::byte> writable() noexcept {
    return block_ ? std::span<std::byte>(block_->data(), block_->size) : std::span<std::byte>();
  }
  [[nodiscard]] std::span<const std::byte> bytes() const noexcept {
    return block_ ? std::span<const std::byte>(block_->data(), block_->size) : std::span<const std::byte>();
  }
  [[nodiscard]] std::size_t size() const noexcept { return block_ ? block_->size : 0; }
  [[nodiscard]] bool empty() const noexcept { return size() == 0; }
  /// Handles (including queued sends) that share the bytes.
  [[nodiscard]] long use_count() const noexcept {
    return block_ ? block_->refs.load(std::memory_order_relaxed) : 0;
  }

 private:
  struct Block {
    std::atomic<long> refs{1};
    std::size_t size = 0;
    std::byte* data() noexcept { return reinterpret_cast<std::byte*>(this + 1); }
    static Block* make(std::size_t size) {
      void* p = ::operator new(sizeof(Block) + size);
      Block* b = new (p) Block;
      b->size = size;
      return b;
    }
    static void destroy(Block* b) noexcept {
      b->~Block();
      ::operator delete(b);
    }
  };
  Block* block_ = nullptr;
};

class RecvBuffer {
 public:
  RecvBuffer() noexcept = default;
  RecvBuffer(RecvBuffer&& o) noexcept
      : net_(std::exchange(o.net_, nullptr)), bid_(o.bid_), data_(std::exchange(o.data_, nullptr)),
        size_(std::exchange(o.size_, 0)), heap_(std::move(o.heap_)) {}
  RecvBuffer& operator=(RecvBuffer&& o) noexcept {
    if (this != &o) {
      release();
      net_ = std::exchange(o.net_, nullptr);
      bid_ = o.bid_;
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
      heap_ = std::move(o.heap_);
    }
    return *this;
  }
  RecvBuffer(const RecvBuffer&) = delete;
  RecvBuffer& operator=(const RecvBuffer&) = delete;
  ~RecvBuffer() { release(); }

  [[nodiscard]] std::span<const std::byte> bytes() const noexcept { return {data_, size_}; }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
  /// True when this is one of the shard's receive-ring buffers (not a copy).
  [[nodiscard]] bool from_ring() const noexcept { return net_ != nullptr; }
  /// Keeps only bytes [offset, offset + count) (for sending a part).
  void narrow(std::size_t offset, std::size_t count) noexcept {
    if (offset > size_) offset = size_;
    if (count > size_ - offset) count = size_ - offset;
    data_ += offset;
    size_ = count;
  }

 private:
  friend class NetShard;
  RecvBuffer(NetShard* net, std::uint16_t bid, const std::byte* data, std::size_t size) noexcept
      : net_(net), bid_(bid), data_(data), size_(size) {}
  RecvBuffer(std::unique_ptr<std::byte[]> heap, std::size_t size) noexcept
      : data_(heap.get()), size_(size), heap_(std::move(heap)) {}
  void release() noexcept;

  NetShard* net_ = nullptr;  // set: a ring buffer to give back
  std::uint16_t bid_ = 0;
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  std::unique_ptr<std::byte[]> heap_;  // set: a copy, or the fallback receive buffer
};

/// Called once the kernel no longer reads a caller-owned send (`sent` is
/// false when the connection dropped it unsent, or sent only a part).
using SendDone = InlineFunction<void(bool sent), 48>;

}  // namespace ringshard::net
