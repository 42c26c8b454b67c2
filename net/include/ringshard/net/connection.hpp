// Connection actors: a socket owned by an actor on one shard.
//
//   struct Echo : ringshard::net::Connection<Echo> {
//     void on_data(std::span<const std::byte>) override { send(keep_received()); }
//   };
//   auto listener = ringshard::net::listen<Echo>(runtime, {.address = Address::parse("127.0.0.1:0")});
//
// Reception is a multishot recv into the shard's receive ring (provided
// buffers): on_data sees a span into the buffer, which goes back to the ring
// when on_data returns, unless on_data keeps it (keep_received()), for
// instance to send it on without a copy. When the ring runs dry the
// connection falls back to plain recvs of up to 64 KiB into its own buffer
// (kept without a copy when a receive fills half of it) for as long as the
// ring stays low, then re-arms, so no byte is lost and nothing stalls.
//
// Framed input: a protocol whose messages cross receive boundaries overrides
// on_input instead of on_data. on_input sees every byte not consumed yet and
// returns how many it consumed (0: wait for more); what is left is kept, with
// one amortised copy, up to ConnectionOptions::max_input_bytes.
//
// Sends are queued in order: an owned string, a copy, a SharedBuffer, a kept
// RecvBuffer, or caller-owned memory with a SendDone. The queue's entries
// never move while queued, so the kernel always reads live memory. One
// sendmsg is in flight per socket, gathering up to 64 queued entries; short
// sends continue; what several handlers queue in one turn leaves in one send.
// Above the high watermark of unsent bytes reception pauses until the queue
// drains below the low one. pause_reading()/resume_reading() pause it on the
// application's behalf as well.
//
// Timeouts (idle, read, send, and the application's own through on_tick)
// read no clock on the I/O path: I/O only bumps counters, and a periodic tick
// per connection (a quarter of the shortest timeout) compares them. A phase
// counts from the first tick that sees it, so a timeout fires between its
// value and its value plus one tick, never early.
//
// close_lingering() closes the way a server should after a response that
// leaves input unread (an HTTP 413): send what is queued, shut down the
// sending side, read and discard for a bounded time, then close. A plain
// close with unread input makes the kernel send a reset, which destroys the
// response before the peer has read it.
//
// Exceptions from any handler abort the connection with CloseReason::error
// (one error line names the connection's type and the exception); the shard
// and the other connections go on.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ringshard/actors/actor.hpp"
#include "ringshard/net/address.hpp"
#include "ringshard/net/close_reason.hpp"
#include "ringshard/net/buffers.hpp"
#include "ringshard/net/net_shard.hpp"

namespace ringshard::net {

struct ConnectionOptions {
  std::size_t high_watermark = 1 << 20;  ///< unsent bytes that pause reception
  std::size_t low_watermark = 256 << 10; ///< unsent bytes that resume it
  std::chrono::milliseconds idle_timeout{0};  ///< nothing sent or received for this long: close (0: none)
  std::chrono::milliseconds read_timeout{0};  ///< nothing received for this long: close (0: none)
  /// Bytes are queued and the peer took none of them for this long (no send
  /// completed, and the kernel's send queue did not shrink): the connection
  /// is reset, dropping the queue (0: none). Also applies while a close()
  /// waits for the queue to drain.
  std::chrono::milliseconds send_timeout{0};
  bool nodelay = true;                   ///< TCP_NODELAY on TCP sockets
  /// Received bytes kept unconsumed (framed input, or held while reading is
  /// paused). Over it the connection closes with CloseReason::input_too_large.
  std::size_t max_input_bytes = 1 << 20;
  /// close_lingering(): after the sending side is shut down, input is read
  /// and discarded until the peer closes, for at most `linger_time` in all
  /// (0: no lingering, close_lingering() is close()), `linger_timeout`
  /// without input (0: no such bound), or `linger_bytes` bytes; then the
  /// socket closes.
  std::chrono::milliseconds linger_time{5000};
  std::chrono::milliseconds linger_timeout{2000};
  std::size_t linger_bytes = std::size_t{64} << 20;
};

namespace detail {
class Socket;
struct ReplyCore;
}  // namespace detail
class ReplyQueue;

/// The non-template part of every connection: socket state and I/O.
class ConnectionCore {
 public:
  virtual ~ConnectionCore();
  ConnectionCore(const ConnectionCore&) = delete;
  ConnectionCore& operator=(const ConnectionCore&) = delete;

