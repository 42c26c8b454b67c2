// Connection actors: a socket owned by an actor on one shard.
//
//   struct Echo : ringshard::net::Connection<Echo> {
//     void on_data(std::span<const std::byte> bytes) override { send(bytes); }
//   };
//   auto listener = ringshard::net::listen<Echo>(runtime, {.address = Address::parse("127.0.0.1:0")});
//
// Reception is a multishot recv into the shard's provided-buffer ring: on_data
// sees a span into the buffer, which goes back to the ring when on_data
// returns. When the ring runs dry the connection falls back to one plain recv
// into its own buffer, then re-arms, so no byte is lost and nothing stalls.
// Sends are queued in order; one sendmsg is in flight per socket, gathering
// up to 64 queued chunks; short sends continue. Above the high watermark of
// unsent bytes reception pauses until the queue drains below the low one.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ringshard/actors/actor.hpp"
#include "ringshard/net/address.hpp"

namespace ringshard::net {

enum class CloseReason {
  closed,          ///< close() by this side, after everything queued was sent
  aborted,         ///< abort() by this side
  peer_closed,     ///< the peer closed (or shut down its sending side) cleanly
  peer_reset,      ///< the peer reset the connection
  error,           ///< a socket error (see the connection's last_error())
  idle_timeout,    ///< nothing sent or received within the idle timeout
  read_timeout,    ///< nothing received within the read timeout
  connect_failed,  ///< a client connection could not be established
  shutdown,        ///< the shard is stopping
};
const char* to_string(CloseReason reason) noexcept;

struct ConnectionOptions {
  std::size_t high_watermark = 1 << 20;  ///< unsent bytes that pause reception
  std::size_t low_watermark = 256 << 10; ///< unsent bytes that resume it
  std::chrono::milliseconds idle_timeout{0};  ///< 0: none
  std::chrono::milliseconds read_timeout{0};  ///< 0: none
  bool nodelay = true;                   ///< TCP_NODELAY on TCP sockets
};

namespace detail {
class Socket;
}

/// The non-template part of every connection: socket state and I/O.
class ConnectionCore {
 public:
  virtual ~ConnectionCore();
  ConnectionCore(const ConnectionCore&) = delete;
  ConnectionCore& operator=(const ConnectionCore&) = delete;

  /// Called once the socket is ready (accepted, or connected for a client).
  virtual void on_open() {}
  /// Called for every chunk received; the bytes are valid until it returns.
  virtual void on_data(std::span<const std::byte> bytes) = 0;
  /// The peer shut down its sending side (a half-close, or the read side of a
  /// full close): nothing more will arrive, but sending still works. The
  /// default closes once everything queued is sent; override it to finish
  /// answering first, then close(). on_close then reports peer_closed.
  virtual void on_peer_shutdown() { close(); }
  /// Unsent bytes dropped from above the high watermark to the low one
  /// (reception resumes at the same time).
  virtual void on_drain() {}
  /// Called once when the connection is over; the actor stops right after.
  virtual void on_close(CloseReason /*reason*/) {}

  /// Queues a copy of `bytes` for sending.
  void send(std::span<const std::byte> bytes);
  void send(std::string_view bytes) { send(std::as_bytes(std::span(bytes.data(), bytes.size()))); }
  /// Queues `bytes`, taking ownership (no copy).
  void send(std::string&& bytes);
  /// An empty string to build the next send in, with the capacity of a
  /// recycled send buffer when the shard has one: build, then
  /// send(std::move(it)), and steady traffic allocates nothing.
  [[nodiscard]] std::string send_buffer() noexcept;
  /// Sends what is queued, then closes.
  void close();
  /// Closes now, dropping what is queued.
  void abort();

