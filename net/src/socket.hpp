// The socket of one connection and its operations in the kernel: the state
// machine (connecting, open, closing, closed), multishot reception with the
// plain-recv fallback, the send queue with one send in flight, the lingering
// close, timeouts.
//
// Timeouts read no clock on the I/O path (a clock read costs up to ~0.2 us
// under some hypervisors, more than the rest of a small request): receives
// and sends only bump counters, and one timer per socket ticks at a quarter
// of the shortest timeout, reads the clock once, and compares the counters
// with the previous tick's. A phase (silence, a stalled send queue, the
// linger) counts from the first tick that sees it, so a timeout fires
// between its value and its value plus a tick or two, never early.
//
// It outlives its connection actor when the actor goes away with operations
// still in the kernel, and deletes itself once the last completion has
// arrived and the fd is closed: memory an SQE points at (queued entries, the
// gather array, the fallback buffer, the connect address) lives here.
#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string>

#include "ringshard/framework/reactor.hpp"
#include "ringshard/net/connection.hpp"
#include "send_queue.hpp"

namespace ringshard::net::detail {

/// Shard-local state of the net layer that no public header needs.
struct NetShardState {
  SendBlockPool blocks;
  std::vector<Socket*> flush_list;
  std::vector<Socket*> flushing;
  bool flush_posted = false;
  std::vector<std::string> spare_chunks;
  std::size_t spare_chunk_bytes = 0;

  /// Sockets with new bytes to send are flushed together once the current
  /// batch of work is done (a task on the shard's run queue, which runs
  /// before the next submit): what several receives or handlers queued in
  /// one turn leaves in one send.
  void schedule_flush(Shard& shard, Socket* socket);
  void cancel_flush(Socket* socket) noexcept;
  void run_flushes();
};

class Socket final : Timer {
 public:
  Socket(ConnectionCore* owner, Reactor& reactor, int fd, const ConnectionOptions& options);

  void open();
  void connect(const Address& target);

  // Sending: each returns false when the socket no longer sends (the entry is
  // then released at once).
  void send(std::string&& bytes);
  void send_copy(std::span<const std::byte> bytes);
  void send(SharedBuffer&& bytes);
  void send(RecvBuffer&& bytes);
  void send(std::span<const std::byte> bytes, SendDone&& done);

  void close(CloseReason reason);
  /// close(), then shut down the sending side once the queue is sent, and
  /// read and discard input (from now on) until the peer closes or a linger
  /// limit is reached; then close.
  void close_lingering();
  void shutdown_write();
  void abort(CloseReason reason, int error = 0);
  /// The owning actor is going away: finish without telling it. `graceful`
  /// (the shard is stopping): what is queued is still sent, as far as the
  /// stop lets it, instead of being dropped.
  void detach(bool graceful = false) noexcept;
  /// on_tick() for the owner at least this often (0: none).
  void set_app_tick(std::chrono::milliseconds interval);
  /// Pauses or resumes reception for the application (not backpressure).
  void set_user_paused(bool paused);

  /// Received bytes that are not in the shard's ring (a fallback receive's)
  /// in a RecvBuffer: a large fallback receive hands over its own buffer,
  /// anything else is copied.
  [[nodiscard]] RecvBuffer keep_unringed(std::span<const std::byte> bytes);
  [[nodiscard]] std::string take_chunk() noexcept { return net_->take_chunk(); }
  [[nodiscard]] NetShard& net() const noexcept { return *net_; }
  /// NetShard's batched flush reached this socket.
  void run_scheduled_flush();
  [[nodiscard]] bool is_open() const noexcept { return state_ == State::open; }
  [[nodiscard]] bool sending() const noexcept { return state_ == State::open || state_ == State::connecting; }
  [[nodiscard]] int fd() const noexcept { return fd_; }
  [[nodiscard]] std::size_t pending() const noexcept { return pending_; }
  [[nodiscard]] bool paused() const noexcept { return paused_ || user_paused_; }
  [[nodiscard]] bool peer_shut() const noexcept { return peer_shut_; }
  void set_options(const ConnectionOptions& o);

 private:
  enum class State { connecting, open, closing, closed };
  // Reading is wanted: open and not paused, or lingering.
  [[nodiscard]] bool wants_recv() const noexcept {
    if (peer_shut_) return false;
    if (state_ == State::open) return !paused_ && !user_paused_;
    return state_ == State::closing && lingering_ && !linger_done_ && !aborting_;
  }
  // One completion type per operation, each bound to its handler.
  template <void (Socket::*Handler)(const io_uring_cqe&)>
  struct Op final : Completion {
    Socket* self = nullptr;
    void complete(const io_uring_cqe& cqe) override { (self->*Handler)(cqe); }
  };