  /// Called once the socket is ready (accepted, or connected for a client).
  virtual void on_open() {}
  /// Called for every chunk received; the bytes are valid until it returns
  /// (keep_received() keeps them). The default frames the input through
  /// on_input.
  virtual void on_data(std::span<const std::byte> bytes);
  /// Framed input (used when on_data is not overridden): `bytes` are all the
  /// bytes received and not consumed yet. Return how many were consumed; it
  /// is called again with the rest while it consumes something and reading
  /// is not paused. Return 0 to wait for more bytes. The default consumes
  /// (discards) everything.
  virtual std::size_t on_input(std::span<const std::byte> bytes) { return bytes.size(); }
  /// The peer shut down its sending side (a half-close, or the read side of a
  /// full close): nothing more will arrive, but sending still works. The
  /// default closes once every reply owed (open ReplyQueue slots, pending
  /// asks of this actor) is answered and everything queued is sent; override
  /// it to decide yourself. on_close then reports peer_closed.
  virtual void on_peer_shutdown() { close_when_done(); }
  /// Unsent bytes dropped from above the high watermark to the low one
  /// (reception resumes at the same time).
  virtual void on_drain() {}
  /// Called once when the connection is over; the actor stops right after.
  virtual void on_close(CloseReason /*reason*/) {}
  /// Called on every tick of the connection's timer while it is open, once
  /// set_tick() asked for ticks: where a protocol checks its own timeouts
  /// (with `now`, read once per tick) without reading the clock per request.
  virtual void on_tick(Clock::time_point /*now*/) {}

  // ---- sending (in order, whatever the form) ----
  /// Queues a copy of `bytes`.
  void send(std::span<const std::byte> bytes);
  void send(std::string_view bytes) { send(std::as_bytes(std::span(bytes.data(), bytes.size()))); }
  void send(const char* bytes) { send(std::string_view(bytes)); }
  /// Queues `bytes`, taking ownership (no copy).
  void send(std::string&& bytes);
  /// Queues shared bytes (no copy); the buffer is released after the send.
  void send(SharedBuffer bytes);
  /// Queues a received buffer kept with keep_received() (no copy); it goes
  /// back to the receive ring once sent.
  void send(RecvBuffer&& bytes);
  /// Queues caller-owned memory (no copy). `bytes` must stay valid and
  /// unchanged until `done` runs (on this shard: sent, or dropped unsent
  /// because the connection closed). `done` runs exactly once, also when the
  /// connection is already closed (then at once, with false).
  void send(std::span<const std::byte> bytes, SendDone done);
  /// An empty string to build the next send in, with the capacity of a
  /// recycled send buffer when the shard has one: build, then
  /// send(std::move(it)), and steady traffic allocates nothing.
  [[nodiscard]] std::string send_buffer() noexcept;

  // ---- receiving ----
  /// Inside on_data: keeps the buffer being delivered (no copy, unless the
  /// receive ring runs low), for instance to send it on. Outside on_data, or
  /// a second time for the same chunk: an empty RecvBuffer.
  [[nodiscard]] RecvBuffer keep_received();
  /// Stops receiving until resume_reading() (counted separately from the
  /// automatic pause of backpressure). Bytes already on their way are kept
  /// and delivered after resume_reading(). While paused, a reset from the
  /// peer still closes the connection (on_close with peer_reset), so one
  /// waiting for an answer from elsewhere does not outlive its client; a
  /// FIN is seen only once reading resumes.
  void pause_reading();
  void resume_reading();
  /// Received bytes kept and not consumed yet (framed input, or held while paused).
  [[nodiscard]] std::size_t buffered_input() const noexcept { return input_.size() - input_offset_; }