  [[nodiscard]] bool is_open() const noexcept;
  [[nodiscard]] int fd() const noexcept;
  /// The remote address (looked up on first use for accepted sockets).
  [[nodiscard]] const Address& peer() const;
  /// Bytes queued but not yet accepted by the kernel.
  [[nodiscard]] std::size_t pending_send_bytes() const noexcept;
  /// Whether reception is paused by backpressure.
  [[nodiscard]] bool reading_paused() const noexcept;
  /// The errno behind CloseReason::error / peer_reset / connect_failed.
  [[nodiscard]] int last_error() const noexcept { return last_error_; }
  void set_options(const ConnectionOptions& options);
  [[nodiscard]] const ConnectionOptions& options() const noexcept { return options_; }

  // Used by the listener and connect(): give the connection its socket.
  void attach_accepted(int fd, Address peer) noexcept {
    pending_fd_ = fd;
    peer_ = peer;
  }
  void attach_connect(Address target) noexcept { connect_to_ = target; }

 protected:
  ConnectionCore() = default;
  /// Starts I/O on the socket given by attach_*; called from on_start.
  void start_io(actors::ActorBase& self);
  /// Called from on_stop: the actor is going away.
  void stop_io() noexcept;

 private:
  friend class detail::Socket;
  void closed_by_socket(CloseReason reason, int error);

  detail::Socket* socket_ = nullptr;
  actors::ActorBase* actor_ = nullptr;
  int pending_fd_ = -1;
  mutable Address peer_{};
  Address connect_to_{};
  ConnectionOptions options_{};
  int last_error_ = 0;
  bool close_reported_ = false;
};

/// Base of user connection actors: an Actor (typed messages from anywhere)
/// that owns a socket.
template <class Derived>
class Connection : public actors::Actor<Derived>, public ConnectionCore {
 public:
  void on_start() final { start_io(*this); }
  void on_stop() final { stop_io(); }
};

/// Per-shard networking state: the provided-buffer ring and live counters.
class NetShard final : public ShardExtension {
 public:
  static constexpr std::uint16_t kBufferGroup = 0x5253;  // "RS"
  static NetShard& of(Shard& shard);

  explicit NetShard(Shard& shard) : shard_(&shard) {}
  ~NetShard() override;

  /// Buffer count and size; set before the first connection on the shard.
  static void configure_buffers(unsigned count, unsigned size) noexcept;

  /// Live connections on this shard (read by listeners on other shards).
  std::atomic<int> connections{0};
  std::atomic<std::uint64_t> accepted{0};
  std::atomic<std::uint64_t> closed{0};
  std::atomic<std::uint64_t> buffer_fallbacks{0};

  // Shard thread only.
  void ensure_buffers();
  [[nodiscard]] std::byte* buffer(std::uint16_t bid) noexcept { return memory_.get() + std::size_t{bid} * size_; }
  [[nodiscard]] unsigned buffer_size() const noexcept { return size_; }
  void give_back(std::uint16_t bid) noexcept;
  /// Send-queue strings are recycled through the shard, so that a steady
  /// stream of sends allocates nothing and idle connections keep no memory.
  [[nodiscard]] std::string take_chunk() noexcept;
  void recycle_chunk(std::string&& chunk) noexcept;
  /// Sockets with new bytes to send are flushed together once the current
  /// batch of work is done (a task on this shard's run queue, which runs
  /// before the next submit): what several receives or handlers queued in
  /// one turn leaves in one send.
  void schedule_flush(detail::Socket* socket);
  void cancel_flush(detail::Socket* socket) noexcept;

 private:
  void run_flushes();
  std::vector<detail::Socket*> flush_list_;
  std::vector<detail::Socket*> flushing_;
  bool flush_posted_ = false;
  static constexpr std::size_t kMaxSpareChunkBytes = std::size_t{1} << 20;
  static constexpr std::size_t kMaxSpareChunkCapacity = std::size_t{64} << 10;
  Shard* shard_;
  std::vector<std::string> spare_chunks_;
  std::size_t spare_chunk_bytes_ = 0;
  std::unique_ptr<uring::BufferRing> ring_;
  std::unique_ptr<std::byte[]> memory_;
  unsigned count_ = 0;
  unsigned size_ = 0;
};

}  // namespace ringshard::net
