// ConnectionCore: the facade a connection actor sees (sends in every form,
// framed input, pausing, closing), over detail::Socket.
#include "ringshard/net/connection.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <system_error>

#include "ringshard/framework/log.hpp"
#include "ringshard/net/reply_queue.hpp"
#include "socket.hpp"

namespace ringshard::net {

const char* to_string(CloseReason reason) noexcept {
  switch (reason) {
    case CloseReason::closed: return "closed";
    case CloseReason::aborted: return "aborted";
    case CloseReason::peer_closed: return "peer closed";
    case CloseReason::peer_reset: return "peer reset";
    case CloseReason::error: return "error";
    case CloseReason::idle_timeout: return "idle timeout";
    case CloseReason::read_timeout: return "read timeout";
    case CloseReason::connect_failed: return "connect failed";
    case CloseReason::shutdown: return "shutdown";
    case CloseReason::input_too_large: return "input too large";
    case CloseReason::send_timeout: return "send timeout";
    case CloseReason::timeout: return "timeout";
  }
  return "unknown";
}

// ---- life cycle ---------------------------------------------------------------------

ConnectionCore::~ConnectionCore() {
  if (replies_ != nullptr) replies_->detach();
  if (socket_ != nullptr) socket_->detach();
  if (pending_fd_ >= 0) ::close(pending_fd_);
}

void ConnectionCore::start_io(actors::ActorBase& self) {
  actor_ = &self;
  Reactor& reactor = self.reactor();
  NetShard& net = NetShard::of(self.shard());
  if (pending_fd_ >= 0) {
    const int fd = pending_fd_;
    pending_fd_ = -1;
    if (options_.nodelay) {
      // Fails harmlessly on a Unix socket. Without it a reply that leaves in
      // two small sends waits for the peer's delayed ACK (40 ms).
      int one = 1;
      (void)::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    socket_ = new detail::Socket(this, reactor, fd, options_);
    socket_->set_app_tick(tick_);
    socket_->open();
    on_open();  // an exception here is on_start's: the actors layer reports it
    return;
  }
  if (connect_to_.length() != 0) {
    const int fd = ::socket(connect_to_.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
    net.connections.fetch_add(1, std::memory_order_relaxed);
    if (fd < 0) {
      last_error_ = errno;
      net.connections.fetch_sub(1, std::memory_order_relaxed);
      net.count_close(CloseReason::connect_failed);
      closed_by_socket(CloseReason::connect_failed, errno);
      return;
    }
    peer_ = connect_to_;
    socket_ = new detail::Socket(this, reactor, fd, options_);
    socket_->set_app_tick(tick_);
    socket_->connect(connect_to_);
    return;
  }
  RINGSHARD_LOG_WARN("connection actor started without a socket");
  self.stop();
}

void ConnectionCore::stop_io() noexcept {
  if (socket_ != nullptr) {
    detail::Socket* s = socket_;
    socket_ = nullptr;
    if (!close_reported_) {
      close_reported_ = true;
      try {
        on_close(CloseReason::shutdown);
      } catch (...) {
        actors::detail::exception_swallowed("a connection's on_close");
      }
    }
    // The shard is stopping (not this connection alone): what was queued
    // (answers to requests already received) still goes out as far as the
    // socket takes it before the stop cancels what is left in flight.
    const bool graceful = actor_ != nullptr && actor_->shard().stopping();
    s->detach(graceful);
  }
}

void ConnectionCore::closed_by_socket(CloseReason reason, int error) {
  socket_ = nullptr;
  last_error_ = error;
  if (!close_reported_) {
    close_reported_ = true;
    try {
      on_close(reason);
    } catch (...) {
      actors::detail::exception_swallowed("a connection's on_close");
    }
  }
  if (actor_ != nullptr) actor_->stop();
}

void ConnectionCore::failed(std::exception_ptr) noexcept {
  if (socket_ != nullptr) {
    socket_->abort(CloseReason::error);
  } else if (actor_ != nullptr) {
    actor_->stop();
  }
}

void ConnectionCore::handler_threw() noexcept {
  if (actor_ != nullptr) {
    actors::detail::handler_failed(*actor_);  // logs, then on_failure() -> failed()
  } else {
    actors::detail::exception_swallowed("a connection handler");
    failed(std::current_exception());
  }
}

// ---- sending -----------------------------------------------------------------------

void ConnectionCore::send(std::span<const std::byte> bytes) {
  if (socket_ != nullptr && !write_shut_) socket_->send_copy(bytes);
}
void ConnectionCore::send(std::string&& bytes) {
  if (socket_ != nullptr && !write_shut_) socket_->send(std::move(bytes));
}
void ConnectionCore::send(SharedBuffer bytes) {
  if (socket_ != nullptr && !write_shut_) socket_->send(std::move(bytes));
}
void ConnectionCore::send(RecvBuffer&& bytes) {
  if (socket_ != nullptr && !write_shut_) socket_->send(std::move(bytes));
}
void ConnectionCore::send(std::span<const std::byte> bytes, SendDone done) {
  if (socket_ != nullptr && !write_shut_) {
    socket_->send(bytes, std::move(done));
  } else if (done) {
    done(false);
  }
}
std::string ConnectionCore::send_buffer() noexcept { return socket_ != nullptr ? socket_->take_chunk() : std::string(); }

// ---- receiving -----------------------------------------------------------------------

bool ConnectionCore::receive(std::span<const std::byte> bytes, std::uint16_t bid, bool from_ring) {
  if (buffered_input() > 0 || input_paused()) {
    // Earlier bytes wait (a partial frame, or reading is paused): these join them.
    keep_input(bytes);
    if (!input_paused()) drain_input();
    check_done();
    return false;
  }
  current_ = bytes;
  current_bid_ = bid;
  current_from_ring_ = from_ring;
  current_kept_ = false;
  current_taken_ = false;
  try {
    on_data(bytes);
  } catch (...) {
    handler_threw();
  }
  current_ = {};
  const bool kept = current_kept_;
  current_kept_ = false;
  check_done();
  return kept;
}

RecvBuffer ConnectionCore::keep_received() {
  if (current_.empty() || current_taken_ || socket_ == nullptr) return {};
  current_taken_ = true;
  if (current_from_ring_) {
    RecvBuffer kept = socket_->net().keep(current_bid_, current_);
    current_kept_ = kept.from_ring();  // else a copy: the ring buffer goes back as usual
    return kept;
  }
  return socket_->keep_unringed(current_);
}

void ConnectionCore::on_data(std::span<const std::byte> bytes) {
  const std::size_t used = frame(bytes);
  if (draining_) {  // drain_input() owns the bytes: tell it how many were used
    drained_ = used;
    return;
  }
  if (used < bytes.size() && is_open()) keep_input(bytes.subspan(used));
}

std::size_t ConnectionCore::frame(std::span<const std::byte> bytes) {
  std::size_t used = 0;
  while (used < bytes.size() && !input_paused() && is_open()) {
    const std::size_t n = on_input(bytes.subspan(used));
    if (n == 0) break;
    used += std::min(n, bytes.size() - used);
  }
  return used;
}

void ConnectionCore::keep_input(std::span<const std::byte> bytes) {
  if (bytes.empty()) return;
  // The limit is on input kept for an incomplete frame. Bytes that arrive
  // while reading is paused are kept whatever their size: they were already
  // received when the pause began (a multishot receive stops with a delay),
  // so they are bounded by the shard's receive ring.
  if (!input_paused() && buffered_input() + bytes.size() > options_.max_input_bytes) {
    RINGSHARD_LOG_DEBUG("connection input over {} bytes: closing", options_.max_input_bytes);
    if (socket_ != nullptr) socket_->abort(CloseReason::input_too_large);
    return;
  }
  if (input_offset_ > 0 && input_offset_ >= input_.size() / 2) {  // amortised: each byte moves at most once more
    input_.erase(0, input_offset_);
    input_offset_ = 0;
  }
  // A frame that the end of a receive buffer splits (with incremental
  // buffers, once per 64 KiB of input, anywhere in it) is joined here: the
  // first join reserves room for a typical request, so that later joins of
  // the same connection do not grow the string again.
  static constexpr std::size_t kFirstInputReserve = 256;
  if (input_.capacity() < kFirstInputReserve) input_.reserve(kFirstInputReserve);
  input_.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

void ConnectionCore::drain_input() {
  if (draining_) return;
  while (buffered_input() > 0 && !input_paused() && is_open()) {
    const std::span<const std::byte> view(reinterpret_cast<const std::byte*>(input_.data()) + input_offset_,
                                          buffered_input());
    draining_ = true;
    drained_ = view.size();  // an on_data of the application's takes everything
    // keep_received() works on kept input too (it copies: the bytes are ours).
    current_ = view;
    current_from_ring_ = false;
    current_kept_ = false;
    current_taken_ = false;
    try {
      on_data(view);
    } catch (...) {
      current_ = {};
      draining_ = false;
      handler_threw();
      return;
    }
    current_ = {};
    draining_ = false;
    input_offset_ += std::min(drained_, view.size());
    if (drained_ == 0) break;
  }
  if (!input_paused() && socket_ != nullptr) socket_->set_user_paused(false);  // what is left needs more bytes
  if (input_offset_ == input_.size()) {
    input_offset_ = 0;
    input_.clear();
    if (input_.capacity() > (64u << 10)) std::string().swap(input_);  // do not pin a burst's memory
  }
}

void ConnectionCore::schedule_drain() {
  if (drain_posted_ || actor_ == nullptr) return;
  drain_posted_ = true;
  // Later, from the run queue: resume_reading() may be called from inside a
  // handler that is itself consuming input.
  actor_->shard().post([this, raw = actor_->raw_ref()] {
    if (actors::ActorTable::of(*Shard::current()).lookup(raw) == nullptr) return;  // gone
    drain_posted_ = false;
    drain_input();
    check_done();
  });
}

void ConnectionCore::set_paused(unsigned bit, bool on) {
  const unsigned before = pause_bits_;
  pause_bits_ = on ? (pause_bits_ | bit) : (pause_bits_ & ~bit);
  if (pause_bits_ == before) return;
  if (pause_bits_ != 0) {
    if (socket_ != nullptr) socket_->set_user_paused(true);
    return;
  }
  // Reception resumes only once the input kept meanwhile is consumed (or is
  // a partial frame): resuming at once would receive faster than a protocol
  // that pauses often consumes, and the kept input would grow without bound.
  if (buffered_input() > 0) {
    schedule_drain();
  } else if (socket_ != nullptr) {
    socket_->set_user_paused(false);
  }
  check_done();
}

void ConnectionCore::pause_reading() { set_paused(kPausedByUser, true); }
void ConnectionCore::resume_reading() { set_paused(kPausedByUser, false); }

// ---- closing -----------------------------------------------------------------------

void ConnectionCore::shutdown_write() {
  if (write_shut_ || socket_ == nullptr) return;
  write_shut_ = true;
  socket_->shutdown_write();
}

void ConnectionCore::close() {
  if (socket_ != nullptr) socket_->close(CloseReason::closed);
}
void ConnectionCore::close_lingering() {
  if (socket_ != nullptr) socket_->close_lingering();
}
void ConnectionCore::abort() {
  if (socket_ != nullptr) socket_->abort(CloseReason::aborted);
}
void ConnectionCore::timed_out() {
  if (socket_ != nullptr) socket_->abort(CloseReason::timeout);
}

std::size_t ConnectionCore::owed() const noexcept {
  std::size_t n = replies_ != nullptr ? replies_->open() : 0;
  if (actor_ != nullptr) n += actor_->pending_asks();
  return n;
}

void ConnectionCore::close_when_done() {
  close_when_done_ = true;
  check_done();
}

void ConnectionCore::check_done() {
  if (!close_when_done_ || socket_ == nullptr || !socket_->is_open()) return;
  // Complete requests held back by a pause are owed too; a partial frame
  // left when reading is not paused will never complete.
  // So are kept requests whose drain is scheduled (by resume_reading()).
  if (owed() == 0 && !((input_paused() || drain_posted_) && buffered_input() > 0)) close();
}

// ---- state -----------------------------------------------------------------------

bool ConnectionCore::is_open() const noexcept { return socket_ != nullptr && socket_->is_open(); }
const Address& ConnectionCore::peer() const {
  if (peer_.length() == 0 && socket_ != nullptr && socket_->fd() >= 0) {
    try {
      peer_ = Address::of_socket(socket_->fd(), true);
    } catch (const std::system_error&) {
      // the peer is gone already: leave it unspecified
    }
  }
  return peer_;
}
int ConnectionCore::fd() const noexcept { return socket_ != nullptr ? socket_->fd() : -1; }
std::size_t ConnectionCore::pending_send_bytes() const noexcept { return socket_ ? socket_->pending() : 0; }
bool ConnectionCore::reading_paused() const noexcept { return socket_ != nullptr && socket_->paused(); }
void ConnectionCore::set_options(const ConnectionOptions& options) {
  options_ = options;
  if (socket_ != nullptr) socket_->set_options(options);
}
void ConnectionCore::set_tick(std::chrono::milliseconds interval) {
  tick_ = interval;
  if (socket_ != nullptr) socket_->set_app_tick(interval);
}

}  // namespace ringshard::net