  /// Sends what is queued, then shuts down the sending side (the peer reads
  /// the end of the stream); receiving goes on. Later sends are dropped.
  void shutdown_write();
  /// Sends what is queued, then closes.
  void close();
  /// Sends what is queued, shuts down the sending side, then reads and
  /// discards input until the peer closes or a linger limit is reached
  /// (ConnectionOptions::linger_*), then closes. Nothing more is delivered.
  /// on_close reports CloseReason::closed.
  void close_lingering();
  /// Closes now, dropping what is queued.
  void abort();
  /// Closes now, dropping what is queued, reporting CloseReason::timeout:
  /// for a protocol's own timeouts (see on_tick).
  void timed_out();
  /// Closes once every reply owed (open ReplyQueue slots and this actor's
  /// pending asks) is answered and queued, and everything queued is sent.
  void close_when_done();

  [[nodiscard]] bool is_open() const noexcept;
  [[nodiscard]] int fd() const noexcept;
  /// The remote address (looked up on first use for accepted sockets).
  [[nodiscard]] const Address& peer() const;
  /// Bytes queued but not yet accepted by the kernel.
  [[nodiscard]] std::size_t pending_send_bytes() const noexcept;
  /// Whether reception is paused (by backpressure or by pause_reading()).
  [[nodiscard]] bool reading_paused() const noexcept;
  /// The errno behind CloseReason::error / peer_reset / connect_failed.
  [[nodiscard]] int last_error() const noexcept { return last_error_; }
  void set_options(const ConnectionOptions& options);
  [[nodiscard]] const ConnectionOptions& options() const noexcept { return options_; }
  /// Asks for on_tick() at least every `interval` while the connection is
  /// open (0: no ticks for the application). The tick is shared with the
  /// connection's own timeouts: one timer per connection.
  void set_tick(std::chrono::milliseconds interval);

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
  /// A handler threw (logged already): abort with CloseReason::error.
  void failed(std::exception_ptr error) noexcept;
  /// One of the actor's asks completed: a half-closed connection may be done.
  void ask_done() { check_done(); }

 private:
  friend class detail::Socket;
  friend class ReplyQueue;
  friend struct detail::ReplyCore;
  void closed_by_socket(CloseReason reason, int error);
  // Inside a catch block: logs the exception as this connection's and aborts.
  void handler_threw() noexcept;
  // From the socket: received bytes, in order. True when the ring buffer was kept.
  bool receive(std::span<const std::byte> bytes, std::uint16_t bid, bool from_ring);
  void keep_input(std::span<const std::byte> bytes);
  void drain_input();
  void schedule_drain();
  std::size_t frame(std::span<const std::byte> bytes);
  void set_paused(unsigned bit, bool on);
  void check_done();
  [[nodiscard]] bool input_paused() const noexcept { return pause_bits_ != 0; }
  [[nodiscard]] std::size_t owed() const noexcept;

  static constexpr unsigned kPausedByUser = 1;
  static constexpr unsigned kPausedByReplies = 2;

  detail::Socket* socket_ = nullptr;
  actors::ActorBase* actor_ = nullptr;
  ReplyQueue* replies_ = nullptr;
  int pending_fd_ = -1;
  mutable Address peer_{};
  Address connect_to_{};
  ConnectionOptions options_{};
  std::chrono::milliseconds tick_{0};
  int last_error_ = 0;
  bool close_reported_ = false;
  bool close_when_done_ = false;
  bool write_shut_ = false;
  bool draining_ = false;
  bool drain_posted_ = false;
  unsigned pause_bits_ = 0;
  std::size_t drained_ = 0;
  // The chunk on_data is looking at, for keep_received().
  std::span<const std::byte> current_{};
  std::uint16_t current_bid_ = 0;
  bool current_from_ring_ = false;
  bool current_kept_ = false;
  bool current_taken_ = false;
  std::string input_;  // bytes kept, from input_offset_ on
  std::size_t input_offset_ = 0;
};

/// Base of user connection actors: an Actor (typed messages from anywhere)
/// that owns a socket.
template <class Derived>
class Connection : public actors::Actor<Derived>, public ConnectionCore {
 public:
  void on_start() final { start_io(*this); }
  void on_stop() final { stop_io(); }

 protected:
  void on_failure(std::exception_ptr error) override { failed(error); }
  void on_ask_done() override { ask_done(); }
};

}  // namespace ringshard::net
