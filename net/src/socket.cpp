#include "socket.hpp"

#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/ioctl.h>

#include <algorithm>
#include <cstring>
#include <exception>

namespace ringshard::net::detail {

Socket::Socket(ConnectionCore* owner, Reactor& reactor, int fd, const ConnectionOptions& options)
    : owner_(owner),
      reactor_(&reactor),
      net_(&NetShard::of(*Shard::current())),
      fd_(fd),
      options_(options),
      queue_(net_->state().blocks) {
  recv_.self = this;
  watch_.self = this;
  send_.self = this;
  close_.self = this;
  connect_.self = this;
  fallback_.self = this;
}

void Socket::open() {
  net_->ensure_buffers();
  if (file_ < 0 && fd_ >= 0) file_ = net_->install(fd_);
  state_ = State::open;
  arm_recv();
  arm_timer();
}

void Socket::connect(const Address& target) {
  state_ = State::connecting;
  target_ = target;  // the kernel reads the address: it lives here until the CQE
  ++ops_;
  reactor_->submit(connect_, [this](io_uring_sqe* sqe) { uring::prep_connect(sqe, fd_, target_.get(), target_.length()); });
}

// ---- sending -----------------------------------------------------------------------

void Socket::send(std::string&& bytes) {
  if (!sending() || bytes.empty()) return;
  const std::size_t n = bytes.size();
  queue_.push_back().body.emplace<std::string>(std::move(bytes));
  after_queue_grew(n);
}

void Socket::send_copy(std::span<const std::byte> bytes) {
  if (!sending() || bytes.empty()) return;
  // Small writes join the last queued string when it is not part of the send
  // in flight: fewer iovecs, fewer allocations. The entry itself stays put,
  // so a send prepared for the entries before it is not disturbed.
  if (queue_.size() > in_flight_entries_) {
    SendEntry& last = queue_.back();
    if (auto* s = std::get_if<std::string>(&last.body); s != nullptr && s->size() < 64 * 1024) {
      s->append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
      after_queue_grew(bytes.size());
      return;
    }
  }
  std::string data = net_->take_chunk();
  data.assign(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  queue_.push_back().body.emplace<std::string>(std::move(data));
  after_queue_grew(bytes.size());
}

void Socket::send(SharedBuffer&& bytes) {
  if (!sending() || bytes.empty()) return;
  const std::size_t n = bytes.size();
  queue_.push_back().body.emplace<SharedBuffer>(std::move(bytes));
  after_queue_grew(n);
}

void Socket::send(RecvBuffer&& bytes) {
  if (!sending() || bytes.empty()) return;
  const std::size_t n = bytes.size();
  queue_.push_back().body.emplace<RecvBuffer>(std::move(bytes));
  after_queue_grew(n);
}

void Socket::send(std::span<const std::byte> bytes, SendDone&& done) {
  if (!sending() || bytes.empty()) {
    if (done) done(bytes.empty() && sending());
    return;
  }
  queue_.push_back().body.emplace<External>(External{bytes.data(), bytes.size(), std::move(done)});
  after_queue_grew(bytes.size());
}

void Socket::schedule_flush() {
  if (flush_pending_) return;
  flush_pending_ = true;
  net_->state().schedule_flush(net_->shard(), this);
}

void Socket::after_queue_grew(std::size_t bytes) {
  pending_ += bytes;
  if (state_ == State::open) schedule_flush();
  if (pending_ > options_.high_watermark && !paused_) {
    paused_ = true;
    stop_reading();
  }
}

void Socket::run_scheduled_flush() {
  flush_pending_ = false;
  if (state_ == State::open) flush();
}

void Socket::flush() {
  if (send_in_flight_ || queue_.empty() || fd_ < 0) return;
  const std::size_t n = std::min<std::size_t>(queue_.size(), kMaxIov);
  in_flight_entries_ = n;
  send_in_flight_ = true;
  ++ops_;
  if (n == 1) {  // the common case: a plain send, no message header
    const iovec v = queue_.front().unsent();
    reactor_->submit(send_, [this, v](io_uring_sqe* sqe) {
      uring::prep_send(sqe, fd_, uring::ConstBuffer(v.iov_base, v.iov_len), MSG_NOSIGNAL);
      target(sqe);
    });
    return;
  }
  // Several entries go out gathered in one sendmsg. The iovec array and the
  // header live until the CQE; they are allocated on the first gathered send,
  // so that idle connections do not carry them.
  if (!gather_) gather_ = std::make_unique<Gather>();
  std::size_t i = 0;
  queue_.for_first(n, [&](const SendEntry& e) { gather_->iov[i++] = e.unsent(); });
  gather_->msg = {};
  gather_->msg.msg_iov = gather_->iov;
  gather_->msg.msg_iovlen = n;
  reactor_->submit(send_, [this](io_uring_sqe* sqe) {
    uring::prep_sendmsg(sqe, fd_, &gather_->msg, MSG_NOSIGNAL);
    target(sqe);
  });
}

void Socket::on_send(const io_uring_cqe& cqe) {
  --ops_;
  send_in_flight_ = false;
  ++net_->send_completions;
  if (aborting_ || cqe.res < 0) {
    in_flight_entries_ = 0;
    queue_.clear();
    if (cqe.res >= 0) {
      maybe_finish();
      return;
    }
    if (cqe.res != -ECANCELED || !aborting_) {
      abort(cqe.res == -EPIPE || cqe.res == -ECONNRESET ? CloseReason::peer_reset : CloseReason::error, -cqe.res);
    }
    maybe_finish();
    return;
  }
  if (cqe.res > 0) {
    ++sends_;
    net_->bytes_out += static_cast<std::uint64_t>(cqe.res);
  }
  std::size_t sent = static_cast<std::size_t>(cqe.res);
  pending_ -= std::min(pending_, sent);
  in_flight_entries_ = 0;
  while (sent > 0 && !queue_.empty()) {
    SendEntry& e = queue_.front();
    const std::size_t left = e.left();
    if (sent >= left) {
      sent -= left;
      e.offset = e.size();
      if (auto* s = std::get_if<std::string>(&e.body)) net_->recycle_chunk(std::move(*s));
      queue_.pop_front(true);
    } else {
      e.offset += sent;
      sent = 0;
    }
  }
  if (state_ == State::open) schedule_flush();  // the rest, including what a short send left
  maybe_shut_wr();
  if (paused_ && pending_ <= options_.low_watermark) {
    paused_ = false;
    deliver_held_input();
    arm_recv();
    if (owner_ != nullptr && state_ == State::open) {
      try {
        owner_->on_drain();
      } catch (...) {
        owner_->handler_threw();
      }
    }
  }
  maybe_finish();
}

// ---- reception -----------------------------------------------------------------------

void Socket::arm_recv() {
  if (recv_armed_ || !wants_recv()) return;
  recv_armed_ = true;
  ++ops_;
  reactor_->submit(recv_, [this](io_uring_sqe* sqe) {
    uring::prep_recv_multishot_group(sqe, fd_, 0, NetShard::kBufferGroup);
    target(sqe);
    if (net_->bundles()) sqe->ioprio |= IORING_RECVSEND_BUNDLE;
  });
}

void Socket::stop_reading() {
  if (recv_armed_ && !recv_cancelled_) {
    recv_cancelled_ = true;
    reactor_->cancel(recv_);
  }
  if (watch_armed_ && !watch_cancelled_) {
    watch_cancelled_ = true;
    reactor_->cancel(watch_);
  }
}

// While the application keeps reading paused (a protocol waiting for an
// answer from elsewhere, replies owed), nothing would notice a peer that
// reset the connection until the next send, and a connection with nothing
// to send would stay open for good. A poll for POLLERR | POLLHUP watches
// meanwhile: it fires on a reset (or both directions shut down), not on a
// plain FIN, which may be a client's half-close after its request.
void Socket::set_user_paused(bool paused) {
  if (user_paused_ == paused) return;
  user_paused_ = paused;
  if (paused) {
    if (recv_armed_ && !recv_cancelled_) {
      recv_cancelled_ = true;
      reactor_->cancel(recv_);
    }
    arm_watch();
  } else {
    if (watch_armed_ && !watch_cancelled_) {
      watch_cancelled_ = true;
      reactor_->cancel(watch_);
    }
    deliver_held_input();
    arm_recv();
  }
}

void Socket::arm_watch() {
  if (watch_armed_ || state_ != State::open || fd_ < 0) return;
  watch_armed_ = true;
  ++ops_;
  reactor_->submit(watch_, [this](io_uring_sqe* sqe) {
    uring::prep_poll_multishot(sqe, fd_, POLLERR | POLLHUP);
    target(sqe);
  });
}

// io_uring reports POLLRDHUP (a FIN) whether asked for or not; a multishot
// poll posts once per wake-up of the socket, so the FIN is one CQE and
// ignored here, and a later reset posts again.
void Socket::on_watch(const io_uring_cqe& cqe) {
  const bool more = cqe.flags & IORING_CQE_F_MORE;
  bool cancelled = false;
  if (!more) {
    --ops_;
    watch_armed_ = false;
    cancelled = std::exchange(watch_cancelled_, false);
  }
  if (state_ == State::open && cqe.res > 0 && (cqe.res & (POLLERR | POLLHUP)) != 0) {
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = 0;
    // A reset after the peer's FIN reads as EPIPE (the socket was in CLOSE_WAIT).
    const bool reset = err == 0 || err == ECONNRESET || err == EPIPE;
    abort(reset ? CloseReason::peer_reset : CloseReason::error, err != 0 ? err : ECONNRESET);
  } else if (!more && (cancelled || cqe.res > 0) && state_ == State::open && user_paused_) {
    arm_watch();  // paused again while the cancellation was on its way, or ended by the kernel
  }
  if (!more) maybe_finish();
}

bool Socket::deliver(std::span<const std::byte> bytes, std::uint16_t bid, bool from_ring) {
  ++reads_;  // the timeouts' clock is read on the tick, not here
  bool kept = false;
  if (owner_ != nullptr && state_ == State::open && (paused() || (held_input_ && !held_input_->empty()))) {
    return hold_input(bytes, bid, from_ring);
  }
  if (owner_ != nullptr && state_ == State::open) {
    try {
      kept = owner_->receive(bytes, bid, from_ring);
    } catch (...) {
      owner_->handler_threw();
    }
  } else if (lingering_ && !linger_done_) {
    linger_bytes_ += bytes.size();  // discarded
    if (linger_bytes_ > options_.linger_bytes) end_linger();
  }
  return kept;
}

void Socket::on_recv(const io_uring_cqe& cqe) {
  const bool more = cqe.flags & IORING_CQE_F_MORE;
  if (!more) {
    --ops_;
    recv_armed_ = false;
    recv_cancelled_ = false;
  }
  if (cqe.res > 0) {
    ++net_->recv_completions;
    net_->bytes_in += static_cast<std::uint64_t>(cqe.res);
    net_->take_received(cqe, [this](std::span<const std::byte> bytes, std::uint16_t bid) {
      return deliver(bytes, bid, true);
    });
  } else if (cqe.res == 0) {
    peer_shutdown();
  } else if (cqe.res == -ENOBUFS) {
    // The shard's buffers are all in use: one plain recv into our own buffer
    // keeps this connection moving; multishot resumes after it.
    if (!more && wants_recv()) {
      ++net_->buffer_fallbacks;
      start_fallback();
      return;
    }
  } else if (cqe.res != -ECANCELED) {
    if (state_ == State::open) abort(cqe.res == -ECONNRESET ? CloseReason::peer_reset : CloseReason::error, -cqe.res);
    else if (lingering_) linger_done_ = true;
  }
  if (!more) {
    arm_recv();
    maybe_finish();
  }
}

// Reception pauses (above the high watermark, or for the application) by
// cancelling the multishot receive, but the completions the kernel posted
// before the cancel landed still come: with 64 KiB incremental buffers that
// is megabytes on a socket whose peer sends without pause. Those bytes are
// held where they were received (ring buffers, as keep_received() keeps
// them: the ring bounds them, and copies are made only when it runs low)
// and handed to the owner, in order, once reading resumes.
bool Socket::hold_input(std::span<const std::byte> bytes, std::uint16_t bid, bool from_ring) {
  if (!held_input_) held_input_ = std::make_unique<std::deque<RecvBuffer>>();
  held_input_->push_back(from_ring ? net_->keep(bid, bytes) : keep_unringed(bytes));
  return held_input_->back().from_ring();
}

void Socket::deliver_held_input() {
  while (held_input_ && !held_input_->empty() && !paused() && state_ == State::open && owner_ != nullptr) {
    RecvBuffer input = std::move(held_input_->front());
    held_input_->pop_front();
    // Not from the ring for the owner: keep_received() copies, and this
    // RecvBuffer gives the buffer back.
    try {
      (void)owner_->receive(input.bytes(), 0, false);
    } catch (...) {
      owner_->handler_threw();
    }
  }
  if (held_input_ && held_input_->empty()) {
    held_input_.reset();
    if (eof_held_) {
      eof_held_ = false;
      notify_peer_shutdown();
    }
  }
}

void Socket::drop_held_input() noexcept {
  held_input_.reset();
  eof_held_ = false;
}

void Socket::peer_shutdown() {
  if (peer_shut_) return;
  if (state_ == State::open && held_input_ && !held_input_->empty()) {  // after the held bytes
    peer_shut_ = true;
    eof_held_ = true;
    return;
  }
  if (state_ != State::open) {
    if (lingering_) {  // the peer read our side's end and closed: the linger is over
      peer_shut_ = true;
      linger_done_ = true;
    }
    return;
  }
  peer_shut_ = true;
  notify_peer_shutdown();
}

void Socket::notify_peer_shutdown() {
  if (state_ != State::open) return;
  if (owner_ != nullptr) {
    try {
      owner_->on_peer_shutdown();
    } catch (...) {
      owner_->handler_threw();
    }
  } else {
    close(CloseReason::peer_closed);
  }
}

RecvBuffer Socket::keep_unringed(std::span<const std::byte> bytes) {
  // Handed over only when most of the buffer is used: a few bytes kept must
  // not hold 64 KiB. The next fallback receive allocates a new buffer.
  if (fallback_buf_ && bytes.data() == fallback_buf_.get() && bytes.size() >= kFallbackSize / 2) {
    return NetShard::adopt(std::move(fallback_buf_), bytes.size());
  }
  return NetShard::copy_of(bytes);
}

void Socket::start_fallback() {
  if (!fallback_buf_) fallback_buf_ = std::make_unique_for_overwrite<std::byte[]>(kFallbackSize);
  ++ops_;
  recv_armed_ = true;  // a receive is in flight; no multishot until it ends
  reactor_->submit(fallback_, [this](io_uring_sqe* sqe) {
    uring::prep_recv(sqe, fd_, uring::MutableBuffer(fallback_buf_.get(), kFallbackSize), 0);
    target(sqe);
  });
}

void Socket::on_fallback(const io_uring_cqe& cqe) {
  --ops_;
  recv_armed_ = false;
  recv_cancelled_ = false;
  if (cqe.res > 0) {
    ++net_->recv_completions;
    net_->bytes_in += static_cast<std::uint64_t>(cqe.res);
    deliver(std::span<const std::byte>(fallback_buf_.get(), static_cast<std::size_t>(cqe.res)), 0, false);
  } else if (cqe.res == 0) {
    peer_shutdown();
  } else if (cqe.res != -ECANCELED) {
    if (state_ == State::open) abort(cqe.res == -ECONNRESET ? CloseReason::peer_reset : CloseReason::error, -cqe.res);
    else if (lingering_) linger_done_ = true;
  }
  // While the shard's ring stays short of buffers the next receive is a
  // plain one too (a multishot receive would end at once with ENOBUFS);
  // back on the ring, the fallback buffer goes.
  if (cqe.res > 0 && !recv_armed_ && wants_recv() && net_->ring_low()) {
    ++net_->buffer_fallbacks;
    start_fallback();
    return;
  }
  fallback_buf_.reset();
  arm_recv();
  maybe_finish();
}

// ---- connect -----------------------------------------------------------------------

void Socket::on_connected(const io_uring_cqe& cqe) {
  --ops_;
  if (state_ != State::connecting) {  // aborted (or its actor gone) while connecting
    maybe_finish();
    maybe_delete();
    return;
  }
  if (cqe.res < 0) {
    error_ = -cqe.res;
    reason_ = CloseReason::connect_failed;
    state_ = State::closing;
    aborting_ = true;
    queue_.clear();
    pending_ = 0;
    maybe_finish();
    return;
  }
  if (options_.nodelay && target_.family() != AF_UNIX) {
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  open();
  if (owner_ != nullptr) {
    try {
      owner_->on_open();
    } catch (...) {
      owner_->handler_threw();
    }
  }
  if (state_ == State::open) flush();
}

// ---- closing -----------------------------------------------------------------------

void Socket::close(CloseReason reason) {
  if (state_ == State::closing || state_ == State::closed) return;
  reason_ = reason;
  state_ = State::closing;
  drop_held_input();
  stop_reading();
  maybe_finish();
}

void Socket::abort(CloseReason reason, int error) {
  if (state_ == State::closed) return;
  if (state_ != State::closing) reason_ = reason;
  if (error) error_ = error;
  drop_held_input();
  if (state_ == State::connecting) reactor_->cancel(connect_);  // may wait on SYN retries for minutes
  state_ = State::closing;
  aborting_ = true;
  stop_reading();
  if (send_in_flight_) {
    // The kernel reads the entries of the send in flight until its CQE
    // arrives: they are released then (on_send), the rest now.
    reactor_->cancel(send_);
    queue_.truncate(in_flight_entries_);
  } else {
    queue_.clear();
    in_flight_entries_ = 0;
  }
  pending_ = 0;
  maybe_finish();
}

void Socket::close_lingering() {
  if (state_ != State::open) return;
  // Nothing more will arrive (nothing to linger for), or lingering is off.
  if (peer_shut_ || options_.linger_time.count() <= 0) {
    close(CloseReason::closed);
    return;
  }
  reason_ = CloseReason::closed;
  state_ = State::closing;
  drop_held_input();  // input from now on is discarded: so is what was held
  lingering_ = true;
  arm_timer();  // the linger limits join the tick
  arm_recv();   // discarding starts now, also when reading was paused
  maybe_finish();
}

void Socket::shutdown_write() {
  if (state_ != State::open) return;
  want_shut_wr_ = true;
  maybe_shut_wr();
}

void Socket::maybe_shut_wr() {
  if (!want_shut_wr_ || shut_wr_ || send_in_flight_ || !queue_.empty() || state_ != State::open || fd_ < 0) return;
  shut_wr_ = true;
  (void)::shutdown(fd_, SHUT_WR);
}

void Socket::end_linger() {
  if (linger_done_) return;
  linger_done_ = true;
  stop_reading();
  maybe_finish();
}

void Socket::detach(bool graceful) noexcept {
  owner_ = nullptr;
  if (graceful && state_ == State::open) {
    close(CloseReason::shutdown);
  } else {
    abort(CloseReason::shutdown);
  }
  maybe_delete();
}

void Socket::maybe_finish() {
  if (state_ != State::closing || send_in_flight_) return;
  if (!aborting_ && !queue_.empty()) {  // close(): drain the queue first
    flush();
    return;
  }
  if (lingering_ && !aborting_ && !linger_done_) {
    if (!shut_wr_) {
      // Everything is sent: a FIN follows it, and the peer reads the whole
      // response before it sees the end.
      shut_wr_ = true;
      if (fd_ < 0 || ::shutdown(fd_, SHUT_WR) != 0) linger_done_ = true;
    }
    if (!linger_done_) {
      arm_recv();
      return;
    }
  }
  if (recv_armed_ || watch_armed_) {
    stop_reading();
    return;
  }
  if (fd_ >= 0 && !close_submitted_) {
    close_submitted_ = true;
    ++ops_;
    reactor_->cancel(static_cast<Timer&>(*this));
    // The slot holds the socket too: the socket closes when both are
    // closed. The slot's close goes first and is done at submission (a
    // fixed file's close is never deferred), so the slot is free once the
    // descriptor's close completes (on_closed).
    if (file_ >= 0) {
      const auto slot = static_cast<unsigned>(file_);
      reactor_->submit_detached([slot](io_uring_sqe* sqe) { uring::prep_close_direct(sqe, slot); });
    }
    reactor_->submit(close_, [this](io_uring_sqe* sqe) { uring::prep_close(sqe, fd_); });
  }
}

void Socket::on_closed(const io_uring_cqe&) {
  --ops_;
  if (peer_shut_ && reason_ == CloseReason::closed && !lingering_) reason_ = CloseReason::peer_closed;
  fd_ = -1;
  if (file_ >= 0) net_->uninstalled(static_cast<unsigned>(std::exchange(file_, -1)));
  state_ = State::closed;
  net_->connections.fetch_sub(1, std::memory_order_relaxed);
  net_->count_close(reason_);
  if (owner_ != nullptr) {
    ConnectionCore* owner = owner_;
    owner_ = nullptr;
    owner->closed_by_socket(reason_, error_);  // the owner forgets us
  }
  maybe_delete();
}

void Socket::maybe_delete() {
  if (owner_ == nullptr && ops_ == 0 && state_ == State::closed) {
    reactor_->cancel(static_cast<Timer&>(*this));
    if (flush_pending_) net_->state().cancel_flush(this);
    delete this;
  }
}

// ---- timeouts -----------------------------------------------------------------------

void Socket::set_options(const ConnectionOptions& o) {
  options_ = o;
  if (state_ == State::open) arm_timer();
}

void Socket::set_app_tick(std::chrono::milliseconds interval) {
  app_tick_ = interval;
  if (state_ == State::open) arm_timer();
}

std::chrono::nanoseconds Socket::wanted_tick() const noexcept {
  std::chrono::nanoseconds t = std::chrono::nanoseconds::max();
  const auto consider = [&t](std::chrono::milliseconds v, int parts) {
    if (v.count() > 0) t = std::min<std::chrono::nanoseconds>(t, v / parts);
  };
  consider(app_tick_, 1);
  consider(options_.idle_timeout, 4);
  consider(options_.read_timeout, 4);
  consider(options_.send_timeout, 4);
  if (lingering_) {
    consider(options_.linger_timeout, 4);
    consider(options_.linger_time, 4);
  }
  if (t == std::chrono::nanoseconds::max()) return std::chrono::nanoseconds(0);
  return std::max<std::chrono::nanoseconds>(t, std::chrono::milliseconds(1));
}

void Socket::arm_timer() {
  Timer& timer = *this;
  const auto t = wanted_tick();
  if (t.count() == 0) {
    reactor_->cancel(timer);
    tick_ = t;
    return;
  }
  if (timer.scheduled() && tick_.count() > 0 && t >= tick_) {
    tick_ = t;  // the next tick comes sooner than needed: it re-arms with the new period
    return;
  }
  if (!timer.scheduled()) {
    // Starting afresh: what the counters saw before does not count.
    read_known_ = active_known_ = stall_known_ = false;
  }
  tick_ = t;
  reactor_->schedule(timer, t);
}

void Socket::fire() {
  if (close_submitted_ || (state_ != State::open && state_ != State::closing)) return;
  const auto now = Clock::now();
  const bool read = reads_ != seen_reads_;
  const bool sent = sends_ != seen_sends_;
  seen_reads_ = reads_;
  seen_sends_ = sends_;
  if (read || !read_known_) {
    read_known_ = true;
    last_read_ = now;
  }
  if (read || sent || !active_known_) {
    active_known_ = true;
    last_activity_ = now;
  }
  if (pending_ == 0) {
    stall_known_ = false;
  } else {
    // Progress is also the peer acknowledging what the kernel holds: a send
    // completes only once a good part of the (autotuned, megabytes) socket
    // buffer has drained, seconds apart for a slow but steady reader.
    int outq = -1;
    if (options_.send_timeout.count() > 0 && fd_ >= 0) (void)::ioctl(fd_, SIOCOUTQ, &outq);
    const bool acked = outq >= 0 && outq < kernel_queued_;
    kernel_queued_ = outq;
    if (sent || acked || !stall_known_) {
      stall_known_ = true;
      stall_since_ = now;
    }
  }
  if (state_ == State::open) {
    if (options_.read_timeout.count() > 0 && now - last_read_ >= options_.read_timeout) {
      abort(CloseReason::read_timeout);
      return;
    }
    if (options_.idle_timeout.count() > 0 && now - last_activity_ >= options_.idle_timeout) {
      abort(CloseReason::idle_timeout);
      return;
    }
  }
  if (options_.send_timeout.count() > 0 && stall_known_ && now - stall_since_ >= options_.send_timeout) {
    // A reset, not a FIN after what the kernel still holds: that would stay
    // (in kernel memory, unread) for as long as the peer keeps its window shut.
    if (fd_ >= 0) {
      const linger reset{1, 0};
      (void)::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
    }
    reason_ = CloseReason::send_timeout;  // also when a close() was waiting for the queue
    abort(CloseReason::send_timeout);
    return;
  }
  if (lingering_ && shut_wr_ && !linger_done_) {
    if (!linger_known_) {
      linger_known_ = true;
      linger_since_ = now;
    }
    const auto quiet_since = std::max(linger_since_, last_read_);
    if (now - linger_since_ >= options_.linger_time ||
        (options_.linger_timeout.count() > 0 && now - quiet_since >= options_.linger_timeout)) {
      end_linger();
      if (close_submitted_) return;
    }
  }
  if (state_ == State::open && owner_ != nullptr && app_tick_.count() > 0) {
    try {
      owner_->on_tick(now);
    } catch (...) {
      owner_->handler_threw();
    }
  }
  Timer& timer = *this;
  if (close_submitted_ || (state_ != State::open && state_ != State::closing) || timer.scheduled()) return;
  tick_ = wanted_tick();
  if (tick_.count() > 0) reactor_->schedule(timer, now + tick_);
}

// ---- the shard's batched flush ------------------------------------------------------

void NetShardState::schedule_flush(Shard& shard, Socket* socket) {
  flush_list.push_back(socket);
  if (!flush_posted) {
    flush_posted = true;
    shard.post([this] { run_flushes(); });
  }
}

void NetShardState::run_flushes() {
  flush_posted = false;
  flushing.swap(flush_list);  // sockets scheduled meanwhile wait for the next run
  for (Socket* socket : flushing) {
    if (socket != nullptr) socket->run_scheduled_flush();
  }
  flushing.clear();
}

void NetShardState::cancel_flush(Socket* socket) noexcept {
  for (auto& s : flush_list) {
    if (s == socket) s = nullptr;
  }
  for (auto& s : flushing) {
    if (s == socket) s = nullptr;
  }
}

}  // namespace ringshard::net::detail
