// Ordered replies for pipelined request/response protocols on any connection.
//
//   struct Kv : net::Connection<Kv> {
//     net::ReplyQueue replies{*this};
//     std::size_t on_input(std::span<const std::byte> in) override {
//       auto [request, used] = parse(in);              // 0 bytes used: wait for more
//       if (used == 0) return 0;
//       net::ReplySlot slot = replies.reserve();      // its place in the answer order
//       ask(store, Get{request.key}, [slot = std::move(slot)](auto result) mutable {
//         slot(result.ok() ? format(*result) : "-ERR store gone\r\n");
//       });
//       return used;
//     }
//   };
//
// reserve() takes the next place; a slot is filled now or later (after asks
// to other shards, timers, ...), and replies leave strictly in reservation
// order: a filled slot waits for the ones before it. What becomes ready in
// one turn leaves in one send. With max_open slots open, the connection stops
// reading (framed input keeps what it holds) until replies leave. A slot
// dropped unfilled sends `abandoned_reply` in its place, or, when that is
// empty, closes the connection after the replies before it (the stream could
// not stay in step otherwise). Filling a slot after the connection is gone
// does nothing. Shard-thread only; the queue lives in the connection.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace ringshard::net {

class ConnectionCore;
class ReplyQueue;
namespace detail {
struct ReplyCore;
}

/// The right to fill one reply, in its place. Move-only.
class ReplySlot {
 public:
  ReplySlot() noexcept = default;
  ReplySlot(ReplySlot&& other) noexcept;
  ReplySlot& operator=(ReplySlot&& other) noexcept;
  ReplySlot(const ReplySlot&) = delete;
  ReplySlot& operator=(const ReplySlot&) = delete;
  /// An unfilled slot is abandoned (see ReplyQueue).
  ~ReplySlot();

  /// Fills the slot (only the first fill counts).
  void operator()(std::string&& bytes);
  void operator()(std::string_view bytes) { (*this)(std::string(bytes)); }
  void operator()(const char* bytes) { (*this)(std::string(bytes)); }
  /// True while this slot still owes its reply.
  [[nodiscard]] explicit operator bool() const noexcept { return owed_; }

 private:
  friend class ReplyQueue;
  ReplySlot(std::weak_ptr<detail::ReplyCore> core, std::uint64_t seq) noexcept
      : core_(std::move(core)), seq_(seq), owed_(true) {}
  void abandon() noexcept;

  std::weak_ptr<detail::ReplyCore> core_;
  std::uint64_t seq_ = 0;
  bool owed_ = false;
};

class ReplyQueue {
 public:
  /// Replies for `connection` (the queue is normally one of its members).
  explicit ReplyQueue(ConnectionCore& connection, std::size_t max_open = 256, std::string abandoned_reply = {});
  ~ReplyQueue();
  ReplyQueue(const ReplyQueue&) = delete;
  ReplyQueue& operator=(const ReplyQueue&) = delete;

  /// The next place in the reply order.
  [[nodiscard]] ReplySlot reserve();
  /// Slots reserved whose reply has not left yet.
  [[nodiscard]] std::size_t open() const noexcept;
  [[nodiscard]] std::size_t max_open() const noexcept;

 private:
  friend class ConnectionCore;
  void detach() noexcept;  // the connection is going away first
  std::shared_ptr<detail::ReplyCore> core_;
};

}  // namespace ringshard::net