  /// Names the fixed file slot instead of the descriptor, when the socket
  /// has one (after a prep_* on fd_).
  void target(io_uring_sqe* sqe) const noexcept {
    if (file_ >= 0) {
      sqe->fd = file_;
      sqe->flags |= IOSQE_FIXED_FILE;
    }
  }
  void arm_recv();
  void stop_reading();
  void arm_watch();
  void on_watch(const io_uring_cqe& cqe);
  /// Returns true when the owner kept the bytes (keep_received()).
  bool deliver(std::span<const std::byte> bytes, std::uint16_t bid, bool from_ring);
  void on_recv(const io_uring_cqe& cqe);
  void peer_shutdown();
  void notify_peer_shutdown();
  /// Returns true when the bytes stay in their ring buffer.
  bool hold_input(std::span<const std::byte> bytes, std::uint16_t bid, bool from_ring);
  void deliver_held_input();
  void drop_held_input() noexcept;
  void start_fallback();
  void on_fallback(const io_uring_cqe& cqe);

  void schedule_flush();
  void after_queue_grew(std::size_t bytes);
  void flush();
  void on_send(const io_uring_cqe& cqe);
  void on_connected(const io_uring_cqe& cqe);

  void maybe_finish();
  void maybe_shut_wr();
  void on_closed(const io_uring_cqe& cqe);
  void maybe_delete();

  void arm_timer();
  [[nodiscard]] std::chrono::nanoseconds wanted_tick() const noexcept;
  void fire() override;
  void end_linger();

  static constexpr std::size_t kMaxIov = 64;
  static constexpr std::size_t kFallbackSize = 64 * 1024;

  ConnectionCore* owner_;
  Reactor* reactor_;
  NetShard* net_;
  int fd_;
  int file_ = -1;  // its slot in the ring's fixed file table, or -1
  ConnectionOptions options_;
  State state_ = State::open;
  CloseReason reason_ = CloseReason::closed;
  int error_ = 0;
  unsigned ops_ = 0;
  bool recv_armed_ = false;
  bool recv_cancelled_ = false;
  bool watch_armed_ = false;  // a poll for a reset while reading is paused
  bool watch_cancelled_ = false;
  bool paused_ = false;       // backpressure
  bool user_paused_ = false;  // the application
  bool send_in_flight_ = false;
  bool aborting_ = false;
  bool close_submitted_ = false;
  bool peer_shut_ = false;
  bool flush_pending_ = false;  // in the shard's flush list
  bool lingering_ = false;      // close_lingering(): discard input until the peer closes
  bool shut_wr_ = false;        // the sending side is shut down: the linger clock runs
  bool want_shut_wr_ = false;   // shutdown_write(): shut down once the queue is sent
  bool linger_done_ = false;    // the linger is over (EOF, an error, a limit): close
  bool eof_held_ = false;       // the peer's end came behind held input (hold_input)
  std::size_t pending_ = 0;
  std::size_t in_flight_entries_ = 0;
  SendQueue queue_;
  struct Gather {
    iovec iov[kMaxIov];
    msghdr msg;
  };
  std::unique_ptr<Gather> gather_;
  // Timeouts: counters bumped by I/O, compared on each tick.
  std::uint32_t reads_ = 0;  // receive completions with data
  std::uint32_t sends_ = 0;  // send completions that sent something
  std::uint32_t seen_reads_ = 0;
  std::uint32_t seen_sends_ = 0;
  bool read_known_ = false;  // last_read_ holds a tick's time
  bool active_known_ = false;
  bool stall_known_ = false;  // bytes queued without progress since stall_since_
  bool linger_known_ = false;
  Clock::time_point last_read_{};
  Clock::time_point last_activity_{};
  Clock::time_point stall_since_{};
  Clock::time_point linger_since_{};
  std::chrono::nanoseconds tick_{0};           // the timer's period (0: not ticking)
  std::chrono::milliseconds app_tick_{0};      // asked for by the owner
  std::size_t linger_bytes_ = 0;               // discarded while lingering
  int kernel_queued_ = -1;                     // SIOCOUTQ at the last tick (send timeout)
  Address target_{};
  std::unique_ptr<std::byte[]> fallback_buf_;
  // Bytes received after a backpressure pause began (see hold_input), and
  // the peer's end behind them.
  std::unique_ptr<std::deque<RecvBuffer>> held_input_;
  Op<&Socket::on_recv> recv_;
  Op<&Socket::on_watch> watch_;
  Op<&Socket::on_fallback> fallback_;
  Op<&Socket::on_send> send_;
  Op<&Socket::on_closed> close_;
  Op<&Socket::on_connected> connect_;
};

}  // namespace ringshard::net::detail
