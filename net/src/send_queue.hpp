// The send queue of one socket: entries in order, each one form of send
// (owned string, shared buffer, kept receive buffer, caller-owned memory).
//
// The kernel reads an entry's bytes from the moment its send is prepared
// until that send's completion, and a string of 15 bytes or fewer keeps its
// bytes inside the string object. So entries never move: they live in
// fixed-size blocks linked in a list, and growing the queue adds a block
// instead of moving the entries. Empty blocks go back to the shard's pool,
// so an idle connection holds none.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <variant>

#include "ringshard/net/buffers.hpp"

namespace ringshard::net::detail {

struct External {
  const std::byte* data = nullptr;
  std::size_t size = 0;
  SendDone done;
};

struct SendEntry {
  std::variant<std::monostate, std::string, SharedBuffer, RecvBuffer, External> body;
  std::size_t offset = 0;  // bytes of it already sent

  [[nodiscard]] std::size_t size() const noexcept {
    switch (body.index()) {
      case 1: return std::get<1>(body).size();
      case 2: return std::get<2>(body).size();
      case 3: return std::get<3>(body).size();
      case 4: return std::get<4>(body).size;
      default: return 0;
    }
  }
  [[nodiscard]] const std::byte* data() const noexcept {
    switch (body.index()) {
      case 1: return reinterpret_cast<const std::byte*>(std::get<1>(body).data());
      case 2: return std::get<2>(body).bytes().data();
      case 3: return std::get<3>(body).bytes().data();
      case 4: return std::get<4>(body).data;
      default: return nullptr;
    }
  }
  [[nodiscard]] std::size_t left() const noexcept { return size() - offset; }
  [[nodiscard]] iovec unsent() const noexcept {
    return iovec{const_cast<std::byte*>(data() + offset), left()};
  }
};

struct SendBlock {
  static constexpr std::size_t kEntries = 16;
  SendEntry entries[kEntries];
  SendBlock* next = nullptr;
};

/// Empty blocks shared by the sockets of one shard (bounded).
class SendBlockPool {
 public:
  SendBlockPool() = default;
  SendBlockPool(const SendBlockPool&) = delete;
  SendBlockPool& operator=(const SendBlockPool&) = delete;
  ~SendBlockPool();
  SendBlock* take();
  void give(SendBlock* block) noexcept;
  /// Frees the spare blocks; returns the bytes freed.
  std::size_t release() noexcept;

 private:
  static constexpr std::size_t kMaxSpare = 256;  // 256 x ~2 KiB
  SendBlock* spare_ = nullptr;
  std::size_t count_ = 0;
};

class SendQueue {
 public:
  explicit SendQueue(SendBlockPool& pool) noexcept : pool_(&pool) {}
  SendQueue(const SendQueue&) = delete;
  SendQueue& operator=(const SendQueue&) = delete;
  ~SendQueue() { clear(); }

  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  SendEntry& front() noexcept { return head_->entries[head_index_]; }
  SendEntry& back() noexcept { return tail_->entries[tail_index_ - 1]; }

  /// Appends an empty entry (its address is stable until it is popped).
  SendEntry& push_back();
  /// Removes the front entry, releasing what it holds (a SendDone runs with
  /// `sent`).
  void pop_front(bool sent) noexcept;
  /// Drops the entries from index `keep` on (unsent: SendDone runs with false).
  void truncate(std::size_t keep) noexcept;
  void clear() noexcept { truncate(0); }

  /// Calls f(entry) for the first n entries, in order.
  template <class F>
  void for_first(std::size_t n, F&& f) {
    SendBlock* b = head_;
    std::size_t i = head_index_;
    for (std::size_t k = 0; k < n && b != nullptr; ++k) {
      f(b->entries[i]);
      if (++i == SendBlock::kEntries) {
        b = b->next;
        i = 0;
      }
    }
  }

 private:
  struct Done {
    SendDone done;
    bool sent = false;
    void run() noexcept;
  };
  static Done release(SendEntry& e, bool sent) noexcept;
  SendBlockPool* pool_;
  SendBlock* head_ = nullptr;
  SendBlock* tail_ = nullptr;
  std::size_t head_index_ = 0;  // first live entry in head_
  std::size_t tail_index_ = 0;  // one past the last live entry in tail_
  std::size_t size_ = 0;
};

}  // namespace ringshard::net::detail
